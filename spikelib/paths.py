"""Where the project's folders are: data, runs and configs, found from the working directory.

A course checkout is used from its root (``make train``), from ``notebooks/`` (Jupyter
starts kernels there) or from anywhere below; an installed ``spikelib`` is used from a
user's own folder. So every default is found the way ``git`` finds its repository: the
*project root* is the working directory or the nearest folder above it that has a
``configs/`` folder, else the working directory itself. Environment variables override each
folder: ``SPIKELIB_DATA``, ``SPIKELIB_RUNS``, ``SPIKELIB_CONFIGS``, ``SPIKELIB_CHECKPOINTS``. The location of the
installed package is never used: a non-editable install lives in ``site-packages``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_root", "data_root", "runs_root", "configs_dir", "checkpoints_dir"]


def project_root(start: str | Path | None = None) -> Path:
    """The nearest of ``start`` (default: the working directory) and its parents that has ``configs/``.

    Falls back to ``start`` itself when no folder above it has one.
    """
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "configs").is_dir():
            return folder
    return here


def _folder(variable: str, name: str) -> Path:
    override = os.environ.get(variable)
    return Path(override).expanduser() if override else project_root() / name


def data_root() -> Path:
    """Where datasets live: ``$SPIKELIB_DATA``, else ``<project root>/data``."""
    return _folder("SPIKELIB_DATA", "data")


def runs_root() -> Path:
    """Where training runs are written: ``$SPIKELIB_RUNS``, else ``<project root>/runs``."""
    return _folder("SPIKELIB_RUNS", "runs")


def configs_dir() -> Path:
    """Where run configurations are looked up by name: ``$SPIKELIB_CONFIGS``, else ``<project root>/configs``."""
    return _folder("SPIKELIB_CONFIGS", "configs")


def checkpoints_dir() -> Path:
    """Where the course's shipped checkpoints are: ``$SPIKELIB_CHECKPOINTS``, else ``<project root>/checkpoints``."""
    return _folder("SPIKELIB_CHECKPOINTS", "checkpoints")
