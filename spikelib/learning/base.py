r"""The contract between a learning rule and the trainer, and what every rule shares.

A learning rule decides *which* gradients a batch produces and *when* the weights move;
the trainer (:mod:`spikelib.training.trainer`) owns everything around that: the device,
mixed precision (forward passes only), the optimizer and its schedule (stepped once per
weight update), gradient clipping, averaging over processes, logging and checkpoints.
They meet through two small protocols:

* :class:`LearningRule`: what the trainer asks of a rule (:class:`~spikelib.learning.bptt.BPTT`,
  :class:`~spikelib.learning.decolle.DECOLLE`, :class:`~spikelib.learning.bptt.ClassifierBPTT`).
* :class:`Updater`: what the trainer hands the rule for one batch: a context for forward
  passes and the call that applies one weight update.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = ["NonFiniteLossError", "check_finite_loss", "Updater", "LearningRule"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (diverged); raised instead of going on."""


def check_finite_loss(loss: Tensor, where: str) -> None:
    """Raise :class:`NonFiniteLossError` if ``loss`` holds NaN or infinity (``where`` goes into the message)."""
    if not torch.isfinite(loss).all():
        raise NonFiniteLossError(
            f"the loss is {loss.item()} at {where}: training diverged. Lower the learning rate, "
            "check the inputs for NaN, or use a surrogate with a smaller peak derivative."
        )


class Updater(Protocol):
    """What the trainer gives a rule for one batch."""

    def autocast(self) -> AbstractContextManager[Any]:
        """Context for forward passes: mixed precision where the run asks for it (never around backward)."""
        ...

    def step(self) -> None:
        """Apply the gradients accumulated so far as one weight update, then clear them.

        The trainer clips them, averages them over processes where the model is not wrapped
        in DDP, steps the optimizer and the learning-rate schedule, and zeroes the gradients.
        """
        ...


@runtime_checkable
class LearningRule(Protocol):
    """A learning rule, as the trainer sees it.

    Attributes:
        name: short name, as in a run configuration (``"bptt"``, ``"decolle"``).
        through_forward: ``True`` if the gradients reach the weights through the model's
            ``forward`` (end-to-end backpropagation): in a multi-process run the trainer
            then wraps the model in ``DistributedDataParallel``. ``False`` for rules that run
            the model their own way (layer-local losses, step by step); the trainer then
            averages the gradients over processes before each update.
    """

    name: str
    through_forward: bool

    def updates_per_batch(self, model: nn.Module) -> int:
        """How many times :meth:`train_step` calls ``update.step()`` per batch (sizes the schedule)."""
        ...

    def train_step(
        self, model: nn.Module, images: Tensor, targets: Mapping[str, Tensor], update: Updater
    ) -> dict[str, float]:
        """Learn from one batch; returns metrics of the batch (at least ``loss``)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What the rule must keep across a resumed run (empty if nothing)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...
