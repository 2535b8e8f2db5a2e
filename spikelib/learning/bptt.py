r"""Training spiking networks: readouts, spike counts, and a small BPTT classification engine.

Backpropagation through time (BPTT) needs nothing special here: a model built from
:class:`spikelib.snn.neurons.LIF` layers unrolls over ``[T, B, ...]`` in the autograd graph,
and the surrogate derivative of its spike function (:mod:`spikelib.snn.surrogate`) lets the
gradient through each spike. This module holds the pieces around that:

* readouts, which turn the output spike train into class scores
  (:func:`spike_count`);
* :class:`SpikeCounter`, which counts the spikes every LIF layer emits (for spike rates);
* the engine: :func:`train_classifier_epoch` and :func:`evaluate_classifier` (one pass,
  a dict of metrics each), and :func:`fit_classifier`, a thin loop over epochs with an
  optional per-epoch callback (to plot live in a notebook).

For the localizer (notebook 05), *learning rules* are objects with one method,
``rule.train_step(model, images, targets, optimizer) -> dict[str, float]``:
:class:`BPTT` here (SNN and ANN alike), :class:`~spikelib.learning.decolle.DECOLLE` in
:mod:`spikelib.learning.decolle` (also importable from here); :func:`make_rule` builds either by name.

An ``encode`` argument turns a batch of images ``[B, ...]`` into the input sequence
``[T, B, ...]``, e.g. ``functools.partial(spikelib.snn.encoding.direct_encode, num_steps=10)``.
A loss that is NaN or infinite raises :class:`NonFiniteLossError`; nothing here calls
``sys.exit`` or seeds the global random state.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from spikelib.learning.base import check_finite_loss
from spikelib.learning.losses import localization_loss

__all__ = [
    "spike_count",
    "BPTT",
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
# Learning rules for the localizer: rule.train_step(model, images, targets, optimizer)
# ---------------------------------------------------------------------------------------


class BPTT:
    """End-to-end backpropagation (through time, for a spiking model) of the localization loss.

    One step: forward the whole batch (an SNN unrolls its ``T`` steps in the graph), the
    loss of :func:`spikelib.learning.losses.localization_loss` on the prediction, backward through
    every layer and step (surrogate gradients at the spikes), one optimizer step. Works
    unchanged for the ANN twin. Memory grows with ``T``: the graph of every step is kept
    until the backward pass.

    Args:
        **loss_kwargs: passed to :func:`spikelib.learning.losses.localization_loss` (``box_loss``,
            ``box_weight``, ``class_weight``, ``smooth_l1_beta``).
    """

    name = "bptt"

    def __init__(self, **loss_kwargs: Any) -> None:

        self.loss_kwargs = check_loss_kwargs(loss_kwargs)
        self._loss = localization_loss

    def train_step(
        self, model: nn.Module, images: Tensor, targets: dict[str, Tensor], optimizer: torch.optim.Optimizer
    ) -> dict[str, float]:
        """One update on one batch.

        Args:
            model: maps ``images [B, C, H, W]`` to a :class:`spikelib.models.localizer.Prediction`.
            images (Tensor[B, C, H, W]): the batch.
            targets (dict): ``{"box": Tensor[B, 4], "label": Tensor[B]}``.
            optimizer: over ``model``'s parameters.

        Returns:
            dict[str, float]: ``loss``, ``box_loss``, ``class_loss``, ``iou``, ``accuracy``
            (of this batch, before the update).

        Raises:
            NonFiniteLossError: NaN or infinite loss (the weights are left unchanged).
        """
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss, info = self._loss(model(images), targets, **self.loss_kwargs)
        check_finite_loss(loss, "this BPTT step")
        loss.backward()
        optimizer.step()
        return info

    def __repr__(self) -> str:
        return f"BPTT({', '.join(f'{k}={v!r}' for k, v in self.loss_kwargs.items())})"


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
