"""Checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint is a plain dict saved with ``torch.save``:

====================  =========================================================
``version``           format version (:data:`CHECKPOINT_VERSION`)
``kind``              "snn" or "ann"
``epoch``             number of finished epochs
``global_step``       optimizer steps taken
``model``             ``model.state_dict()`` (unwrapped from DDP)
``optimizer``         ``optimizer.state_dict()``
``scheduler``         ``scheduler.state_dict()``
``rule``              the learning rule's ``state_dict()`` (``{}`` for the rules here)
``rng``               torch (CPU and CUDA), NumPy and Python ``random`` generator states
``data_epoch``        the epoch the augmentation draws from next (``dataset.set_epoch``)
``model_config``      ``model.config.to_dict()``: what the model of this kind is built from
                      (the SNN's ``LocalizerConfig``, the twin's ``ArchConfig``); a
                      checkpoint is refused by a model of another configuration
``config``            the whole run configuration (``RunConfig.to_dict()``)
``history``           one metrics dict per finished epoch
====================  =========================================================

It holds only tensors and plain Python values, so :func:`load_checkpoint` reads it with
``torch.load(weights_only=True)``: loading a checkpoint never runs code from the file.
:func:`save_checkpoint` writes to a temporary file in the same folder and moves it into
place with ``os.replace``, so a run killed while saving leaves the previous checkpoint
intact.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "capture_rng_state",
    "restore_rng_state",
    "save_checkpoint",
    "load_checkpoint",
    "read_weights_only",
    "check_compatible",
    "config_differences",
]

CHECKPOINT_VERSION = 1
REQUIRED_KEYS = (
    "version",
    "kind",
    "epoch",
    "global_step",
    "model",
    "optimizer",
    "scheduler",
    "rng",
    "data_epoch",
    "model_config",
    "config",
    "history",
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here: unreadable, or from another model configuration."""


def capture_rng_state() -> dict[str, Any]:
    """The state of every global random generator a run draws from, as tensors and plain values.

    Returns:
        dict: ``{"torch": ByteTensor, "cuda": [ByteTensor, ...], "numpy": (...), "python": (...)}``.
    """
    numpy_state = np.random.get_state(legacy=True)
    if isinstance(numpy_state, dict):  # legacy=True falls back to a dict for a generator other than MT19937
        raise TypeError(f"numpy's global generator is {numpy_state['bit_generator']}: expected MT19937")
    kind, keys, pos, has_gauss, cached = numpy_state
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": (str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set every global random generator back to a :func:`capture_rng_state` result."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    path: str | Path, checkpoint: Mapping[str, Any], required: Sequence[str] = REQUIRED_KEYS, compress: bool = False
) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, then ``os.replace``).

    Args:
        path: target file; its folder is created if needed.
        checkpoint: the dict described in the module docstring.
        required: the keys it must have (another format, e.g. a course checkpoint, names its own).
        compress: gzip the file (reproducibly: no time stamp), for files that are shipped;
            :func:`load_checkpoint` reads both.

    Returns:
        Path: ``path``.

    Raises:
        CheckpointError: a required key is missing.
    """
    missing = [k for k in required if k not in checkpoint]
    if missing:
        raise CheckpointError(f"a checkpoint needs the keys {missing} as well (it has {sorted(checkpoint)})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            if compress:
                buffer = io.BytesIO()
                torch.save(dict(checkpoint), buffer)
                file.write(gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0))
            else:
                torch.save(dict(checkpoint), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_weights_only(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, of a plain or a gzipped file."""
    with open(path, "rb") as file:
        gzipped = file.read(2) == b"\x1f\x8b"  # gzip's magic number
    if not gzipped:
        return torch.load(path, map_location=map_location, weights_only=True)
    with gzip.open(path, "rb") as file:
        return torch.load(io.BytesIO(file.read()), map_location=map_location, weights_only=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only``: no code runs).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is not a spikelib checkpoint, or of another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        checkpoint = read_weights_only(path, map_location)
    except Exception as err:  # torch raises pickle, runtime and zip errors alike
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} is not a spikelib training checkpoint (missing keys {missing})")
    if checkpoint["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {checkpoint['version']}, this spikelib reads "
            f"{CHECKPOINT_VERSION}; train it again"
        )
    return checkpoint


def config_differences(
    stored: Mapping[str, Any], wanted: Mapping[str, Any], there: str = "in the checkpoint", prefix: str = ""
) -> list[str]:
    """One line per differing key of two nested settings dicts: ``"a.b = 1 <there>, 2 here"``."""
    out = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key, "<absent>"), wanted.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_differences(a, b, there, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} = {a!r} {there}, {b!r} here")
    return out


def check_compatible(
    checkpoint: Mapping[str, Any],
    kind: str,
    model_config: Mapping[str, Any],
    path: str | Path = "the checkpoint",
    run_config: Mapping[str, Any] | None = None,
) -> None:
    """Refuse a checkpoint written for another model (or, when resuming, another run config).

    Args:
        checkpoint: a loaded checkpoint.
        kind: "snn" or "ann", the model about to receive it.
        model_config: ``model.config.to_dict()`` of that model: the fields it depends
            on. Only these are compared, so a twin's checkpoint (``ArchConfig``) is not
            refused for a change of ``T``, and one written when the twin stored the SNN's
            fields too is still read.
        path: shown in the message.
        run_config: when resuming, ``RunConfig.to_dict()`` of the run; its ``data`` and
            ``train`` tables, and the ``[ann]`` overrides, must match too (a resumed run
            must continue the same run). ``name`` and ``models`` may differ.

    Raises:
        CheckpointError: one line naming the first differences.
    """
    if checkpoint["kind"] != kind:
        raise CheckpointError(f"{path} holds an {checkpoint['kind'].upper()}, not an {kind.upper()}")
    stored = {k: v for k, v in checkpoint["model_config"].items() if k in model_config}
    diffs = config_differences(stored, model_config)
    if diffs:
        more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
        raise CheckpointError(
            f"{path} was trained with a different {kind.upper()} configuration: {'; '.join(diffs[:3])}"
            f"{more}. Use the config it was trained with, or another run name"
        )
    if run_config is not None:
        stored = {k: checkpoint["config"].get(k) for k in ("seed", "data", "train", "ann")}
        wanted = {k: run_config.get(k) for k in ("seed", "data", "train", "ann")}
        diffs = config_differences(stored, wanted)
        if diffs:
            raise CheckpointError(
                f"cannot resume from {path}: the run configuration changed ({'; '.join(diffs[:3])})"
                f". Resume with the same config, or start a new run (another name, or no --resume)"
            )
