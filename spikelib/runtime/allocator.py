"""The C allocator set-up for CPU training: keep freed memory in the process between steps."""

from __future__ import annotations

import ctypes
import logging
from typing import Any

__all__ = ["configure_cpu_allocator"]

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4


def configure_cpu_allocator(
    trim_threshold: int = 1 << 30, mmap_threshold: int = 1 << 25, mmap_max: int | None = None
) -> dict[str, Any]:
    """Keep freed memory in the process instead of giving it back to the system every step.

    glibc's ``malloc`` serves large blocks with ``mmap`` and returns them with ``munmap``
    as soon as they are freed; a training step that frees and re-allocates the same
    large activations then page-faults every page of them back in, every step
    (millions of faults). Two ``mallopt`` settings stop that: blocks above
    ``mmap_threshold`` still use ``mmap`` (glibc caps the threshold at 32 MiB), and the
    heap is trimmed only when more than ``trim_threshold`` bytes lie free at its top.

    Call it once, explicitly, before training (notebooks and the trainer do); importing
    spikelib never does. It is idempotent, does nothing (and says so) where the C
    library is not glibc (macOS, Windows, musl) or another allocator is preloaded
    (tcmalloc, jemalloc: already good), and logs what it did.

    Args:
        trim_threshold (int): bytes free at the heap top before glibc trims. Default 1 GiB.
        mmap_threshold (int): allocation size from which glibc uses ``mmap``. Default 32 MiB,
            glibc's maximum.
        mmap_max (int, optional): most blocks glibc serves with ``mmap`` at once
            (``M_MMAP_MAX``); ``None`` leaves glibc's default.

    Returns:
        dict: ``{"allocator": "glibc" | other, "changed": bool, "settings": {...}}``.
    """
    result: dict[str, Any] = {"allocator": "unknown", "changed": False, "settings": {}}
    try:
        libc = ctypes.CDLL(None)
        version = libc.gnu_get_libc_version
    except (OSError, AttributeError):
        logger.info("configure_cpu_allocator: not glibc, nothing to do")
        return result
    version.restype = ctypes.c_char_p
    result["allocator"] = f"glibc {version().decode()}"
    with open("/proc/self/maps", encoding="utf-8") as maps:
        preloaded = [name for name in ("tcmalloc", "jemalloc", "mimalloc") if name in maps.read()]
    if preloaded:
        result["allocator"] = preloaded[0]
        logger.info("configure_cpu_allocator: %s is loaded, leaving it alone", preloaded[0])
    else:
        settings = {"M_TRIM_THRESHOLD": trim_threshold, "M_MMAP_THRESHOLD": mmap_threshold}
        if mmap_max is not None:
            settings["M_MMAP_MAX"] = mmap_max
        codes = {
            "M_TRIM_THRESHOLD": _M_TRIM_THRESHOLD,
            "M_MMAP_THRESHOLD": _M_MMAP_THRESHOLD,
            "M_MMAP_MAX": _M_MMAP_MAX,
        }
        for name, value in settings.items():
            if libc.mallopt(codes[name], ctypes.c_int(value)) != 1:
                raise OSError(f"mallopt({name}, {value}) failed")
        result.update(changed=True, settings=settings)
        logger.info("configure_cpu_allocator: glibc mallopt %s", settings)
    return result
