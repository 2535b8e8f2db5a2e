r"""Why a steep surrogate silences deep layers: the derivative over real membranes, and the gradient per layer.

In the backward pass every spiking layer multiplies the gradient, neuron by neuron and step
by step, by the surrogate derivative :math:`\sigma'(x)` at :math:`x = U - \theta`. A steep
surrogate is near zero wherever the membranes sit (most are far below threshold), so each
layer passes on a fraction of what it receives, and the first layers of a deep network get
almost nothing. :func:`gradient_per_layer` measures that on a deep fully connected spiking
network; :class:`SurrogateExplorer` draws it for any surrogate and slope.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import ipywidgets as widgets
import torch
from torch import Tensor

from spikelib.snn.encoding import direct_encode
from spikelib.snn.neurons import LIFParams, lif_seq_with_mem
from spikelib.snn.surrogate import (
    ArcTan,
    Boxcar,
    FastSigmoid,
    Sigmoid,
    SurrogateSpike,
    Triangle,
)
from spikelib.viz.network import plot_layer_gradients, plot_membrane_gate
from spikelib.widgets.base import CONTROL_STYLE, Explorer

__all__ = [
    "SLOPED_SURROGATES",
    "REFERENCE_SPIKE_FN",
    "surrogate_with_slope",
    "deep_weights",
    "GradientProfile",
    "gradient_per_layer",
    "SurrogateExplorer",
]

#: Surrogates :class:`SurrogateExplorer` offers, each with one steepness parameter.
SLOPED_SURROGATES: tuple[str, ...] = ("fast_sigmoid", "arctan", "sigmoid", "triangle", "boxcar")


#: The gentle surrogate :class:`SurrogateExplorer` draws for comparison (grey line).
REFERENCE_SPIKE_FN = FastSigmoid(slope=1.0)


def surrogate_with_slope(kind: str, slope: float) -> SurrogateSpike:
    r"""A surrogate of :data:`SLOPED_SURROGATES` with steepness ``slope`` (larger: sharper, narrower).

    ``"fast_sigmoid"`` and ``"sigmoid"``: ``slope`` :math:`k`; ``"arctan"``: :math:`\alpha = k`;
    ``"triangle"`` (half-width) and ``"boxcar"`` (width): :math:`w = 1 / k`.

    Raises:
        ValueError: unknown ``kind`` or ``slope <= 0``.
    """
    if not isinstance(slope, (int, float)) or isinstance(slope, bool) or not slope > 0 or not math.isfinite(slope):
        raise ValueError(f"slope must be a finite number > 0, got {slope!r}")
    slope = float(slope)
    if kind == "fast_sigmoid":
        return FastSigmoid(slope=slope)
    if kind == "sigmoid":
        return Sigmoid(slope=slope)
    if kind == "arctan":
        return ArcTan(alpha=slope)
    if kind == "triangle":
        return Triangle(width=1.0 / slope)
    if kind == "boxcar":
        return Boxcar(width=1.0 / slope)
    raise ValueError(f"kind must be one of {list(SLOPED_SURROGATES)}, got {kind!r}")


def deep_weights(num_inputs: int, width: int, num_layers: int, gain: float = 2.0, seed: int = 0) -> list[Tensor]:
    r"""Weights of a deep fully connected network: ``num_layers`` matrices, Gaussian, std :math:`g/\sqrt{n_{in}}`.

    Returns:
        list[Tensor[width, n_in]]: the first maps ``num_inputs`` to ``width``, the others ``width`` to ``width``.
    """
    for name, value in (("num_inputs", num_inputs), ("width", width), ("num_layers", num_layers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    generator = torch.Generator().manual_seed(seed)
    sizes = [num_inputs] + [width] * num_layers
    return [
        torch.randn(n_out, n_in, generator=generator) * gain / math.sqrt(n_in) for n_in, n_out in zip(sizes, sizes[1:])
    ]


class GradientProfile(NamedTuple):
    """What :func:`gradient_per_layer` measures.

    Attributes:
        mem_x (list[Tensor[T, B, width]]): each layer's :math:`x = U - \\theta`, before reset.
        spike_rates (list[float]): each layer's spikes per neuron per step.
        grad_norms (list[float]): each layer's :math:`\\lVert \\partial L / \\partial W_l \\rVert`.
        gate (list[float]): each layer's mean surrogate derivative :math:`\\sigma'(x)`.
    """

    mem_x: list[Tensor]
    spike_rates: list[float]
    grad_norms: list[float]
    gate: list[float]


def gradient_per_layer(
    x_seq: Tensor, weights: list[Tensor], spike_fn: SurrogateSpike, params: LIFParams | None = None
) -> GradientProfile:
    r"""Run a deep spiking network and backpropagate :math:`L = \frac{1}{B}\sum S_{\mathrm{out}}` (output spike count).

    Layer :math:`l`: :math:`I_l[t] = W_l S_{l-1}[t]` (:math:`S_0 = ` the input), LIF neurons
    (:func:`spikelib.snn.neurons.lif_seq_with_mem`, reset by subtraction) with ``spike_fn``.

    Args:
        x_seq (Tensor[T, B, N]): the input sequence.
        weights (list[Tensor]): one matrix per layer (:func:`deep_weights`).
        spike_fn (SurrogateSpike): the spike function (its derivative in the backward pass).
        params (LIFParams, optional): the neurons; default :math:`\beta = 0.5, \theta = 1`.

    Returns:
        GradientProfile: the spikes do not depend on ``spike_fn``, the gradients do.
    """
    if x_seq.ndim != 3 or x_seq.shape[-1] != weights[0].shape[1]:
        raise ValueError(f"x_seq must be [T, B, {weights[0].shape[1]}], got {tuple(x_seq.shape)}")
    params = LIFParams(beta=0.5, threshold=1.0) if params is None else params
    leaves = [w.detach().clone().requires_grad_(True) for w in weights]
    spk_seq, mem_x, rates = x_seq, [], []
    for weight in leaves:
        spk_seq, mem_seq = lif_seq_with_mem(spk_seq @ weight.T, params, spike_fn)
        mem_x.append((mem_seq - params.threshold).detach())
        rates.append(float(spk_seq.detach().mean()))
    loss = spk_seq.sum() / x_seq.shape[1]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    norms = [0.0 if g is None else float(g.norm()) for g in grads]
    gate = [float(spike_fn.derivative(x).mean()) for x in mem_x]
    return GradientProfile(mem_x, rates, norms, gate)


class SurrogateExplorer(Explorer):
    r"""Pick a surrogate and its slope; see where the membranes sit under it, and what gradient each layer gets.

    Left: the histogram of :math:`x = U - \theta` of one layer (``layer``) of a deep spiking
    network on ``images``, under the surrogate derivative :math:`\sigma'(x)` (log scale).
    Right: the norm of the gradient reaching each layer's weights (bars), beside that of a
    gentle surrogate (grey, :data:`REFERENCE_SPIKE_FN`, fast sigmoid with :math:`k = 1`).

    Controls: ``kind`` (:data:`SLOPED_SURROGATES`), ``slope`` (log slider, see
    :func:`surrogate_with_slope`), ``layer`` (1-based, for the histogram).

    Each (kind, slope) is computed once (:func:`gradient_per_layer`, a few tens of ms) and
    cached; moving ``layer`` only redraws.

    Results of the last update: ``spike_fn``, ``profile`` (:class:`GradientProfile`),
    ``reference`` (the profile of :data:`REFERENCE_SPIKE_FN`), ``figure``.

    Args:
        images (Tensor[B, ...]): inputs in [0, 1], flattened to features and direct-coded.
        kind, slope, layer: initial control values.
        num_layers (int): depth of the network. Default 8.
        width (int): neurons per layer. Default 128.
        num_steps (int): :math:`T`. Default 10.
        gain (float): weight scale (:func:`deep_weights`); the default 3 keeps every layer firing.
        seed (int): seed of the weights.
        dpi (int): resolution of the rendered figure. Default 72.
        render (bool, optional): render to PNG into ``output``; by default only in a kernel.
    """

    controls = ("kind", "slope", "layer")

    def __init__(
        self,
        images: Tensor,
        kind: str = "fast_sigmoid",
        slope: float = 25.0,
        layer: int | None = None,
        num_layers: int = 8,
        width: int = 128,
        num_steps: int = 10,
        gain: float = 3.0,
        seed: int = 0,
        dpi: int = 72,
        render: bool | None = None,
    ) -> None:
        images = torch.as_tensor(images).float()
        if images.ndim < 2 or images.shape[0] < 1:
            raise ValueError(f"images must be [B, ...] with B >= 1, got shape {tuple(images.shape)}")
        surrogate_with_slope(kind, slope)  # checks both
        layer = num_layers // 2 if layer is None else layer
        self.weights = deep_weights(images[0].numel(), width, num_layers, gain, seed)
        if not 1 <= layer <= num_layers:
            raise ValueError(f"layer must lie in [1, {num_layers}], got {layer!r}")
        self.x_seq = direct_encode(images.flatten(1), num_steps)
        self.profiles: dict[tuple[str, float], GradientProfile] = {}
        self.reference = gradient_per_layer(self.x_seq, self.weights, REFERENCE_SPIKE_FN)
        opts = {"continuous_update": False, **CONTROL_STYLE}
        self.kind = widgets.Dropdown(
            options=list(SLOPED_SURROGATES), value=kind, description="surrogate", **CONTROL_STYLE
        )
        self.slope = widgets.FloatLogSlider(
            slope, base=10, min=-0.5, max=2.5, step=0.1, description="slope k", readout_format=".3g", **opts
        )
        self.layer = widgets.IntSlider(layer, min=1, max=num_layers, description="histogram of layer", **opts)
        box = widgets.HBox([widgets.VBox([self.kind, self.slope]), widgets.VBox([self.layer])])
        self._setup((10.0, 3.6), dpi, box, render, layout=None)

    def profile_for(self, kind: str, slope: float) -> GradientProfile:
        """The cached :class:`GradientProfile` of one setting (computed on first use)."""
        key = (kind, round(float(slope), 6))
        if key not in self.profiles:
            self.profiles[key] = gradient_per_layer(self.x_seq, self.weights, surrogate_with_slope(kind, slope))
        return self.profiles[key]

    def _simulate(self) -> None:
        self.spike_fn = surrogate_with_slope(self.kind.value, float(self.slope.value))
        self.profile = self.profile_for(self.kind.value, float(self.slope.value))

    def _draw(self) -> None:
        ax_mem, ax_grad = self.figure.subplots(
            1, 2, gridspec_kw={"width_ratios": (1.3, 1), "left": 0.06, "right": 0.98, "bottom": 0.14, "wspace": 0.42}
        )
        layer = int(self.layer.value)
        profile = self.profile
        plot_membrane_gate(
            profile.mem_x[layer - 1],
            self.spike_fn,
            ax=ax_mem,
            title=f"layer {layer}: {100 * profile.spike_rates[layer - 1]:.0f} % spikes; "
            f"mean σ'(x) = {profile.gate[layer - 1]:.2g}",
        )
        first, last = profile.grad_norms[0], profile.grad_norms[-1]
        ratio = first / last if last > 0 else math.nan
        plot_layer_gradients(
            profile.grad_norms,
            self.reference.grad_norms,
            reference_label="fast sigmoid, k = 1",
            ax=ax_grad,
            title=f"{self.kind.value}, k = {float(self.slope.value):.3g}: layer 1 gets {ratio:.1e} of layer "
            f"{len(profile.grad_norms)}'s",
        )
