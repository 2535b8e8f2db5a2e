r"""How the weights move: the optimizer, its schedule, and the updater a learning rule calls.

A learning rule (:class:`~spikelib.learning.base.LearningRule`) calls ``update.step()`` for
each weight update; :class:`OptimizerUpdater` is the trainer's implementation of that
call: average the gradients over processes (for rules that do not learn through the
model's ``forward``, see :func:`gradient_sync`), clip them, step the optimizer and the
learning-rate schedule, zero them. Its ``autocast()`` is the only place mixed precision
is switched on: around the rule's forward passes, never a backward pass or an update.

Learning-rate schedule (``step`` counts weight updates, :math:`S` of them in all: epochs
:math:`\times` batches :math:`\times` the rule's updates per batch; the first
:math:`S_w = \mathrm{warmup}\cdot S` warm up):

.. math::

    \eta(s) = \eta_{\max} \cdot \begin{cases} (s + 1) / S_w & s < S_w \\
        f_{\min} + (1 - f_{\min})\, \tfrac12\big(1 + \cos(\pi\, \tfrac{s - S_w}{S - S_w})\big)
        & \text{otherwise} \end{cases}

with :math:`f_{\min} = 10^{-3}` ("onecycle") or 0 ("cosine"); "constant" keeps
:math:`\eta_{\max}`.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from spikelib.learning.base import LearningRule
from spikelib.runtime.device import autocast
from spikelib.runtime.distributed import DistInfo, average_gradients
from spikelib.training.config import TrainConfig

__all__ = [
    "build_optimizer",
    "lr_factor",
    "build_scheduler",
    "GradientSync",
    "gradient_sync",
    "OptimizerUpdater",
]

#: How the gradients of several processes are combined (see :func:`gradient_sync`).
GradientSync = Literal["none", "ddp", "average"]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of ``cfg`` (``adamw``, ``adam`` or Nesterov ``sgd``) over ``model``'s parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be one of adamw, adam, sgd, got {cfg.optimizer!r}")


def lr_factor(step: int, total_steps: int, schedule: str = "onecycle", warmup: float = 0.1) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (see the module docstring).

    Args:
        step: 0-based optimizer step.
        total_steps: steps of the whole run (> 0).
        schedule: "onecycle", "cosine" or "constant".
        warmup: share of the steps spent warming up linearly (ignored by "constant").
    """
    if schedule not in ("onecycle", "cosine", "constant"):
        raise ValueError(f"schedule must be 'onecycle', 'cosine' or 'constant', got {schedule!r}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if schedule == "constant":
        return 1.0
    warm = int(warmup * total_steps)
    if step < warm:
        return (step + 1) / warm
    floor = 1e-3 if schedule == "onecycle" else 0.0
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler following :func:`lr_factor` over ``cfg.epochs * steps_per_epoch`` steps.

    Its state (the step count) goes into checkpoints; the schedule itself is rebuilt from
    the config, so nothing but numbers is saved.
    """
    total = cfg.epochs * steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, cfg.schedule, cfg.warmup))


def gradient_sync(rule: LearningRule[Any], info: DistInfo) -> GradientSync:
    """How a run combines the gradients of its processes for ``rule``.

    Returns:
        ``"none"`` for a single process; ``"ddp"`` if the rule learns through the model's
        ``forward`` (``rule.through_forward``: the model is wrapped in
        ``DistributedDataParallel``, which averages the gradients during backward);
        ``"average"`` otherwise (the model is not wrapped; :class:`OptimizerUpdater`
        averages the gradients before every update).
    """
    if not info.is_distributed:
        return "none"
    return "ddp" if rule.through_forward else "average"


@dataclass
class OptimizerUpdater:
    """The trainer's :class:`~spikelib.learning.base.Updater`: forward context and weight updates.

    Attributes:
        optimizer: over the model's parameters.
        scheduler: stepped once per update (``None``: no schedule).
        device: where the model runs (mixed precision is for CUDA devices only).
        amp: ``"none"`` or ``"bf16"``; applies inside :meth:`autocast` only.
        grad_clip: clip the global gradient norm to this before each update (0: off).
        info: this process's place in a multi-process run.
        average: average the gradients over the processes before each update (for a rule
            whose model is not wrapped in DDP, see :func:`gradient_sync`).
        steps: updates applied so far.
    """

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: str = "none"
    grad_clip: float = 0.0
    info: DistInfo = field(default_factory=DistInfo)
    average: bool = False
    steps: int = 0

    def autocast(self) -> AbstractContextManager[Any]:
        """Context for forward passes: bfloat16 autocast on a GPU when ``amp == "bf16"``, else nothing."""
        return autocast(self.device, self.amp)

    def step(self) -> None:
        """One weight update: average (if asked), clip (if asked), optimizer and schedule step, zero the gradients."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.average:
            average_gradients(params, self.info)
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
