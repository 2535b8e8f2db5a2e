r"""The pieces of DECOLLE's local learning: fixed readouts, activity bounds, input traces.

Used by :class:`spikelib.learning.decolle.DECOLLE`; each is a small module or pure function
that a test or a notebook can call alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikelib.checks import check_number
from spikelib.models.localizer import Prediction, decode_boxes
from spikelib.snn.layers import SpikingConvBlock

__all__ = [
    "READOUTS",
    "READOUT_INPUTS",
    "RandomReadout",
    "MomentReadout",
    "rate_floor_penalty",
    "rate_ceiling_penalty",
    "InputTraces",
]

#: Fixed readouts of the layers: random linear (DECOLLE's), or box from spatial moments.
READOUTS: tuple[str, ...] = ("random", "moments")

#: What a layer's readout reads: the sigmoid of the membrane, or the spikes.
READOUT_INPUTS: tuple[str, ...] = ("sigmoid", "spikes")


class RandomReadout(nn.Module):
    r"""A fixed random linear readout: spikes of one layer -> class logits and a box.

    .. math::

        y = G\, \mathrm{pool}(S), \qquad G_{ij} \sim \mathcal{U}\Big(-\frac{a}{\sqrt{n}},
            \frac{a}{\sqrt{n}}\Big)

    with :math:`n` the number of inputs after an optional average pool to ``pool`` x
    ``pool`` (the pooled map keeps where things are, and makes :math:`G` small). The
    weights are a buffer, not a parameter: no optimizer sees them.

    Args:
        in_shape (tuple[int, int, int]): ``(C, H, W)`` of the layer's spike map.
        num_classes (int): class logits to predict (plus 4 box outputs).
        box_param (str): how the 4 box outputs are decoded (:func:`spikelib.models.localizer.decode_boxes`).
        scale (float): :math:`a > 0`.
        pool (int): pooled size (0: no pooling); must divide ``H`` and ``W`` when smaller.
        generator (torch.Generator, optional): source of the random weights.
    """

    weight: Tensor

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        box_param: str = "cxcywh",
        scale: float = 1.0,
        pool: int = 16,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        channels, height, width = (int(v) for v in in_shape)
        self.pool = pool if pool and pool < min(height, width) else 0
        side_h, side_w = (self.pool, self.pool) if self.pool else (height, width)
        fan_in = channels * side_h * side_w
        bound = scale / math.sqrt(fan_in)
        weight = (torch.rand(num_classes + 4, fan_in, generator=generator) * 2 - 1) * bound
        self.register_buffer("weight", weight)
        self.num_classes, self.box_param, self.scale = num_classes, box_param, scale
        self.in_shape = (channels, height, width)

    def raw(self, spk: Tensor) -> Tensor:
        """``spk [B, C, H, W] -> [B, num_classes + 4]`` (linear, differentiable in ``spk``)."""
        if self.pool:
            spk = F.adaptive_avg_pool2d(spk, self.pool)
        return F.linear(spk.flatten(1), self.weight)

    def forward(self, spk: Tensor) -> Prediction:
        raw = self.raw(spk)
        return Prediction(raw[:, : self.num_classes], decode_boxes(raw[:, self.num_classes :], self.box_param))

    def extra_repr(self) -> str:
        return (
            f"in_shape={self.in_shape}, outputs={self.num_classes}+4, scale={self.scale}, "
            f"pool={self.pool}, box_param={self.box_param!r} (fixed)"
        )


class MomentReadout(nn.Module):
    r"""A fixed readout that decodes a box from *where* a layer is active: its spatial moments.

    With :math:`a \in [0, 1]^{C \times H \times W}` the layer's activity, :math:`m` its mean
    over channels, :math:`p = \mathrm{softmax}(\kappa m)` (a distribution over the
    :math:`H \times W` places, sharpened by :math:`\kappa`, so that a weak background
    weighs little) and :math:`(x, y)` the places' normalized centres:

    .. math::

        c_x = \sum p\, x, \quad w = \sqrt{12 \sum p\, (x - c_x)^2}, \qquad
        \text{box} = (c_x - \tfrac{w}{2},\ c_y - \tfrac{h}{2},\ c_x + \tfrac{w}{2},\ c_y + \tfrac{h}{2})

    (likewise :math:`c_y, h`; clipped to [0, 1]): a layer that is active exactly on the
    object, uniformly, gets the object's box (a uniform distribution over a width :math:`w`
    has variance :math:`w^2/12`). The class logits are a fixed random linear map
    (:class:`RandomReadout`'s uniform law) of the channels' global means. Nothing here is
    trained.

    Why not a random linear map of the whole map, as DECOLLE reads its layers? A
    convolution is the same at every place, so a convolutional layer can only move its
    activity with the object; a random linear readout weighs every place differently, and
    for most random weights no such activity makes its output follow the object. The
    moments turn "be active on the object" into the box, which a convolution can learn.

    Args:
        in_shape (tuple[int, int, int]): ``(C, H, W)`` of the layer's map.
        num_classes (int): class logits to predict.
        scale (float): :math:`a > 0` of the class weights' bound :math:`a/\sqrt{C}`.
        generator (torch.Generator, optional): source of the random class weights.
        sharpness (float): :math:`\kappa > 0`. Default 10.
    """

    weight: Tensor
    grid_x: Tensor
    grid_y: Tensor

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        scale: float = 1.0,
        generator: torch.Generator | None = None,
        sharpness: float = 10.0,
    ) -> None:
        super().__init__()
        self.sharpness = float(check_number("sharpness", sharpness, 0.0, low_open=True))
        channels, height, width = (int(v) for v in in_shape)
        bound = scale / math.sqrt(channels)
        self.register_buffer("weight", (torch.rand(num_classes, channels, generator=generator) * 2 - 1) * bound)
        self.register_buffer("grid_x", ((torch.arange(width) + 0.5) / width).view(1, 1, width))
        self.register_buffer("grid_y", ((torch.arange(height) + 0.5) / height).view(1, height, 1))
        self.num_classes, self.scale, self.in_shape = num_classes, scale, (channels, height, width)

    def forward(self, act: Tensor) -> Prediction:
        """``act [B, C, H, W]`` (in [0, 1]) -> :class:`Prediction` (logits, xyxy boxes)."""
        mass = act.mean(1)  # [B, H, W]
        prob = torch.softmax(self.sharpness * mass.flatten(1), dim=1).view_as(mass)
        centres, sizes = [], []
        for grid in (self.grid_x, self.grid_y):
            centre = (prob * grid).sum((1, 2))
            var = (prob * (grid - centre.view(-1, 1, 1)) ** 2).sum((1, 2))
            centres.append(centre)
            sizes.append(torch.sqrt(12 * var + 1e-8))
        cx, cy = centres
        w, h = sizes
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1).clamp(0.0, 1.0)
        return Prediction(F.linear(act.mean((2, 3)), self.weight), boxes)

    def extra_repr(self) -> str:
        return (
            f"in_shape={self.in_shape}, outputs={self.num_classes}+box from moments, scale={self.scale}, "
            f"sharpness={self.sharpness} (fixed)"
        )


def rate_floor_penalty(spk: Tensor, mem: Tensor, threshold: float, floor: float) -> Tensor:
    r"""Activity floor of one layer: while it fires too little, raise its membrane potentials.

    .. math::

        R_l = \big[\bar S_l < f\big]\; \big\langle \mathrm{ReLU}(\theta - U_l) \big\rangle

    with :math:`\bar S_l` the layer's mean spike rate at this step (no gradient) and the
    mean taken over its neurons. A layer whose random readout is best served by silence
    (a silent layer makes its readout predict the centred box and uniform class scores)
    would otherwise fall silent, and a silent last layer leaves the head nothing to read;
    measured: without it, the last decoder layer of the narrow model of notebook 05 fired
    0.1 % of the time after 150 DECOLLE batches. DECOLLE's own code has an activity
    regularizer for the same reason (on the membrane, as here).

    Args:
        spk (Tensor[B, ...]): the layer's spikes at this step.
        mem (Tensor[B, ...]): its membrane potential, differentiable.
        threshold (float): :math:`\theta`.
        floor (float): :math:`f`, spikes per neuron per step.

    Returns:
        Tensor[]: :math:`R_l`, zero when the layer fires at least ``floor``.
    """
    if float(spk.detach().mean()) >= floor:
        return mem.new_zeros(())
    return F.relu(threshold - mem).mean()


def rate_ceiling_penalty(spk: Tensor, mem: Tensor, threshold: float, ceiling: float) -> Tensor:
    r"""Activity ceiling of one layer: while it fires too much, lower its membrane potentials.

    .. math::

        C_l = \big[\bar S_l > c\big]\; \big\langle \mathrm{ReLU}(U_l - \theta) \big\rangle

    the mirror image of :func:`rate_floor_penalty`. A local readout can be served by a
    layer that fires everywhere (its readout's output then only depends on the bias of
    the map), and a saturated layer tells the layers above nothing.

    Args:
        spk (Tensor[B, ...]): the layer's spikes at this step.
        mem (Tensor[B, ...]): its membrane potential, differentiable.
        threshold (float): :math:`\theta`.
        ceiling (float): :math:`c`, spikes per neuron per step.

    Returns:
        Tensor[]: :math:`C_l`, zero when the layer fires at most ``ceiling``.
    """
    if float(spk.detach().mean()) <= ceiling:
        return mem.new_zeros(())
    return F.relu(mem - threshold).mean()


class InputTraces:
    r"""Input eligibility traces of a localizer's layers, for one sequence.

    For layer :math:`l` with input :math:`X_l[t]` and the model's decay :math:`\beta`:

    .. math:: E_l[t] = \beta\, E_l[t-1] + X_l[t], \qquad E_l[-1] = 0

    Called as the ``current_fn`` of :meth:`SpikingLocalizer.step
    <spikelib.models.localizer.SpikingLocalizer.step>`, it returns the layer's current
    :math:`W_l * X_l[t]` (then BatchNorm, if the layer has it) with the *value* of this step's
    input and the *gradient* of the trace: :math:`\partial I_l / \partial W_l` is
    :math:`E_l[t]`, the derivative of the membrane of a LIF neuron whose state is kept
    (not reset) with respect to its weights. The traces carry no gradient; one step of
    each is held, so memory does not grow with :math:`T`.

    Args:
        decay (float): :math:`\beta` in [0, 1].
    """

    def __init__(self, decay: float) -> None:
        self.decay = float(check_number("decay", decay, 0.0, 1.0))
        self.traces: dict[int, Tensor] = {}

    def __call__(self, index: int, block: SpikingConvBlock, inp: Tensor) -> Tensor:
        """``inp [B, C_in, H, W] -> cur [B, C_out, H, W]`` of layer ``index`` (updates its trace)."""
        previous = self.traces.get(index)
        trace = inp.detach() if previous is None else self.decay * previous + inp.detach()
        self.traces[index] = trace
        if previous is None:  # first step: the trace is the input
            return block.current(inp)
        with torch.no_grad():
            value = block.conv(inp)
        through_trace = block.conv(trace)
        cur = through_trace + (value - through_trace.detach())  # value of the input, gradient of the trace
        return block.bn(cur) if block.bn is not None else cur

    def __repr__(self) -> str:
        return f"InputTraces(decay={self.decay}, layers={sorted(self.traces)})"
