r"""What a model costs per image: arithmetic energy, and how much its neurons fire.

:func:`energy_per_image` takes any model and a few batches of its input and returns the
energy estimate of the SNN literature, made explicit:

.. math::

    E_\text{ANN} = N_\text{MAC}\, e_\text{MAC}, \qquad
    E_\text{SNN} = N_\text{MAC}^\text{analog}\, e_\text{MAC} + N_\text{SOP}\, e_\text{AC}

with :math:`e_\text{MAC} = 4.6` pJ and :math:`e_\text{AC} = 0.9` pJ (32-bit float at
45 nm, Horowitz 2014). :math:`N_\text{SOP}` is counted from the spikes the model actually
emits on these inputs, times each spike's fan-out (not estimated from a mean firing
rate), and a layer whose input is analog (the first layer of a directly coded SNN, a
head reading a spike *rate*) is counted in MACs, once per call. All counting is
:mod:`spikelib.eval.counting`'s (:func:`~spikelib.eval.counting.count_macs`,
:func:`~spikelib.eval.counting.count_synops`); this module only feeds it batches, averages
per image and adds the energy. Memory access, often the larger cost on real hardware,
and the neurons' own updates (a multiply and an add per neuron and step for the leak)
are ignored: the figure compares operation counts, it does not measure a chip.

:func:`spike_rates_per_step` returns the firing rate (spikes per neuron per step) of every
LIF layer at every time step, from forward hooks on real forward passes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from spikelib.eval.counting import E_AC_45NM, E_MAC_45NM, LayerOps, OpsReport, count_macs, count_synops, energy_estimate
from spikelib.snn.neurons import LIF

__all__ = ["EnergyReport", "energy_per_image", "energy_ratio", "is_spiking", "spike_rates_per_step"]

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
_PREFIX = "model."


def is_spiking(model: nn.Module) -> bool:
    """True if ``model`` holds a spiking neuron layer (spikelib ``LIF`` or any snnTorch neuron)."""
    snntorch = sys.modules.get("snntorch")
    kinds: tuple[type, ...] = (LIF,) + ((snntorch.SpikingNeuron,) if snntorch is not None else ())
    return any(isinstance(m, kinds) for m in model.modules())


@dataclass
class EnergyReport:
    """Operations and arithmetic energy per image of one model, averaged over the images counted.

    Attributes:
        spiking (bool): counted as an SNN (synaptic operations) or an ANN (MACs only).
        num_images (int): images counted.
        num_steps (int): time steps per image (1 for an ANN).
        macs (float): multiply-adds per image (an SNN's analog-input layers only).
        synops (float): synaptic operations (accumulates) per image, summed over the steps.
        dense_macs (float): MACs per image had every input been dense (the same network run
            as an ANN for ``num_steps`` steps).
        energy (float): joules per image, :math:`N_\\text{MAC} e_\\text{MAC} + N_\\text{SOP} e_\\text{AC}`.
        e_mac (float): joules per MAC used.
        e_ac (float): joules per accumulate used.
        layers (list[LayerOps]): per-layer counts per image (see :class:`~spikelib.eval.counting.LayerOps`).
    """

    spiking: bool
    num_images: int
    num_steps: int
    macs: float
    synops: float
    dense_macs: float
    energy: float
    e_mac: float = E_MAC_45NM
    e_ac: float = E_AC_45NM
    layers: list[LayerOps] = field(default_factory=list, repr=False)

    @property
    def energy_uj(self) -> float:
        """Energy per image in microjoules."""
        return self.energy * 1e6

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (totals; per-layer MACs and SynOps under ``layers``)."""
        return {
            "spiking": self.spiking,
            "num_images": self.num_images,
            "num_steps": self.num_steps,
            "macs": self.macs,
            "synops": self.synops,
            "dense_macs": self.dense_macs,
            "energy_j": self.energy,
            "e_mac": self.e_mac,
            "e_ac": self.e_ac,
            "layers": {
                r.name: {
                    "kind": r.kind,
                    "input_type": r.input_type,
                    "input_rate": r.input_rate,
                    "macs": r.macs,
                    "synops": r.synops,
                }
                for r in self.layers
            },
        }

    def to_dataframe(self):
        """Per-layer rows as a ``pandas.DataFrame``."""
        return OpsReport(self.layers, self.num_images, self.num_steps).to_dataframe()


class _CodesItsOwnInput(nn.Module):
    """Lets :func:`count_synops` (which wants ``[T, B, ...]``) run a model that takes ``[B, ...]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x_seq: Tensor) -> Any:
        return self.model(x_seq[0])


def _batches(inputs: Tensor | Iterable[Any]) -> Iterable[Tensor]:
    if isinstance(inputs, Tensor):
        yield inputs
        return
    for batch in inputs:
        batch = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(batch, Tensor):
            raise TypeError(f"inputs must yield Tensors or (Tensor, target) pairs, got {type(batch).__name__}")
        yield batch


def _first_layer(model: nn.Module) -> str:
    for name, module in model.named_modules():
        if isinstance(module, _WEIGHTED):
            return name
    raise ValueError(f"{type(model).__name__} has no conv or linear layer to count")


def _merge(parts: list[tuple[OpsReport, int]]) -> list[LayerOps]:
    """Per-image averages of the rows of several reports, weighted by their batch sizes."""
    total = sum(size for _, size in parts)
    merged: dict[str, LayerOps] = {}
    for report, size in parts:
        weight = size / total
        for row in report.rows:
            out = merged.setdefault(
                row.name,
                LayerOps(
                    row.name.removeprefix(_PREFIX),
                    row.kind,
                    row.calls,
                    row.input_shape,
                    row.output_shape,
                    input_type=row.input_type,
                ),
            )
            for key in ("dense_macs", "macs", "synops", "other_ops", "input_rate"):
                setattr(out, key, getattr(out, key) + weight * getattr(row, key))
            if out.input_type != row.input_type:
                out.input_type = "mixed"
    return list(merged.values())


def energy_per_image(
    model: nn.Module,
    inputs: Tensor | Iterable[Any],
    *,
    spiking: bool | None = None,
    time_first: bool | None = None,
    analog_layers: Iterable[str] | None = None,
    e_mac: float = E_MAC_45NM,
    e_ac: float = E_AC_45NM,
    max_images: int | None = None,
) -> EnergyReport:
    r"""Arithmetic energy per image of any ANN or SNN, counted on real inputs.

    Each batch runs once through the model (eval mode, no gradients); an ANN is counted
    with :func:`~spikelib.eval.counting.count_macs`, an SNN with
    :func:`~spikelib.eval.counting.count_synops` (every spike times its fan-out, plus the MACs
    of layers fed with analog values). Counts are averaged per image over all batches.

    Args:
        model (nn.Module): the network.
        inputs: one batch, or an iterable of batches (a ``DataLoader`` of ``(images,
            targets)`` pairs works), of what ``model`` takes: ``[B, ...]`` for an ANN or a
            model that codes its own input, ``[T, B, ...]`` for an SNN fed a sequence.
        spiking (bool, optional): count as an SNN. Default: :func:`is_spiking`.
        time_first (bool, optional): the batches are sequences ``[T, B, ...]``. Default:
            True for an SNN unless the model has an ``encode`` method (the course's
            :class:`~spikelib.models.localizer.SpikingLocalizer` takes images and codes them itself).
        analog_layers (iterable of str, optional): layers to count in MACs whatever their
            input holds. Default: for a model whose ``config.coding`` is ``"direct"``, its
            first conv/linear layer (it receives pixel values at every step); otherwise
            none, and a layer is analog when its input holds values that are not whole
            numbers.
        e_mac, e_ac (float): joules per MAC and per accumulate (default 45 nm, 32-bit float).
        max_images (int, optional): stop after this many images.

    Returns:
        EnergyReport: per-image ``macs``, ``synops``, ``energy`` and per-layer rows.

    Raises:
        ValueError: no input, or ``analog_layers`` naming a layer the model lacks.
        TypeError: inputs that are not tensors.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), LIF(threshold=0.5), nn.Linear(4, 2))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.fill_(1.0), net[0].bias.zero_()
        >>> x_seq = torch.tensor([[[0.2, 0.2, 0.2]], [[0.0, 0.0, 0.0]]])  # [T=2, B=1, 3]
        >>> report = energy_per_image(net, x_seq)  # step 0: 4 spikes x 2 synapses
        >>> report.synops, report.macs  # fc1 sees analog input: 2 steps x 3 x 4 MACs
        (8.0, 24.0)
    """
    spiking = is_spiking(model) if spiking is None else bool(spiking)
    if time_first is None:
        time_first = spiking and not callable(getattr(model, "encode", None))
    config = getattr(model, "config", None)
    if analog_layers is None:
        analog_layers = [_first_layer(model)] if spiking and getattr(config, "coding", None) == "direct" else []
    analog_layers = list(analog_layers)
    counted = model if (time_first or not spiking) else _CodesItsOwnInput(model)
    prefix = "" if counted is model else _PREFIX
    parts: list[tuple[OpsReport, int]] = []
    seen, num_steps = 0, 1
    for batch in _batches(inputs):
        if max_images is not None and seen >= max_images:
            break
        batch_dim = 1 if (spiking and time_first) else 0
        if max_images is not None:
            batch = batch.narrow(batch_dim, 0, min(batch.shape[batch_dim], max_images - seen))
        if not spiking:
            report = count_macs(model, batch)
        elif time_first:
            report = count_synops(model, batch, analog_layers)
            num_steps = batch.shape[0]
        else:
            report = count_synops(counted, batch[None], [prefix + name for name in analog_layers])
            num_steps = int(getattr(config, "num_steps", 1))
        parts.append((report, batch.shape[batch_dim]))
        seen += batch.shape[batch_dim]
    if not parts:
        raise ValueError("inputs yielded no batch to count")
    layers = _merge(parts)
    macs, synops = sum(r.macs for r in layers), sum(r.synops for r in layers)
    return EnergyReport(
        spiking,
        seen,
        num_steps if spiking else 1,
        macs,
        synops,
        sum(r.dense_macs for r in layers),
        float(energy_estimate(macs, synops, e_mac, e_ac)),
        e_mac,
        e_ac,
        layers,
    )


def energy_ratio(ann: EnergyReport, snn: EnergyReport) -> float:
    """How many times less energy the SNN needs than the ANN: :math:`E_\\text{ANN} / E_\\text{SNN}`."""
    if snn.energy <= 0:
        raise ValueError(f"the SNN's energy must be > 0 for a ratio, got {snn.energy}")
    return ann.energy / snn.energy


def spike_rates_per_step(
    model: nn.Module,
    inputs: Tensor | Iterable[Any],
    names: Mapping[str, str] | None = None,
    max_batches: int | None = None,
) -> dict[str, Tensor]:
    """Firing rate of every LIF layer at every time step, over real forward passes.

    A forward hook on each :class:`spikelib.snn.neurons.LIF` layer (which maps ``cur_seq
    [T, B, ...]`` to ``spk_seq [T, B, ...]``) adds up, per step, the spikes and the
    neurons; the rate at step ``t`` is spikes / (images x neurons).

    Args:
        model (nn.Module): a spiking model with spikelib LIF layers.
        inputs: one batch or an iterable of batches (or ``(images, targets)`` pairs), as
            ``model`` takes them.
        names (dict[str, str], optional): module name -> display name (e.g.
            ``{"encoder.0.lif": "enc1"}``); layers not listed keep their module name.
        max_batches (int, optional): stop after this many batches.

    Returns:
        dict[str, Tensor[T]]: layer -> spikes per neuron at each step, in the order the
        layers ran.

    Raises:
        ValueError: the model has no LIF layer, or no input was given.

    Example:
        >>> rates = spike_rates_per_step(LIF(beta=0.5), torch.full((4, 2, 3), 0.6))
        >>> rates["LIF"].tolist()  # charges 0.6, 0.9, 1.05 -> spike, 0.6 + 0.525 - 1
        [0.0, 0.0, 1.0, 0.0]
    """
    lifs = {name or type(module).__name__: module for name, module in model.named_modules() if isinstance(module, LIF)}
    if not lifs:
        raise ValueError(f"{type(model).__name__} has no spikelib.snn.neurons.LIF layer to read spikes from")
    names = dict(names or {})
    spikes: dict[str, Tensor] = {}
    neurons: dict[str, int] = {}

    def hook(name: str):
        def record(module: nn.Module, args: Any, spk_seq: Tensor) -> None:
            per_step = spk_seq.detach().flatten(1).sum(1).double()  # [T]
            spikes[name] = spikes[name] + per_step if name in spikes else per_step
            neurons[name] = neurons.get(name, 0) + spk_seq[0].numel()

        return record

    handles = [module.register_forward_hook(hook(names.get(n, n))) for n, module in lifs.items()]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.no_grad():
            for batch in _batches(inputs):
                if max_batches is not None and seen >= max_batches:
                    break
                model(batch)
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not seen:
        raise ValueError("inputs yielded no batch")
    return {name: (spikes[name] / neurons[name]).float() for name in spikes}
