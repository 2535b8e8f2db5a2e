r"""Plots of spiking activity: membrane traces, rasters, spike codes, surrogates, f-I curves.

Sequences are time first, as everywhere in spikelib: ``mem_seq`` and ``spk_seq`` are
``[T, ...]`` with the time step :math:`t = 0, \dots, T-1` on the x axis. Every function
draws on the ``ax`` (or ``axes``) it is given, or creates a figure, and returns the figure;
none calls ``plt.show()``. In a notebook, write ``fig = ...`` (or end the line with ``;``)
so that the figure is not displayed twice.

What is drawn is labelled so that tests (and curious students) can find it again: lines
carry labels such as ``"threshold"`` or ``"spike"``, and :func:`plot_raster` draws one
point per spike, so ``len(collection.get_offsets())`` is the spike count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from spikelib.checks import check_number
from spikelib.snn.surrogate import SurrogateSpike
from spikelib.viz.common import figure_and_axes, figure_of

__all__ = [
    "MEM_COLORS",
    "plot_membrane",
    "plot_raster",
    "plot_encoding",
    "plot_frames",
    "plot_surrogate_gallery",
    "plot_fi_curve",
]

#: Colors of the membrane traces of successive neurons (matplotlib's default cycle).
MEM_COLORS = tuple(f"C{k}" for k in range(10))
THRESHOLD_COLOR = "tab:red"
CURRENT_COLOR = "0.45"


def _numpy(x: Tensor | np.ndarray | Sequence[float], name: str) -> np.ndarray:
    """A tensor, array or list as a float NumPy array, detached from autograd."""
    if isinstance(x, Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a Tensor, array or list of numbers, got {type(x).__name__}") from err


def _as_columns(seq: Tensor | np.ndarray, name: str) -> np.ndarray:
    """A sequence ``[T]`` or ``[T, ...]`` as an array ``[T, N]`` (everything after T flattened)."""
    array = _numpy(seq, name)
    if array.ndim < 1 or array.shape[0] < 1:
        raise ValueError(f"{name} must be [T, ...] with T >= 1, got shape {array.shape}")
    return array.reshape(array.shape[0], -1)


def plot_membrane(
    mem_seq: Tensor,
    spk_seq: Tensor | None = None,
    threshold: float | None = None,
    cur_seq: Tensor | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    r"""Membrane potential :math:`U[t]` of one or a few neurons, with threshold and spikes.

    Each neuron is one line (label ``"mem"`` or ``"mem 0"``, ``"mem 1"``, ...), its y data
    the trace itself. Spikes are dots on the trace at the steps where
    :math:`S[t] = 1` (label ``"spike"``, or ``"_spike 0"``, ``"_spike 1"``, ... in the
    neurons' colors when there are several): spikelib's ``mem_seq`` is the potential
    *before* its reset, so a dot sits above the threshold. The threshold :math:`\theta` is
    a dashed red line (label ``"threshold"``).

    The input current :math:`I[t]` (if given) is drawn as a step line (label ``"cur"``;
    grey, or in the neuron's color when each neuron has its own): in a panel above the
    membrane when this function creates the figure, on a twin y axis (right) of ``ax``
    when you pass one. The twin axis has the membrane's scale: in the discrete model
    current and potential share their units.

    Args:
        mem_seq (Tensor[T] or Tensor[T, N]): membrane potential, time first; everything
            after T is flattened into neurons (keep N small, a few traces).
        spk_seq (Tensor[T] or Tensor[T, N], optional): spikes in {0, 1}, shape of ``mem_seq``.
        threshold (float, optional): :math:`\theta`, drawn as a dashed line.
        cur_seq (Tensor[T] or Tensor[T, N], optional): input current per step.
        ax (Axes, optional): where to draw the membrane; a new figure when None.
        title (str, optional): title (of the top panel when the current has its own).

    Returns:
        Figure: the figure holding the membrane axes (and the current's axes).

    Raises:
        ValueError: ``spk_seq`` or ``cur_seq`` of a different length or size.
    """
    mem = _as_columns(mem_seq, "mem_seq")
    num_steps, num_neurons = mem.shape
    steps = np.arange(num_steps)
    spk = None
    if spk_seq is not None:
        spk = _as_columns(spk_seq, "spk_seq")
        if spk.shape != mem.shape:
            raise ValueError(f"spk_seq must have the shape of mem_seq {mem.shape}, got {spk.shape}")
    cur = None
    if cur_seq is not None:
        cur = _as_columns(cur_seq, "cur_seq")
        if cur.shape[0] != num_steps or cur.shape[1] not in (1, num_neurons):
            raise ValueError(f"cur_seq must be [T] or [T, N] with T = {num_steps}, N = {num_neurons}, got {cur.shape}")

    if ax is None and cur is not None:
        fig, (cur_ax, ax) = plt.subplots(2, 1, figsize=(7, 4), sharex=True, height_ratios=(1, 3), layout="constrained")
        top_ax = cur_ax
    else:
        fig, ax = figure_and_axes(ax, (7, 3))
        cur_ax = ax.twinx() if cur is not None else None
        top_ax = ax

    for n in range(num_neurons):
        color = MEM_COLORS[n % len(MEM_COLORS)]
        label = "mem" if num_neurons == 1 else f"mem {n}"
        ax.plot(steps, mem[:, n], color=color, label=label, linewidth=1.5)
        if spk is not None:
            fired = spk[:, n] > 0
            ax.plot(
                steps[fired],
                mem[fired, n],
                "o",
                color=color,
                markersize=5,
                label="spike" if num_neurons == 1 else f"_spike {n}",
                zorder=3,
            )
    if spk is not None and num_neurons > 1:  # one neutral legend entry for all neurons' dots
        ax.plot([], [], "o", color="0.3", markersize=5, label="spike")
    if threshold is not None:
        ax.axhline(float(threshold), color=THRESHOLD_COLOR, linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel("time step t")
    ax.set_ylabel("membrane U[t]")
    ax.set_xlim(-0.5, num_steps - 0.5)

    show_legend = num_neurons > 1 or spk is not None or threshold is not None
    if show_legend:  # headroom above the traces for a one-row legend
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.25 * (high - low))
        ax.legend(loc="upper right", fontsize=8, ncols=min(6, num_neurons + 2), columnspacing=1.0)

    if cur is not None:
        for n in range(cur.shape[1]):  # one current per neuron: in that neuron's color
            color = CURRENT_COLOR if cur.shape[1] == 1 else MEM_COLORS[n % len(MEM_COLORS)]
            cur_ax.step(steps, cur[:, n], where="mid", color=color, linewidth=1, label="cur" if n == 0 else "_cur")
        cur_ax.set_ylabel("current I[t]", color=CURRENT_COLOR)
        cur_ax.tick_params(axis="y", colors=CURRENT_COLOR)
        if cur_ax is not top_ax:  # a twin axis: I and U share units, so share the scale too
            low, high = ax.get_ylim()
            cur_low, cur_high = cur_ax.get_ylim()
            ax.set_ylim(min(low, cur_low), max(high, cur_high))
            cur_ax.set_ylim(ax.get_ylim())
    if title is not None:
        top_ax.set_title(title)
    return fig


def plot_raster(
    spk_seq: Tensor | np.ndarray,
    ax: Axes | None = None,
    title: str | None = None,
    max_neurons: int | None = None,
    color: str = "black",
) -> Figure:
    """Raster plot: one mark per spike, time step on x, neuron on y.

    The marks form a single scatter collection whose offsets are the ``(t, neuron)`` pairs
    of the spikes, so its length is the number of spikes drawn.

    Args:
        spk_seq (Tensor[T, ...]): spikes (nonzero = spike), time first; everything after T
            is flattened into neurons, e.g. ``[T, B, C, H, W] -> [T, B*C*H*W]`` with the
            pixels of the first image first.
        ax (Axes, optional): where to draw; a new figure when None.
        title (str, optional): axes title.
        max_neurons (int, optional): draw only the first ``max_neurons`` neurons.
        color (str): color of the marks.

    Returns:
        Figure: the figure holding ``ax``.
    """
    spk = _as_columns(spk_seq, "spk_seq")
    if max_neurons is not None:
        check_number("max_neurons", max_neurons, 1, integer=True, note="or None")
        spk = spk[:, :max_neurons]
    num_steps, num_neurons = spk.shape
    fig, ax = figure_and_axes(ax, (7, 3))
    steps, neurons = np.nonzero(spk)
    # "|" marks about 80 % of a row tall (marker size is in points squared)
    row_points = ax.get_position().height * fig.get_figheight() * 72.0 / max(num_neurons, 1)
    size = float(np.clip(0.8 * row_points, 1.0, 12.0)) ** 2
    ax.scatter(steps, neurons, marker="|", s=size, color=color, linewidths=1.0)
    ax.set_xlim(-0.5, num_steps - 0.5)
    ax.set_ylim(num_neurons - 0.5, -0.5)  # neuron 0 on top, like an image's first row
    ax.set_xlabel("time step t")
    ax.set_ylabel("neuron")
    if title is not None:
        ax.set_title(title)
    return fig


def _image_for_display(image: Tensor | np.ndarray, name: str) -> tuple[np.ndarray, dict]:
    """``[C, H, W]`` (C = 1 or 3) or ``[H, W]`` in [0, 1] as an ``imshow`` array (no rescaling)."""
    array = _numpy(image, name)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    elif array.ndim == 3 and array.shape[0] == 3:
        array = array.transpose(1, 2, 0)
    elif array.ndim != 2:
        raise ValueError(f"{name} must be [C, H, W] with C in (1, 3), or [H, W], got shape {array.shape}")
    array = np.clip(array, 0.0, 1.0)  # same scale for the image and its reconstruction
    options = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0} if array.ndim == 2 else {}
    return array, options


def plot_encoding(
    image: Tensor,
    spk_seq: Tensor,
    decoded: Tensor | None = None,
    axes: Sequence[Axes] | None = None,
    title: str | None = None,
    max_neurons: int | None = None,
) -> Figure:
    r"""An image, its spike train and the image rebuilt from the spikes, side by side.

    Left: the image. Middle: the raster of its pixels (neuron :math:`n` is pixel
    :math:`n` in row-major order, ``C*H*W`` of them). Right: ``decoded``, or when it is
    None the spike count per pixel divided by :math:`T` (the rate decoder), titled with
    its mean squared error against the image. Both images share the gray scale
    :math:`[0, 1]`, so a dim reconstruction looks dim.

    Args:
        image (Tensor[C, H, W] or Tensor[H, W]): intensities in [0, 1].
        spk_seq (Tensor[T, ...]): the spikes of this one image, with ``image.numel()``
            values per step (e.g. ``[T, C, H, W]`` or ``[T, 1, C, H, W]``).
        decoded (Tensor, optional): the image rebuilt from ``spk_seq`` (e.g. by
            ``spikelib.snn.encoding.latency_decode``), ``image.numel()`` values.
        axes (Sequence[Axes], optional): three axes to draw on; a new 1 x 3 figure when None.
        title (str, optional): figure title (suptitle).
        max_neurons (int, optional): passed to :func:`plot_raster`.

    Returns:
        Figure: the figure holding the three axes.

    Raises:
        ValueError: sizes that do not match, or not three axes.
    """
    image_t = torch.as_tensor(_numpy(image, "image"))
    spk = _as_columns(spk_seq, "spk_seq")
    if spk.shape[1] != image_t.numel():
        raise ValueError(
            f"spk_seq must hold one spike train per pixel ({image_t.numel()} for image shape "
            f"{tuple(image_t.shape)}), got {spk.shape[1]} per step (shape {tuple(np.shape(spk_seq))})"
        )
    if decoded is None:
        decoded_t = torch.as_tensor(spk.mean(0)).reshape(image_t.shape)
        decoded_name = "spike count / T"
    else:
        decoded_t = torch.as_tensor(_numpy(decoded, "decoded"))
        if decoded_t.numel() != image_t.numel():
            raise ValueError(
                f"decoded must have one value per pixel ({image_t.numel()}), got shape {tuple(decoded_t.shape)}"
            )
        decoded_t = decoded_t.reshape(image_t.shape)
        decoded_name = "decoded"
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(9, 2.8), width_ratios=(1, 1.6, 1), layout="constrained")
    elif len(axes) != 3:
        raise ValueError(f"axes must be three axes (image, raster, decoded), got {len(axes)}")
    image_ax, raster_ax, decoded_ax = axes
    fig = figure_of(image_ax)

    array, options = _image_for_display(image_t, "image")
    image_ax.imshow(array, **options)
    image_ax.set_title("image")
    plot_raster(spk, ax=raster_ax, max_neurons=max_neurons, title=f"{int((spk > 0).sum())} spikes, T = {spk.shape[0]}")
    raster_ax.set_ylabel("pixel")
    array, options = _image_for_display(decoded_t, "decoded")
    decoded_ax.imshow(array, **options)
    mse = float(((decoded_t.clamp(0, 1) - image_t) ** 2).mean())
    decoded_ax.set_title(f"{decoded_name}\nMSE {mse:.4f}")
    for image_axes in (image_ax, decoded_ax):
        image_axes.set_xticks([])
        image_axes.set_yticks([])
    if title is not None:
        fig.suptitle(title)
    return fig


def plot_frames(
    spk_seq: Tensor,
    steps: Sequence[int] | None = None,
    num_frames: int = 6,
    axes: Sequence[Axes] | None = None,
    title: str | None = None,
) -> Figure:
    """Snapshots of a spike train of one image: the spikes of a few time steps, as images.

    Each panel shows ``spk_seq[t]`` (white = spike) on the gray scale [0, 1], titled with
    the step and its spike count. A rate code looks like a noisy copy of the image at
    every step; a latency code shows one band of intensities per step.

    Args:
        spk_seq (Tensor[T, C, H, W] or Tensor[T, H, W]): spikes of one image, time first
            (C = 1 or 3).
        steps (Sequence[int], optional): the steps to show; default ``num_frames`` steps
            evenly spaced from 0 to T - 1.
        num_frames (int): how many steps when ``steps`` is None. Default 6.
        axes (Sequence[Axes], optional): one axes per frame; a new 1-row figure when None.
        title (str, optional): figure title (suptitle).

    Returns:
        Figure: the figure holding the frames.

    Raises:
        ValueError: a step outside [0, T), or not one axes per frame.
    """
    frames = _numpy(spk_seq, "spk_seq")
    if frames.ndim not in (3, 4):
        raise ValueError(f"spk_seq must be [T, C, H, W] or [T, H, W] for one image, got shape {frames.shape}")
    num_steps = frames.shape[0]
    if steps is None:
        steps = sorted({int(round(k)) for k in np.linspace(0, num_steps - 1, min(num_frames, num_steps))})
    steps = [int(t) for t in steps]
    if any(not 0 <= t < num_steps for t in steps) or not steps:
        raise ValueError(f"steps must lie in [0, {num_steps - 1}], got {steps}")
    if axes is None:
        grid = plt.subplots(1, len(steps), figsize=(1.6 * len(steps), 2.0), squeeze=False, layout="constrained")[1]
        axes = list(grid[0])
    elif len(axes) != len(steps):
        raise ValueError(f"axes must hold one axes per frame ({len(steps)}), got {len(axes)}")
    fig = figure_of(axes[0])
    for ax, t in zip(axes, steps):
        array, options = _image_for_display(frames[t], "spk_seq[t]")
        ax.imshow(array, interpolation="nearest", **options)
        ax.set_title(f"t = {t}\n{int((frames[t] > 0).sum())} spikes", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title is not None:
        fig.suptitle(title)
    return fig


def _rescaled(values: np.ndarray) -> np.ndarray:
    low, high = values.min(), values.max()
    if high - low < 1e-12:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def plot_surrogate_gallery(
    surrogates: Sequence[SurrogateSpike] | Mapping[str, SurrogateSpike],
    x: Tensor | None = None,
    axes: np.ndarray | Sequence[Sequence[Axes]] | None = None,
) -> Figure:
    r"""Forward and backward of each spike function: the step, its smooth twin, its slope.

    One column per surrogate. Top row (forward): the Heaviside step :math:`H(x)` that
    every spike function really computes (label ``"H(x)"``), and the smooth step
    :math:`\sigma(x)` whose slope the backward pass uses (label ``"smooth step"``). The
    smooth step is shifted and scaled to run from 0 to 1 over the plotted ``x``, so it can
    be compared with :math:`H`: the fast sigmoid's own step only spans :math:`\pm 1/k`
    and the straight-through one is unbounded. Bottom row (backward): the surrogate
    derivative :math:`\sigma'(x)` = ``spike_fn.derivative(x)`` itself, not rescaled
    (label ``"derivative"``), with the true derivative of :math:`H`, zero away from
    :math:`x = 0`, as a dotted line.

    Args:
        surrogates (Sequence[SurrogateSpike] or Mapping[str, SurrogateSpike]): the spike
            functions; a mapping gives the column titles, otherwise the ``repr`` does.
        x (Tensor[K], optional): points :math:`x = U - \theta` to draw at. Default 401
            points on :math:`[-2, 2]`.
        axes (array of Axes [2, n], optional): where to draw (row 0 forward, row 1
            backward, one column per surrogate); a new figure when None.

    Returns:
        Figure: the figure holding the ``2 x n`` axes.

    Raises:
        TypeError: an entry that is not a ``SurrogateSpike``.
        ValueError: ``axes`` of the wrong shape, or no surrogate.
    """
    if isinstance(surrogates, Mapping):
        names, functions = list(surrogates.keys()), list(surrogates.values())
    else:
        functions = list(surrogates)
        names = [repr(fn) for fn in functions]
    if not functions:
        raise ValueError("surrogates must hold at least one SurrogateSpike, got none")
    for fn in functions:
        if not isinstance(fn, SurrogateSpike):
            raise TypeError(f"surrogates must be SurrogateSpike objects (e.g. FastSigmoid()), got {fn!r}")
    if x is None:
        x = torch.linspace(-2.0, 2.0, 401)
    x = torch.as_tensor(x, dtype=torch.get_default_dtype()).flatten()
    count = len(functions)
    if axes is None:
        axes = plt.subplots(
            2, count, figsize=(2.3 * count + 0.4, 4.4), sharex=True, squeeze=False, layout="constrained"
        )[1]
    given = np.asarray(axes, dtype=object)
    if given.size != 2 * count:
        raise ValueError(f"axes must be a 2 x {count} grid (forward row, backward row), got another shape")
    grid = given.reshape(2, -1)
    fig = figure_of(grid[0, 0])
    x_np = x.numpy()
    step = (x_np > 0).astype(np.float64)
    for k, (name, fn) in enumerate(zip(names, functions)):
        top, bottom = grid[0, k], grid[1, k]
        with torch.no_grad():
            smooth = fn.smooth_step(x).to(torch.float64).numpy()
            slope = fn.derivative(x).to(torch.float64).numpy()
        top.plot(x_np, step, color="black", linewidth=1.2, label="H(x)")
        top.plot(x_np, _rescaled(smooth), color="C0", linewidth=1.5, label="smooth step")
        top.set_title(name, fontsize=9)
        bottom.plot(x_np, np.zeros_like(x_np), color="black", linestyle=":", linewidth=1, label="H'(x)")
        bottom.plot(x_np, slope, color="C1", linewidth=1.5, label="derivative")
        bottom.set_xlabel(r"$x = U - \theta$")
        top.set_ylim(-0.1, 1.1)
    grid[0, 0].set_ylabel("forward: step")
    grid[1, 0].set_ylabel("backward: slope")
    grid[0, 0].legend(fontsize=7, loc="upper left")
    grid[1, 0].legend(fontsize=7, loc="upper left")
    return fig


def plot_fi_curve(
    currents: Tensor | Sequence[float],
    rates: Tensor | Sequence[float],
    ax: Axes | None = None,
    rheobase: float | None = None,
    label: str | None = None,
) -> Figure:
    r"""The f-I curve: firing rate (spikes per step) against a constant input current.

    Call it several times on one ``ax`` (with a ``label`` each) to compare neurons. The
    rheobase, the weakest current that makes a leaky neuron fire,
    :math:`\theta(1 - \beta)`, is a dotted vertical line in the curve's color (label
    ``"rheobase ..."``).

    Args:
        currents (Tensor[K]): input currents :math:`I`, increasing.
        rates (Tensor[K]): spikes per step for each current (e.g.
            ``spikelib.snn.neurons.firing_rate``).
        ax (Axes, optional): where to draw; a new figure when None.
        rheobase (float, optional): current to mark.
        label (str, optional): legend entry of the curve.

    Returns:
        Figure: the figure holding ``ax``.

    Raises:
        ValueError: ``currents`` and ``rates`` of different lengths.
    """
    cur = _numpy(currents, "currents").ravel()
    rate = _numpy(rates, "rates").ravel()
    if cur.shape != rate.shape:
        raise ValueError(f"currents and rates must have the same length, got {cur.size} and {rate.size}")
    fig, ax = figure_and_axes(ax, (5, 3.2))
    (line,) = ax.plot(cur, rate, linewidth=1.5, label=label)
    if rheobase is not None:
        ax.axvline(
            float(rheobase),
            color=line.get_color(),
            linestyle=":",
            linewidth=1.2,
            label=f"rheobase {float(rheobase):.3g}",
        )
    ax.set_xlabel("input current I")
    ax.set_ylabel("firing rate (spikes / step)")
    ax.set_ylim(-0.03, max(1.03, float(rate.max(initial=0)) + 0.03))
    if label is not None or rheobase is not None:
        ax.legend(fontsize=8, loc="upper left")
    return fig
