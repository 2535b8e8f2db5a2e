"""Spike activity probes: how often each spiking layer fires."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from spikelib.models.localizer import SpikingLocalizer
from spikelib.snn.neurons import LIF

__all__ = ["SpikeCounter", "spike_activity"]


class SpikeCounter:
    """Counts the spikes of every :class:`~spikelib.snn.neurons.LIF` layer of a model.

    A context manager: on entry it registers a forward hook on each LIF submodule (found
    by ``model.named_modules()``, however nested), on exit it removes them. Every call of
    a LIF layer inside the ``with`` block adds its spikes and its number of
    neuron-steps (``spk_seq.numel()``, i.e. T x B x neurons).

    Example::

        with SpikeCounter(model) as counter:
            model(x_seq)
        counter.mean_rate()   # spikes per neuron per step, all layers together

    Args:
        model (nn.Module): the network.

    Raises:
        ValueError: if ``model`` has no LIF layer.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = {name: module for name, module in model.named_modules() if isinstance(module, LIF)}
        if not self.layers:
            raise ValueError(f"{type(model).__name__} has no spikelib.snn.neurons.LIF layer to count spikes of")
        self.spikes = dict.fromkeys(self.layers, 0.0)
        self.neuron_steps = dict.fromkeys(self.layers, 0)
        self._handles: list[Any] = []

    def _hook(self, name: str) -> Callable[[nn.Module, Any, Tensor], None]:
        def count(module: nn.Module, inputs: Any, spk_seq: Tensor) -> None:
            self.spikes[name] += float(spk_seq.detach().sum())
            self.neuron_steps[name] += spk_seq.numel()

        return count

    def __enter__(self) -> SpikeCounter:
        self._handles = [module.register_forward_hook(self._hook(name)) for name, module in self.layers.items()]
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def layer_rates(self) -> dict[str, float]:
        """Spikes per neuron per step of each layer (NaN for a layer that never ran)."""
        return {
            name: self.spikes[name] / self.neuron_steps[name] if self.neuron_steps[name] else math.nan
            for name in self.layers
        }

    def mean_rate(self) -> float:
        """Spikes per neuron per step over all layers (every neuron-step weighs the same)."""
        total = sum(self.neuron_steps.values())
        return sum(self.spikes.values()) / total if total else math.nan


@torch.no_grad()
def spike_activity(model: SpikingLocalizer, images: torch.Tensor) -> dict[str, dict[str, float]]:
    """Spike rate and share of silent channels of every layer of a spiking localizer.

    Args:
        model: a :class:`~spikelib.models.localizer.SpikingLocalizer` (anything with ``record(images)``
            returning per-layer spikes ``[T, B, C, H, W]``).
        images (Tensor[B, C, H, W]): the inputs.

    Returns:
        dict: layer name -> ``{"rate": spikes per neuron per step, "silent": share of
        channels that never fire on these images}``.
    """
    was_training = model.training
    model.eval()
    outputs = model.record(images).outputs
    model.train(was_training)
    return {
        name: {
            "rate": float(spk_seq.float().mean()),
            "silent": float((spk_seq.float().sum(dim=(0, 1, 3, 4)) == 0).float().mean()),
        }
        for name, spk_seq in outputs.items()
    }
