"""Running a stateless layer over a sequence ``[T, B, ...]``: folded into the batch, or step by step."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FOLD_TIME_CHOICES", "resolve_fold_time", "apply_seq"]

#: Accepted values of ``fold_time``: fold time into the batch, step by step, or pick by device.
FOLD_TIME_CHOICES: tuple[bool | str, ...] = (True, False, "auto")


def resolve_fold_time(fold_time: bool | str, x: Tensor) -> bool:
    """Decide whether a stateless layer sees ``[T*B, ...]`` at once or ``T`` calls of ``[B, ...]``.

    Args:
        fold_time (bool or "auto"): ``True`` folds, ``False`` loops over steps, ``"auto"``
            folds on a GPU and loops on a CPU (a large call keeps a GPU busy; on a CPU one
            call per step is as fast and its tensors stay in cache).
        x (Tensor): the input, whose device decides ``"auto"``.

    Returns:
        bool: ``True`` to fold.

    Raises:
        ValueError: ``fold_time`` is none of :data:`FOLD_TIME_CHOICES`.
    """
    if fold_time is True or fold_time is False:
        return fold_time
    if fold_time == "auto":
        return x.device.type != "cpu"
    raise ValueError(f"fold_time must be True, False or 'auto', got {fold_time!r}")


def apply_seq(module: nn.Module, x_seq: Tensor, fold_time: bool | str = "auto") -> Tensor:
    """Apply a stateless layer to every step of a sequence.

    Args:
        module (nn.Module): a layer that maps ``[B, ...] -> [B, ...]`` and keeps no state
            between calls (``nn.Conv2d``, ``nn.MaxPool2d``, ``nn.Upsample``).
        x_seq (Tensor[T, B, ...]): the sequence, time first.
        fold_time (bool or "auto"): see :func:`resolve_fold_time`.

    Returns:
        Tensor[T, B, ...]: ``module`` applied at every step.
    """
    if x_seq.shape[0] == 1 or resolve_fold_time(fold_time, x_seq):  # one step: views, no copy
        return module(x_seq.flatten(0, 1)).unflatten(0, x_seq.shape[:2])
    # unbind, not x_seq[t]: indexing makes backward build a full-size zero tensor per step
    return torch.stack([module(x) for x in x_seq.unbind(0)])
