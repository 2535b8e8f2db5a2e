r"""Backpropagation through time: readouts, and the BPTT learning rules.

Backpropagation through time (BPTT) needs nothing special here: a model built from
:class:`spikelib.snn.neurons.LIF` layers unrolls over ``[T, B, ...]`` in the autograd graph,
and the surrogate derivative of its spike function (:mod:`spikelib.snn.surrogate`) lets the
gradient through each spike. This module holds the pieces around that:

* readouts, which turn the output spike train into class scores (:func:`spike_count`);
* :class:`BPTT`, the rule for the localizer (SNN and ANN alike), and
  :class:`ClassifierBPTT`, the rule for a classifier of ``(x, label)`` batches (the digits
  MLP of notebook 03). Both are :class:`~spikelib.learning.base.LearningRule`\ s: the
  trainer (:mod:`spikelib.training.trainer`) runs them, batch after batch.

:class:`~spikelib.learning.decolle.DECOLLE` lives in :mod:`spikelib.learning.decolle`;
:func:`spikelib.learning.rules.make_rule` builds either localizer rule by name.
A loss that is NaN or infinite raises :class:`~spikelib.learning.base.TrainingDiverged`;
nothing here calls ``sys.exit`` or seeds the global random state.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from spikelib.eval.activity import SpikeCounter
from spikelib.learning.base import LocalizationTargets, Updater, check_finite_loss
from spikelib.learning.losses import localization_loss
from spikelib.snn.neurons import LIF

__all__ = [
    "spike_count",
    "BPTT",
    "ClassifierBPTT",
    "check_loss_kwargs",
]

Encoder = Callable[[Tensor], Tensor]
Readout = Callable[[Tensor], Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


def spike_count(spk_seq: Tensor) -> Tensor:
    r"""Rate readout: the number of spikes of each output neuron, used as class scores.

    .. math:: z_c = \sum_{t=0}^{T-1} S_c[t]

    With cross-entropy on :math:`z` the network learns to make the correct output neuron
    fire most (snnTorch's ``ce_count_loss``). The predicted class is
    :math:`\arg\max_c z_c`; ties, such as a silent output layer, go to the lowest class
    index.

    Why counts and not the output membrane potential: measured on the 8x8 digits
    (notebook 03; ``SpikingMLP(64, 128, 10)``, T = 10, direct code, 15 epochs) both reach
    about 96 % test accuracy, but the count readout fires less (0.21 against 0.33 spikes
    per neuron per step) and it makes the network's output a spike train that must learn:
    with a membrane readout, a network with no surrogate (``Heaviside``) still trains its
    last linear layer on frozen random hidden spikes and reaches about 60 %.

    Args:
        spk_seq (Tensor[T, B, C]): output spikes.

    Returns:
        Tensor[B, C]: spike counts (differentiable through the surrogate).
    """
    if not isinstance(spk_seq, Tensor) or spk_seq.ndim < 2:
        shape = tuple(spk_seq.shape) if isinstance(spk_seq, Tensor) else type(spk_seq).__name__
        raise ValueError(f"spk_seq must be a Tensor [T, B, C], got {shape}")
    return spk_seq.sum(0)


# ---------------------------------------------------------------------------------------
# Learning rules: rule.train_step(model, inputs, targets, update)
# ---------------------------------------------------------------------------------------


class BPTT:
    """End-to-end backpropagation (through time, for a spiking model) of the localization loss.

    One step: forward the whole batch (an SNN unrolls its ``T`` steps in the graph), the
    loss of :func:`spikelib.learning.losses.localization_loss` on the prediction, backward through
    every layer and step (surrogate gradients at the spikes), one weight update. Works
    unchanged for the ANN twin. Memory grows with ``T``: the graph of every step is kept
    until the backward pass.

    Args:
        **loss_kwargs: passed to :func:`spikelib.learning.losses.localization_loss` (``box_loss``,
            ``box_weight``, ``class_weight``, ``smooth_l1_beta``).
    """

    name = "bptt"
    through_forward = True

    def __init__(self, **loss_kwargs: Any) -> None:
        self.loss_kwargs = check_loss_kwargs(loss_kwargs)

    def updates_per_batch(self, model: nn.Module) -> int:
        """One weight update per batch."""
        return 1

    def train_step(
        self, model: nn.Module, images: Tensor, targets: LocalizationTargets, update: Updater
    ) -> dict[str, float]:
        """One update on one batch.

        Args:
            model: maps ``images [B, C, H, W]`` to a :class:`spikelib.models.localizer.Prediction`.
            images (Tensor[B, C, H, W]): the batch.
            targets (LocalizationTargets): ``{"box": Tensor[B, 4], "label": Tensor[B]}``.
            update: from the trainer: ``autocast()`` around the forward pass, ``step()`` once.

        Returns:
            dict[str, float]: ``loss``, ``box_loss``, ``class_loss``, ``iou``, ``accuracy``
            (of this batch, before the update).

        Raises:
            TrainingDiverged: NaN or infinite loss (the weights are left unchanged).
        """
        model.train()
        with update.autocast():
            loss, info = localization_loss(model(images), targets, **self.loss_kwargs)
        check_finite_loss(loss, "this BPTT step")
        loss.backward()
        update.step()
        return info

    def state_dict(self) -> dict[str, Any]:
        """Nothing to keep: the rule holds no state besides its options."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore (see :meth:`state_dict`)."""

    def __repr__(self) -> str:
        return f"BPTT({', '.join(f'{k}={v!r}' for k, v in self.loss_kwargs.items())})"


class ClassifierBPTT:
    r"""BPTT for a classifier of ``(x, label)`` batches: encode, run, read out, cross-entropy.

    One step on images :math:`x` with labels :math:`y`:

    .. math:: z = \mathrm{readout}\big(\mathrm{model}(\mathrm{encode}(x))\big), \qquad
        L = \mathrm{loss\_fn}(z, y)

    then backward through every layer and time step and one weight update. The digits MLP
    of notebook 03 trains with it, on the same trainer as the localizer
    (:func:`spikelib.training.trainer.train_one_epoch`).

    Args:
        encode: ``images [B, ...] -> x_seq [T, B, ...]``, e.g.
            ``functools.partial(spikelib.snn.encoding.direct_encode, num_steps=10)``.
        readout: ``model output -> scores [B, C]``. Default :func:`spike_count`.
        loss_fn: ``(scores [B, C], labels [B]) -> scalar loss``. Default cross-entropy.
    """

    name = "bptt"
    through_forward = True

    def __init__(self, encode: Encoder, readout: Readout = spike_count, loss_fn: LossFn = F.cross_entropy) -> None:
        for arg, value in (("encode", encode), ("readout", readout), ("loss_fn", loss_fn)):
            if not callable(value):
                raise TypeError(f"{arg} must be callable, got {type(value).__name__}")
        self.encode, self.readout, self.loss_fn = encode, readout, loss_fn

    def updates_per_batch(self, model: nn.Module) -> int:
        """One weight update per batch."""
        return 1

    def scores(self, model: nn.Module, images: Tensor) -> Tensor:
        """Class scores ``[B, C]`` of ``images [B, ...]``: ``readout(model(encode(images)))``."""
        return self.readout(model(self.encode(images)))

    def train_step(self, model: nn.Module, images: Tensor, labels: Tensor, update: Updater) -> dict[str, float]:
        """One update on one batch.

        Args:
            model: maps ``x_seq [T, B, ...]`` to output spikes ``[T, B, C]``.
            images (Tensor[B, ...]): the batch.
            labels (Tensor[B]): class indices (int64).
            update: from the trainer: ``autocast()`` around the forward pass, ``step()`` once.

        Returns:
            dict[str, float]: ``loss``, ``accuracy`` (of this batch, before the update) and,
            for a spiking model, ``spike_rate`` (spikes per neuron per step over all its
            :class:`~spikelib.snn.neurons.LIF` layers).

        Raises:
            TrainingDiverged: NaN or infinite loss (the weights are left unchanged).
        """
        model.train()
        spiking = any(isinstance(module, LIF) for module in model.modules())
        counter = SpikeCounter(model) if spiking else None
        with counter if counter is not None else nullcontext(), update.autocast():
            scores = self.scores(model, images)
            loss = self.loss_fn(scores, labels)
        check_finite_loss(loss, "this batch")
        loss.backward()
        update.step()
        stats = {"loss": loss.item(), "accuracy": int((scores.argmax(1) == labels).sum()) / len(labels)}
        if counter is not None:
            stats["spike_rate"] = counter.mean_rate()
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Nothing to keep: the rule holds no state besides its functions."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore (see :meth:`state_dict`)."""

    def __repr__(self) -> str:
        names = [getattr(f, "__name__", repr(f)) for f in (self.encode, self.readout, self.loss_fn)]
        return f"ClassifierBPTT(encode={names[0]}, readout={names[1]}, loss_fn={names[2]})"


def check_loss_kwargs(loss_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Return ``loss_kwargs`` if :func:`spikelib.learning.losses.localization_loss` accepts them all.

    Raises:
        TypeError: an option it does not have (so a typo fails at construction, not at
            the first step).
    """
    allowed = [name for name in inspect.signature(localization_loss).parameters if name not in ("pred", "target")]
    unknown = sorted(set(loss_kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"unknown loss option(s) {unknown}; localization_loss takes {allowed}")
    return dict(loss_kwargs)
