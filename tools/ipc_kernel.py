"""Kernels on ipc sockets in a private folder each, so kernels started side by side never collide.

On TCP, jupyter_client picks a kernel's five ports by binding to port 0 and closing the socket;
the kernel binds them a second later, and a kernel started by another process in between can
draw the same port (one kernel then dies with a libzmq assertion, the next one hangs). Its ipc
transport names the sockets ``<ip>-1`` … ``<ip>-5``, skipping names that exist, with ``ip``
defaulting to ``kernel-ipc`` in the working directory: kernels started at the same moment in
one folder draw the same names too. :class:`IpcKernelManager` gives every kernel its own
temporary folder (removed with the kernel's resources); :class:`IpcExecute` is nbgrader's
``Execute`` preprocessor with that manager (``nbgrader_config.py`` puts it in autograde).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from nbgrader.preprocessors import Execute
from traitlets import CaselessStrEnum

__all__ = ["IpcKernelManager", "IpcExecute"]


class IpcKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` on the ipc transport, its sockets in a fresh private temp folder."""

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)
    _ipc_dir: str | None = None

    def _ip_default(self) -> str:
        if self.transport != "ipc":
            return super()._ip_default()
        self._ipc_dir = tempfile.mkdtemp(prefix="kernel-ipc-")  # mode 0700: only this user connects
        return os.path.join(self._ipc_dir, "kernel")

    async def _async_pre_start_kernel(self, **kwargs: Any) -> tuple[list[str], dict[str, Any]]:
        if self.transport == "ipc":  # started again after a full cleanup removed the folder
            os.makedirs(os.path.dirname(self.ip), mode=0o700, exist_ok=True)
        return await super()._async_pre_start_kernel(**kwargs)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart and self._ipc_dir is not None:
            shutil.rmtree(self._ipc_dir, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources  # AsyncKernelManager binds the base class's coroutine


class IpcExecute(Execute):
    """nbgrader's ``Execute`` with :class:`IpcKernelManager`.

    nbgrader's ``Execute.__init__`` passes ``kernel_manager_class=AsyncKernelManager`` as an
    argument, which outranks ``c.Execute.kernel_manager_class`` in a configuration file.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("kernel_manager_class", IpcKernelManager)
        super().__init__(**kwargs)
