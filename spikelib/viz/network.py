"""Plots of what a spiking network does inside: spike maps, rates per layer, boxes per step, gradients per layer.

Every function draws on the ``ax`` it is given (or creates a figure) and returns the figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
from torch import Tensor

from spikelib.snn.surrogate import SurrogateSpike
from spikelib.viz.boxes import GT_COLOR, PRED_COLOR, show_image_with_boxes
from spikelib.viz.common import figure_and_axes

#: Plain-text labels for log axes: mathtext labels (``$10^{-6}$``) cost a parse each on every
#: redraw, and the dozens of minor ticks of a log axis cost more than the plot itself.
_LOG_FORMAT = FuncFormatter(lambda value, _: f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e"))


def _plain_log_axis(axis: Axis) -> None:
    axis.set_major_locator(LogLocator(base=10.0, numticks=5))
    axis.set_major_formatter(_LOG_FORMAT)
    axis.set_minor_locator(NullLocator())


__all__ = ["plot_spike_map", "plot_layer_rates", "plot_box_steps", "plot_membrane_gate", "plot_layer_gradients"]


def plot_spike_map(spk: Tensor, ax: Axes | None = None, title: str | None = None, vmax: float = 1.0) -> Figure:
    """One step of a layer: the share of its channels that fire at every place.

    Args:
        spk (Tensor[C, H, W] or Tensor[H, W]): spikes (or intensities) at one step.
        ax (Axes, optional): where to draw; a new figure when None.
        title (str, optional): axes title.
        vmax (float): the value drawn brightest (1: every channel fires).

    Returns:
        Figure: the figure holding ``ax``.
    """
    spk = torch.as_tensor(spk).detach().float().cpu()
    if spk.ndim == 3:
        spk = spk.mean(0)
    if spk.ndim != 2:
        raise ValueError(f"spk must be [C, H, W] or [H, W], got shape {tuple(spk.shape)}")
    fig, ax = figure_and_axes(ax, (3, 3))
    ax.imshow(spk.numpy(), cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)
    return fig


def plot_layer_rates(
    rates: Mapping[str, float],
    step_rates: Mapping[str, float] | None = None,
    highlight: str | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Spikes per neuron per step of every layer (bars), and at one step (dots).

    Args:
        rates (Mapping[str, float]): layer name -> mean rate over all steps.
        step_rates (Mapping[str, float], optional): layer name -> rate at one step.
        highlight (str, optional): a layer drawn in a strong colour.
        ax (Axes, optional): where to draw; a new figure when None.
        title (str, optional): axes title.

    Returns:
        Figure: the figure holding ``ax``.
    """
    if highlight is not None and highlight not in rates:
        raise ValueError(f"highlight must be one of {list(rates)}, got {highlight!r}")
    names = list(rates)
    fig, ax = figure_and_axes(ax, (4, 3))
    colors = ["tab:blue" if name == highlight else "0.75" for name in names]
    ax.bar(range(len(names)), [rates[n] for n in names], color=colors, label="mean over all steps")
    if step_rates is not None:
        ax.plot(range(len(names)), [step_rates[n] for n in names], "o", color="black", ms=4, label="at step t")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xticks(range(len(names)), names, rotation=45, fontsize=8)
    ax.set_ylabel("spikes / neuron / step")
    ax.set_ylim(0, max(0.05, 1.15 * max([*rates.values(), *(step_rates or {}).values()])))
    if title is not None:
        ax.set_title(title, fontsize=9)
    return fig


def plot_box_steps(
    image: Tensor, boxes_seq: Tensor, true_box: Tensor | None = None, ax: Axes | None = None, title: str | None = None
) -> Figure:
    """An image with the box predicted after each step so far: older boxes faint, the last one bold.

    Args:
        image (Tensor[C, H, W]): the image, intensities in [0, 1].
        boxes_seq (Tensor[t, 4]): boxes (normalized xyxy) predicted after steps 0 .. t-1.
        true_box (Tensor[4], optional): the annotated box (green).
        ax (Axes, optional): where to draw; a new figure when None.
        title (str, optional): axes title.

    Returns:
        Figure: the figure holding ``ax``.
    """
    boxes_seq = torch.as_tensor(boxes_seq, dtype=torch.float32).reshape(-1, 4)
    if boxes_seq.shape[0] == 0:
        raise ValueError("boxes_seq must hold at least one box, got 0")
    true = torch.zeros(0, 4) if true_box is None else torch.as_tensor(true_box, dtype=torch.float32).reshape(-1, 4)
    fig = show_image_with_boxes(image, true, colors=GT_COLOR, ax=ax, title=title)
    ax = fig.axes[0] if ax is None else ax
    width, height = ax.get_xlim()[1], ax.get_ylim()[0]
    count = boxes_seq.shape[0]
    for k, (x0, y0, x1, y1) in enumerate(boxes_seq.tolist()):
        last = k == count - 1
        ax.add_patch(
            _rectangle(x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height, 0.25 + 0.5 * k / count, last)
        )
    return fig


def _rectangle(x: float, y: float, w: float, h: float, alpha: float, last: bool) -> Rectangle:
    return Rectangle(
        (x, y),
        w,
        h,
        fill=False,
        edgecolor=PRED_COLOR,
        linewidth=2.5 if last else 1.0,
        linestyle="--" if last else ":",
        alpha=1.0 if last else alpha,
    )


def plot_membrane_gate(
    x: Tensor, spike_fn: SurrogateSpike, ax: Axes | None = None, title: str | None = None, x_range: float = 3.0
) -> Figure:
    r"""A histogram of membrane distances :math:`x = U - \theta` under the surrogate derivative :math:`\sigma'(x)`.

    Where the histogram's mass sits under a near-zero derivative, almost no gradient passes.

    Args:
        x (Tensor[...]): membrane distances from the threshold of a layer (all neurons and steps).
        spike_fn (SurrogateSpike): whose derivative to draw (right axis, log scale).
        ax (Axes, optional): where to draw; a new figure when None.
        title (str, optional): axes title.
        x_range (float): draw :math:`x \in [-x_{range}, x_{range}]`.

    Returns:
        Figure: the figure holding ``ax``.
    """
    values = torch.as_tensor(x).detach().float().flatten().numpy()  # those outside the range are left out
    fig, ax = figure_and_axes(ax, (5, 3))
    ax.hist(values, bins=60, range=(-x_range, x_range), density=True, color="0.8", histtype="stepfilled")
    ax.set(xlabel="x = U - θ", ylabel="density", xlim=(-x_range, x_range))
    twin = ax.twinx()
    grid = torch.linspace(-x_range, x_range, 401)
    twin.plot(grid.numpy(), spike_fn.derivative(grid).clamp(min=1e-12).numpy(), color="tab:orange")
    twin.set_yscale("log")
    twin.set_ylim(1e-6, 1e2)
    _plain_log_axis(twin.yaxis)
    twin.set_ylabel("σ'(x) (log)", color="tab:orange")
    if title is not None:
        ax.set_title(title, fontsize=9)
    return fig


def plot_layer_gradients(
    grad_norms: Sequence[float],
    reference: Sequence[float] | None = None,
    reference_label: str = "reference",
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """The size of the gradient that reaches each layer's weights, first layer left (log scale).

    Args:
        grad_norms (Sequence[float]): one norm per layer, input layer first.
        reference (Sequence[float], optional): the same for a reference setting (grey line).
        reference_label (str): its legend entry.
        ax (Axes, optional): where to draw; a new figure when None.
        title (str, optional): axes title.

    Returns:
        Figure: the figure holding ``ax``.
    """
    norms = np.maximum(np.asarray(grad_norms, dtype=float), 1e-30)
    fig, ax = figure_and_axes(ax, (4, 3))
    layers = np.arange(1, len(norms) + 1)
    ax.bar(layers, norms, color="tab:blue", label="this surrogate")
    if reference is not None:
        ref = np.maximum(np.asarray(reference, dtype=float), 1e-30)
        ax.plot(layers, ref, "o-", color="0.4", ms=3, label=reference_label)
        ax.legend(fontsize=7)
    ax.set_yscale("log")
    low = min(norms.min(), ref.min()) if reference is not None else norms.min()
    high = max(norms.max(), ref.max()) if reference is not None else norms.max()
    ax.set_ylim(max(1e-15, 0.1 * float(low)), 10 * float(high))
    _plain_log_axis(ax.yaxis)
    ax.set(xlabel="layer (input side left)", ylabel="|dL/dW| (log)", xticks=layers)
    if title is not None:
        ax.set_title(title, fontsize=9)
    return fig
