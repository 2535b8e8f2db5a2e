r"""Count what a network computes: multiply-adds (MACs), synaptic operations, energy.

Counts come from a real forward pass: forward hooks on the layers record the tensors each
layer actually receives, so weight sharing, layers applied once per time step and layers
applied once to a sequence with time folded into the batch are all counted right.

**Multiply-adds** (:func:`count_macs`). A multiply-accumulate (MAC) is one
:math:`y \mathrel{+}= w x`. The convention is the one of He et al. (2015, Table 1), whose
"FLOPs" are multiply-adds, and of fvcore/ptflops:

* ``Conv{1,2,3}d``: :math:`N_\text{out} \cdot (C_\text{in} / g) \cdot \prod k` where
  :math:`N_\text{out}` is the number of output elements (all channels and positions),
  :math:`g` the groups and :math:`k` the kernel size. Positions whose receptive field
  overlaps the zero padding count in full.
* ``ConvTranspose{1,2,3}d``: :math:`N_\text{in} \cdot (C_\text{out} / g) \cdot \prod k`
  (each input element is scattered through the whole kernel).
* ``Linear``: :math:`N_\text{in} \cdot F_\text{out}` (each input element meets every
  output feature).
* Biases, activations, residual additions and the softmax are not counted: they are
  :math:`O(N_\text{out})`, small next to the products above.
* ``BatchNorm`` (one multiply-add per element, foldable into the previous layer at
  inference) and pooling (one add or comparison per window element) are reported in a
  separate column ``other_ops`` and left out of the totals.

**Synaptic operations** (:func:`count_synops`). In a spiking network a layer whose input
is a spike does no multiplication: each spike adds the weight of every synapse it reaches
to the membrane of the neuron behind it, one accumulate (AC) per synapse. So

.. math::

    \text{SynOps} = \sum_\text{input elements} s_i \cdot \text{fan-out}_i

where :math:`s_i` is the spike count of input element :math:`i` (0 or 1 for a binary spike
train; SEW-ResNet's ADD shortcut sends 0, 1 or 2) and :math:`\text{fan-out}_i` is the number
of output neurons it reaches. For a ``Linear`` layer the fan-out is ``out_features``. For
a convolution it is about :math:`C_\text{out} \prod k / \prod \text{stride}`, less at the
borders where part of the kernel falls into padding; the count here is exact: it
convolves :math:`|x|` with an all-ones kernel of the layer's shape, which sums, at every
output, the spikes in its receptive field. With an all-ones input this is the layer's
MAC count *without* the padded positions, so it is a little below :func:`count_macs`'s
figure for that layer.

A layer whose input is not made of spike counts (its values are not all whole numbers:
pixels, direct coding, an average-pooled spike map) does real multiply-adds and is
counted as MACs, in full (dense), in the same report.

Counts are per sample: totals over the forward pass divided by the batch size (and, for a
sequence ``[T, B, ...]``, summed over its :math:`T` steps).

**Energy** (:func:`energy_estimate`) uses Horowitz's 45 nm figures for 32-bit floats by
default; ``E_MAC_INT8_45NM`` and ``E_AC_INT8_45NM`` are the same source's 8-bit integer
figures, for a quantised network (M. Horowitz, "Computing's energy problem (and what we
can do about it)", ISSCC 2014, https://doi.org/10.1109/ISSCC.2014.6757323).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

__all__ = [
    "E_MAC_45NM",
    "E_AC_45NM",
    "E_MAC_INT8_45NM",
    "E_AC_INT8_45NM",
    "LayerOps",
    "OpsReport",
    "count_macs",
    "count_synops",
    "energy_estimate",
]

#: Energy of a 32-bit float multiply-add at 45 nm: 3.7 pJ (multiply) + 0.9 pJ (add).
E_MAC_45NM: float = 4.6e-12
#: Energy of a 32-bit float add (an accumulate) at 45 nm.
E_AC_45NM: float = 0.9e-12
#: Energy of an 8-bit integer multiply-add at 45 nm: 0.2 pJ (multiply) + 0.03 pJ (add).
E_MAC_INT8_45NM: float = 0.23e-12
#: Energy of an 8-bit integer add (an accumulate) at 45 nm.
E_AC_INT8_45NM: float = 0.03e-12

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_WEIGHTED = _CONV + _CONV_T + (nn.Linear,)
_NORM = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
_POOL = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
)  # fmt: skip
_ADAPTIVE_POOL = (
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip


@dataclass
class LayerOps:
    """What one layer computed during the counted forward pass (summed over its calls).

    Attributes:
        name (str): qualified module name in the model (``layer1.0.conv1``).
        kind (str): the module's class name (``Conv2d``).
        calls (int): how many times the layer ran (``T`` if applied once per step).
        input_shape (tuple[int, ...]): shape of its input at the first call.
        output_shape (tuple[int, ...]): shape of its output at the first call.
        dense_macs (float): MACs per sample had every input been dense (the ANN count).
        macs (float): MACs per sample actually counted: ``dense_macs`` for :func:`count_macs`;
            for :func:`count_synops`, the ``dense_macs`` of the calls whose input was analog.
        synops (float): synaptic operations per sample (calls whose input was spikes).
        other_ops (float): per-sample operations of a norm or pooling layer (not in totals).
        input_rate (float): mean absolute input per element and call; for spikes, the
            firing rate (spikes per neuron per step) of the layer feeding this one.
        input_type (str): ``"analog"``, ``"spikes"``, ``"mixed"`` (some calls each) or
            ``""`` (not classified: norm/pool rows, and every row of :func:`count_macs`).
    """

    name: str
    kind: str
    calls: int = 0
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    dense_macs: float = 0.0
    macs: float = 0.0
    synops: float = 0.0
    other_ops: float = 0.0
    input_rate: float = 0.0
    input_type: str = ""
    _input_sum: float = field(default=0.0, repr=False)
    _input_numel: int = field(default=0, repr=False)
    _types: set = field(default_factory=set, repr=False)


@dataclass
class OpsReport:
    """Per-layer counts and totals, per sample, from one forward pass.

    Attributes:
        rows (list[LayerOps]): one row per counted layer, in the order they first ran.
        batch_size (int): the batch the counts were divided by.
        num_steps (int): ``T`` of the input sequence (1 for :func:`count_macs`).
    """

    rows: list[LayerOps]
    batch_size: int
    num_steps: int = 1

    @property
    def total_macs(self) -> float:
        """Multiply-adds per sample over all conv/linear layers."""
        return float(sum(r.macs for r in self.rows))

    @property
    def total_synops(self) -> float:
        """Synaptic operations (accumulates) per sample over all conv/linear layers."""
        return float(sum(r.synops for r in self.rows))

    @property
    def total_dense_macs(self) -> float:
        """MACs per sample had every conv/linear input been dense."""
        return float(sum(r.dense_macs for r in self.rows))

    @property
    def total_other_ops(self) -> float:
        """Norm and pooling operations per sample (not included in the other totals)."""
        return float(sum(r.other_ops for r in self.rows))

    def __getitem__(self, name: str) -> LayerOps:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no counted layer named {name!r}; layers: {[r.name for r in self.rows]}")

    def to_dataframe(self):
        """The rows as a ``pandas.DataFrame`` (one line per layer), for display."""
        import pandas as pd  # lazy: pandas takes a second to import and only this display helper needs it

        columns = ["name", "kind", "calls", "input_shape", "output_shape", "input_type",
                   "input_rate", "dense_macs", "macs", "synops", "other_ops"]  # fmt: skip
        return pd.DataFrame([{c: getattr(r, c) for c in columns} for r in self.rows])

    def __str__(self) -> str:
        lines = [f"{'layer':<28} {'kind':<16} {'input':<7} {'rate':>6} "
                 f"{'MACs':>10} {'SynOps':>10} {'other':>10}"]  # fmt: skip
        for r in self.rows:
            lines.append(
                f"{r.name[:28]:<28} {r.kind[:16]:<16} {r.input_type:<7} {r.input_rate:6.3f} "
                f"{r.macs:10.4g} {r.synops:10.4g} {r.other_ops:10.4g}"
            )
        lines.append(
            f"{'total per sample':<60} {self.total_macs:10.4g} {self.total_synops:10.4g} {self.total_other_ops:10.4g}"
        )
        return "\n".join(lines)


def _dense_macs(module: nn.Linear | _ConvNd, x: Tensor, y: Tensor) -> float:
    """MACs of one call of a conv/linear layer on a dense input (see module docstring)."""
    if isinstance(module, nn.Linear):
        return float(x.numel() * module.out_features)  # x.numel() = rows * in_features
    taps = math.prod(module.kernel_size)
    if isinstance(module, _CONV):  # every output reads C_in/g x taps inputs
        return float(y.numel() * (module.in_channels // module.groups) * taps)
    return float(x.numel() * (module.out_channels // module.groups) * taps)  # scatter


def _exact_synops(module: nn.Linear | _ConvNd, events: Tensor) -> float:
    r"""Exact :math:`\sum_i s_i \cdot \text{fan-out}_i` for one call; ``events`` >= 0."""
    if isinstance(module, nn.Linear):
        return float(events.sum()) * module.out_features
    ones = torch.ones_like(module.weight, dtype=events.dtype)
    dims = len(module.kernel_size)
    if isinstance(module, _CONV):
        conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
        padding: str | tuple[int, ...] | int = module.padding
        if module.padding_mode != "zeros":  # reflected/circular copies are synapses too
            pad = [p for p in reversed(cast(tuple[int, ...], module.padding)) for _ in range(2)]
            events = F.pad(events, pad, mode=module.padding_mode)
            padding = 0
        reached = conv(events, ones, None, module.stride, padding, module.dilation, module.groups)
        return float(reached.sum())
    conv_t = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[dims - 1]
    transposed_padding = cast(tuple[int, ...], module.padding)  # "same"/"valid" are refused by ConvTranspose
    reached = conv_t(events, ones, None, module.stride, transposed_padding, module.output_padding,
                     module.groups, module.dilation)  # fmt: skip
    return float(reached.sum())


def _other_ops(module: nn.Module, x: Tensor, y: Tensor) -> float:
    """Norm: one multiply-add per element. Pool: one op per window element per output."""
    if isinstance(module, _NORM):
        return float(x.numel())
    if isinstance(module, _POOL):
        kernel = module.kernel_size
        dims = int(type(module).__name__[-2])  # MaxPool2d -> 2
        size = kernel**dims if isinstance(kernel, int) else math.prod(kernel)
        return float(y.numel() * size)
    return float(x.numel())  # adaptive pooling: every input element is read once


def _is_events(x: Tensor) -> bool:
    """Spike counts: finite whole numbers (0/1 spikes, or 0/1/2 after a SEW ADD)."""
    return bool(torch.equal(x, torch.round(x)))


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode (no BatchNorm statistics updated), then restore each module's mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.train(training)


def _count(
    model: nn.Module,
    run: Tensor,
    batch_size: int,
    spiking: bool,
    include_other: bool,
    analog_layers: frozenset[str],
) -> list[LayerOps]:
    names = {module: name for name, module in model.named_modules()}
    rows: dict[str, LayerOps] = {}
    counted = _WEIGHTED + ((_NORM + _POOL + _ADAPTIVE_POOL) if include_other else ())

    def hook(module: nn.Module, inputs: tuple, output) -> None:
        x = inputs[0].detach()
        y = output.detach() if isinstance(output, Tensor) else output[0].detach()
        name = names[module] or type(module).__name__
        row = rows.setdefault(name, LayerOps(name, type(module).__name__))
        if row.calls == 0:
            row.input_shape, row.output_shape = tuple(x.shape), tuple(y.shape)
        row.calls += 1
        row._input_sum += float(x.abs().sum())
        row._input_numel += x.numel()
        if not isinstance(module, _WEIGHTED):
            row.other_ops += _other_ops(module, x, y) / batch_size
            return
        dense = _dense_macs(module, x, y) / batch_size
        row.dense_macs += dense
        if not spiking:
            row.macs += dense
        elif name not in analog_layers and _is_events(x):
            row.synops += _exact_synops(module, x.abs().to(torch.get_default_dtype())) / batch_size
            row._types.add("spikes")
        else:
            row.macs += dense
            row._types.add("analog")

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, counted)]
    try:
        with torch.no_grad(), _eval_mode(model):
            model(run)
    finally:
        for handle in handles:
            handle.remove()
    for row in rows.values():
        row.input_rate = row._input_sum / max(row._input_numel, 1)
        row.input_type = "mixed" if len(row._types) > 1 else next(iter(row._types), "")
    return list(rows.values())


def _check(model: nn.Module, x: Tensor, min_ndim: int, what: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a Tensor, got {type(x).__name__}")
    if x.ndim < min_ndim or 0 in x.shape[:min_ndim]:
        raise ValueError(
            f"{what} must have at least {min_ndim} non-empty leading dims "
            f"({'[T, B, ...]' if min_ndim == 2 else '[B, ...]'}), got shape {tuple(x.shape)}"
        )


def count_macs(model: nn.Module, example_input: Tensor, include_other: bool = True) -> OpsReport:
    """Multiply-adds per sample of a (non-spiking) network, from one forward pass.

    The model runs once on ``example_input`` in eval mode, without gradients; each module
    gets its training mode back afterwards. See the module docstring for what counts.

    Args:
        model (nn.Module): the network; its ``forward`` takes ``example_input``.
        example_input (Tensor[B, ...]): a batch (values do not matter, shapes do).
        include_other (bool): also report norm and pooling layers (column ``other_ops``,
            never in ``total_macs``). Default True.

    Returns:
        OpsReport: per-layer rows and totals, divided by ``B``.

    Raises:
        TypeError: ``model`` is not a module or ``example_input`` not a tensor.
        ValueError: ``example_input`` has no batch dimension.

    Example:
        >>> report = count_macs(nn.Linear(10, 3), torch.zeros(4, 10))
        >>> report.total_macs
        30.0
    """
    _check(model, example_input, 1, "example_input")
    rows = _count(model, example_input, example_input.shape[0], False, include_other, frozenset())
    return OpsReport(rows, batch_size=example_input.shape[0])


def count_synops(
    model: nn.Module,
    input_seq: Tensor,
    analog_layers: Iterable[str] = (),
    include_other: bool = True,
) -> OpsReport:
    r"""Synaptic operations (and the MACs of analog-input layers) per sample of a spiking net.

    The model runs once on ``input_seq`` (``[T, B, ...]``) in eval mode without
    gradients. Every conv/linear call is counted from the tensor it receives, whatever the
    model does with time (one call per step, or time folded into the batch): if that tensor
    holds only whole numbers, it is spikes and adds
    :math:`\sum_i |x_i| \cdot \text{fan-out}_i` synaptic operations (exact, borders
    included); otherwise it is analog and adds the layer's dense MACs. Totals are summed
    over the :math:`T` steps and divided by ``B``.

    Args:
        model (nn.Module): the spiking network; ``forward`` takes ``input_seq``.
        input_seq (Tensor[T, B, ...]): the input sequence, time first.
        analog_layers (Iterable[str]): names of layers to count as MACs whatever their
            input holds (e.g. a first layer fed with 8-bit pixel values, which are whole
            numbers but not spikes).
        include_other (bool): also report norm and pooling layers (``other_ops``).

    Returns:
        OpsReport: per-layer rows (``synops``, ``macs``, ``dense_macs``, ``input_rate``)
        and totals, per sample, for the whole sequence.

    Raises:
        TypeError: ``model`` is not a module or ``input_seq`` not a tensor.
        ValueError: ``input_seq`` is not ``[T, B, ...]``, or ``analog_layers`` names a
            layer the model does not have.

    Example:
        >>> spk_seq = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 0.0, 1.0]]])  # [T=2, B=1, 3]
        >>> count_synops(nn.Linear(3, 4), spk_seq).total_synops  # 3 spikes x 4 synapses
        12.0
    """
    _check(model, input_seq, 2, "input_seq")
    analog_layers = frozenset(analog_layers)
    known = {name for name, _ in model.named_modules()}
    unknown = sorted(analog_layers - known)
    if unknown:
        raise ValueError(f"analog_layers names layers not in the model: {unknown}; "
                         f"layers: {sorted(n for n in known if n)}")  # fmt: skip
    rows = _count(model, input_seq, input_seq.shape[1], True, include_other, analog_layers)
    return OpsReport(rows, batch_size=input_seq.shape[1], num_steps=input_seq.shape[0])


def energy_estimate(
    macs: float | Tensor,
    synops: float | Tensor,
    e_mac: float = E_MAC_45NM,
    e_ac: float = E_AC_45NM,
) -> float | Tensor:
    r"""Energy of the arithmetic: :math:`E = N_\text{MAC} e_\text{MAC} + N_\text{SOP} e_\text{AC}`.

    The estimate many SNN papers use to compare a spiking network with its ANN twin: a
    MAC costs a multiply and an add, a synaptic operation only an add. Defaults: 32-bit floating
    point at 45 nm, :math:`e_\text{MAC} = 3.7 + 0.9 =
    4.6` pJ and :math:`e_\text{AC} = 0.9` pJ (M. Horowitz, "Computing's energy problem
    (and what we can do about it)", ISSCC 2014). Memory access, which often costs more
    than the arithmetic, and the neurons' own updates are ignored; the figure is a
    comparison of operation counts in joules, not a measurement.

    Args:
        macs (float or Tensor): multiply-adds (e.g. ``report.total_macs``).
        synops (float or Tensor): synaptic operations (e.g. ``report.total_synops``).
        e_mac (float): joules per MAC. Default 4.6e-12.
        e_ac (float): joules per accumulate. Default 0.9e-12.

    Returns:
        float or Tensor: joules.

    Raises:
        ValueError: a count or an energy is negative.

    Example:
        >>> round(energy_estimate(1e9, 0) * 1e3, 6)  # 1 GMAC = 4.6 mJ
        4.6
    """
    for label, value in (("macs", macs), ("synops", synops), ("e_mac", e_mac), ("e_ac", e_ac)):
        if bool(torch.as_tensor(value).lt(0).any()):
            raise ValueError(f"{label} must be >= 0, got {value!r}")
    return macs * e_mac + synops * e_ac
