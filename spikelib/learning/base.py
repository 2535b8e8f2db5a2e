r"""The contract between a learning rule and the trainer, and what every rule shares.

A learning rule decides *which* gradients a batch produces and *when* the weights move;
the trainer (:mod:`spikelib.training.trainer`) owns everything around that: the device,
mixed precision (forward passes only), the optimizer and its schedule (stepped once per
weight update), gradient clipping, averaging over processes, logging and checkpoints.
They meet through two small protocols:

* :class:`LearningRule`: what the trainer asks of a rule (:class:`~spikelib.learning.bptt.BPTT`,
  :class:`~spikelib.learning.decolle.DECOLLE`, :class:`~spikelib.learning.bptt.ClassifierBPTT`).
  It is generic in the targets of a batch: :class:`LocalizationTargets` for the
  localizer, a ``Tensor[B]`` of class labels for a classifier.
* :class:`Updater`: what the trainer hands the rule for one batch: a context for forward
  passes and the call that applies one weight update.

A run that diverges (NaN or infinite loss, NaN weights) raises :class:`TrainingDiverged`,
never ``sys.exit`` (which would kill a notebook's kernel).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, NotRequired, Protocol, TypedDict, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = ["TrainingDiverged", "check_finite_loss", "LocalizationTargets", "Updater", "LearningRule"]


class TrainingDiverged(FloatingPointError):
    """Training diverged: the loss became NaN or infinite, or a weight NaN or infinite.

    Raised by a rule (:func:`check_finite_loss`, before the update, so the weights keep
    their last finite values) and re-raised by the trainer with the epoch, the step and
    the last good checkpoint in the message.
    """


def check_finite_loss(loss: Tensor, where: str) -> None:
    """Raise :class:`TrainingDiverged` if ``loss`` holds NaN or infinity (``where`` goes into the message)."""
    if not torch.isfinite(loss).all():
        raise TrainingDiverged(
            f"the loss is {loss.item()} at {where}: training diverged. Lower the learning rate, "
            "check the inputs for NaN, or use a surrogate with a smaller peak derivative."
        )


class LocalizationTargets(TypedDict):
    """The targets of a localization batch, as :class:`spikelib.data.VOCLocalization` collates them.

    Attributes:
        box (Tensor[B, 4]): normalized ``xyxy`` box of each image's object.
        label (Tensor[B]): its class index (int64).
        index (Tensor[B]): each image's index in its dataset (not used for learning).
    """

    box: Tensor
    label: Tensor
    index: NotRequired[Tensor]


TargetsT = TypeVar("TargetsT", contravariant=True)


class Updater(Protocol):
    """What the trainer gives a rule for one batch."""

    def autocast(self) -> AbstractContextManager[Any]:
        """Context for forward passes: mixed precision where the run asks for it (never around backward)."""
        ...

    def step(self) -> None:
        """Apply the gradients accumulated so far as one weight update, then clear them.

        The trainer averages them over processes where the model is not wrapped in DDP,
        clips them, steps the optimizer and the learning-rate schedule, and zeroes the
        gradients.
        """
        ...


@runtime_checkable
class LearningRule(Protocol[TargetsT]):
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

    def train_step(self, model: nn.Module, inputs: Tensor, targets: TargetsT, update: Updater) -> dict[str, float]:
        """Learn from one batch; returns metrics of the batch (at least ``loss``).

        The gradients are zero when it is called. Every forward pass that should run in
        mixed precision goes inside ``update.autocast()``; backward passes stay outside.
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """What the rule must keep across a resumed run (empty if nothing)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...
