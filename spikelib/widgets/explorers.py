r"""Interactive explorers for the notebooks: move a slider, watch a neuron or a code change.

Each explorer is a :class:`spikelib.widgets.base.Explorer`: its controls are attributes
(``explorer.beta``, ``explorer.num_steps``, ...), the result of the last simulation
(``mem_seq``, ``spk_seq``, ...) is recomputed whenever a control changes, and ``figure``
is redrawn from it (rendered to ``png`` inside ``output`` in a kernel).

Show one in a notebook by leaving it as the last expression of a cell (or
``display(explorer)``); ``explorer.widget`` is the whole layout. GitHub does not render
widget state, so notebooks show a static figure of the default setting first.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import torch
from torch import Tensor

from spikelib.checks import check_choice, check_number
from spikelib.snn.encoding import CODINGS as ENCODING_CODINGS
from spikelib.snn.encoding import direct_encode, latency_decode, latency_encode, rate_decode, rate_encode
from spikelib.snn.neurons import RESETS, LIFParams, lif_seq_with_mem
from spikelib.snn.surrogate import Heaviside
from spikelib.viz.spikes import plot_encoding, plot_membrane, plot_raster
from spikelib.widgets.base import Explorer

__all__ = ["INPUT_KINDS", "CODINGS", "DIRECT_NEURON", "input_current", "LIFExplorer", "EncodingExplorer"]

#: Shapes of the input current of :class:`LIFExplorer` (see :func:`input_current`).
INPUT_KINDS: tuple[str, ...] = ("constant", "step", "pulse")

#: Codes offered by :class:`EncodingExplorer`.
#: The input codes of :mod:`spikelib.snn.encoding`, in the order the explorer offers them.
CODINGS: tuple[str, ...] = tuple(sorted(ENCODING_CODINGS, key=("rate", "latency", "direct").index))

#: The neuron that turns a direct code into spikes in :class:`EncodingExplorer`: a
#: non-leaky integrate-and-fire neuron with reset by subtraction fires
#: :math:`\lfloor T x / \theta \rfloor` times or one less, a deterministic rate code.
DIRECT_NEURON = LIFParams(beta=1.0, threshold=1.0, reset="subtract")


def input_current(kind: str, amplitude: float, num_steps: int) -> Tensor:
    r"""A current :math:`I[t]` of one of the :data:`INPUT_KINDS` shapes.

    * ``"constant"``: :math:`I[t] = a` for all :math:`t`;
    * ``"step"``: 0 for :math:`t < T/5`, then :math:`a`;
    * ``"pulse"``: :math:`a` for :math:`T/5 \le t < 3T/5`, else 0 (watch the leak after it).

    Args:
        kind (str): one of :data:`INPUT_KINDS`.
        amplitude (float): :math:`a`.
        num_steps (int): :math:`T \ge 1`.

    Returns:
        Tensor[T]: the current, float32.
    """
    check_choice("kind", kind, INPUT_KINDS)
    check_number("num_steps", num_steps, 1, integer=True)
    cur_seq = torch.full((num_steps,), float(amplitude))
    onset = num_steps // 5
    if kind in ("step", "pulse"):
        cur_seq[:onset] = 0.0
    if kind == "pulse":
        cur_seq[3 * num_steps // 5 :] = 0.0
    return cur_seq


class LIFExplorer(Explorer):
    r"""One LIF neuron and a small population, redrawn as the sliders move.

    Top: the membrane :math:`U[t]` of one neuron driven by the chosen current (grey, right
    axis), with the threshold and its spikes. Bottom: the raster of ``num_neurons``
    neurons with the same parameters, driven by currents evenly spaced from
    ``amplitude / num_neurons`` (top row) to the chosen amplitude (bottom row, the neuron
    above): rows below the rheobase :math:`\theta(1 - \beta)` stay silent.

    The neuron is :func:`spikelib.snn.neurons.lif_seq_with_mem` with a Heaviside spike (no
    gradients are needed here).

    Controls (ipywidgets): ``beta``, ``threshold``, ``current`` (amplitude),
    ``input_kind`` (:data:`INPUT_KINDS`), ``num_steps``, ``reset`` (:data:`RESETS`).

    Results of the last update: ``cur_seq`` (Tensor[T]), ``mem_seq`` and ``spk_seq``
    (Tensor[T], the neuron plotted), ``pop_cur`` (Tensor[N]) and ``pop_spk_seq``
    (Tensor[T, N], the raster), ``params`` (:class:`LIFParams`), ``figure``.

    Args:
        beta, threshold, current, input_kind, num_steps, reset: initial control values
            (defaults: the paper's neuron, :math:`\beta = 0.5, \theta = 1`, driven by 0.6).
        num_neurons (int): rows of the raster. Default 20.
        dpi (int): resolution of the rendered figure. Default 72.
        render (bool, optional): render the figure to PNG into ``output`` (and ``png``) on
            every update; by default only inside a Jupyter kernel, where it can be seen.
    """

    controls = ("beta", "threshold", "current", "input_kind", "num_steps", "reset")

    def __init__(
        self,
        beta: float = 0.5,
        threshold: float = 1.0,
        current: float = 0.6,
        input_kind: str = "constant",
        num_steps: int = 60,
        reset: str = "subtract",
        num_neurons: int = 20,
        dpi: int = 72,
        render: bool | None = None,
    ) -> None:
        check_choice("input_kind", input_kind, INPUT_KINDS)
        check_choice("reset", reset, RESETS)
        check_number("num_neurons", num_neurons, 1, integer=True)
        self.num_neurons = num_neurons
        style = {"description_width": "initial"}
        opts = {"continuous_update": False, "style": style}
        self.beta = widgets.FloatSlider(beta, min=0.0, max=1.0, step=0.01, description="beta", **opts)
        self.threshold = widgets.FloatSlider(threshold, min=0.1, max=2.0, step=0.05, description="threshold", **opts)
        self.current = widgets.FloatSlider(current, min=0.0, max=2.0, step=0.01, description="current I", **opts)
        self.input_kind = widgets.Dropdown(
            options=list(INPUT_KINDS), value=input_kind, description="input", style=style
        )
        self.num_steps = widgets.IntSlider(num_steps, min=5, max=200, step=5, description="num_steps T", **opts)
        self.reset = widgets.Dropdown(options=list(RESETS), value=reset, description="reset", style=style)
        box = widgets.HBox(
            [
                widgets.VBox([self.beta, self.threshold, self.current]),
                widgets.VBox([self.input_kind, self.num_steps, self.reset]),
            ]
        )
        self._setup((7.0, 5.0), dpi, box, render, layout=None)

    def _simulate(self) -> None:
        self.params = LIFParams(float(self.beta.value), float(self.threshold.value), self.reset.value)
        num_steps = int(self.num_steps.value)
        amplitude = float(self.current.value)
        shape = input_current(self.input_kind.value, 1.0, num_steps)  # [T], 0 or 1
        self.cur_seq = amplitude * shape
        self.pop_cur = amplitude * torch.arange(1, self.num_neurons + 1) / self.num_neurons
        # [T, 1 + N]: the neuron plotted, then the population
        cur_seq = shape[:, None] * torch.cat([torch.tensor([amplitude]), self.pop_cur])
        with torch.no_grad():
            spk_seq, mem_seq = lif_seq_with_mem(cur_seq, self.params, Heaviside())
        self.spk_seq, self.mem_seq = spk_seq[:, 0], mem_seq[:, 0]
        self.pop_spk_seq = spk_seq[:, 1:]

    def _draw(self) -> None:
        mem_ax, raster_ax = self.figure.subplots(
            2,
            1,
            sharex=True,
            gridspec_kw={
                "height_ratios": (3, 2),
                "left": 0.1,
                "right": 0.9,
                "top": 0.94,
                "bottom": 0.09,
                "hspace": 0.2,
            },
        )
        beta, threshold, reset = float(self.params.beta), float(self.params.threshold), self.params.reset
        count = int(self.spk_seq.sum())
        plot_membrane(
            self.mem_seq,
            self.spk_seq,
            threshold,
            self.cur_seq,
            ax=mem_ax,
            title=f"beta {beta:.2f}, threshold {threshold:.2f}, reset {reset!r}: "
            f"{count} spike{'s' if count != 1 else ''} in {len(self.spk_seq)} steps",
        )
        plot_raster(
            self.pop_spk_seq,
            ax=raster_ax,
            title=f"{self.num_neurons} neurons, I = {float(self.pop_cur[0]):.2f} (top) to "
            f"{float(self.pop_cur[-1]):.2f} (bottom); rheobase {threshold * (1 - beta):.2f}",
        )
        mem_ax.set_xlabel("")


def _as_images(images: Tensor | Sequence[Tensor]) -> Tensor:
    """Images as Tensor[N, C, H, W] in [0, 1]."""
    if not isinstance(images, Tensor):
        images = torch.stack([torch.as_tensor(image) for image in images])
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] < 1:
        raise ValueError(f"images must be [N, C, H, W] with C in (1, 3) or [N, H, W], got {tuple(images.shape)}")
    images = images.float()
    if float(images.min()) < 0 or float(images.max()) > 1:
        raise ValueError("images must lie in [0, 1] (intensities); rescale them first")
    return images


class EncodingExplorer(Explorer):
    r"""Pick an image, a code and a number of steps; see the spikes and what they give back.

    Codes (:data:`CODINGS`):

    * ``"rate"``: :func:`spikelib.snn.encoding.rate_encode` (Bernoulli, seeded by ``seed``),
      decoded by the spike count over :math:`T`;
    * ``"latency"``: :func:`spikelib.snn.encoding.latency_encode` with the linear code
      stretched over the window (``linear=True, normalize=True``), decoded by
      :func:`spikelib.snn.encoding.latency_decode`; at most one spike per pixel;
    * ``"direct"``: :func:`spikelib.snn.encoding.direct_encode` feeds the intensity as a
      current to a first spiking layer, here one non-leaky integrate-and-fire neuron per
      pixel (:data:`DIRECT_NEURON`); its spikes are shown, decoded by their count over
      :math:`T`: a rate code without the randomness.

    Controls: ``index`` (which image), ``coding``, ``num_steps``, ``seed``.

    Results of the last update: ``image`` (Tensor[C, H, W]), ``spk_seq`` (Tensor[T, C, H,
    W]), ``decoded`` (Tensor[C, H, W]), ``error`` (mean squared error of ``decoded``),
    ``figure``.

    Args:
        images (Tensor[N, C, H, W] or Tensor[N, H, W]): intensities in [0, 1], C in (1, 3).
        index, coding, num_steps, seed: initial control values.
        max_neurons (int, optional): rows of the raster (pixels); all by default.
        dpi (int): resolution of the rendered figure. Default 72.
        render (bool, optional): as in :class:`LIFExplorer`.
    """

    controls = ("index", "coding", "num_steps", "seed")

    def __init__(
        self,
        images: Tensor | Sequence[Tensor],
        index: int = 0,
        coding: str = "rate",
        num_steps: int = 20,
        seed: int = 0,
        max_neurons: int | None = None,
        dpi: int = 72,
        render: bool | None = None,
    ) -> None:
        self.images = _as_images(images)
        check_choice("coding", coding, CODINGS)
        self.max_neurons = max_neurons
        style = {"description_width": "initial"}
        opts = {"continuous_update": False, "style": style}
        self.index = widgets.IntSlider(index, min=0, max=len(self.images) - 1, description="image", **opts)
        self.coding = widgets.Dropdown(options=list(CODINGS), value=coding, description="coding", style=style)
        self.num_steps = widgets.IntSlider(num_steps, min=2, max=200, description="num_steps T", **opts)
        self.seed = widgets.BoundedIntText(seed, min=0, max=2**31 - 1, description="seed", style=style)
        box = widgets.HBox(
            [
                widgets.VBox([self.index, self.num_steps]),
                widgets.VBox([self.coding, self.seed]),
            ]
        )
        self._setup((9.0, 2.9), dpi, box, render)

    def _simulate(self) -> None:
        self.image = self.images[int(self.index.value)]
        num_steps = int(self.num_steps.value)
        coding = self.coding.value
        if coding == "rate":
            generator = torch.Generator().manual_seed(int(self.seed.value))
            self.spk_seq = rate_encode(self.image, num_steps, generator=generator)
            self.decoded = rate_decode(self.spk_seq)
        elif coding == "latency":
            self.spk_seq = latency_encode(self.image, num_steps, linear=True, normalize=True)
            self.decoded = latency_decode(self.spk_seq, linear=True, normalize=True)
        elif coding == "direct":
            with torch.no_grad():
                self.spk_seq, _ = lif_seq_with_mem(direct_encode(self.image, num_steps), DIRECT_NEURON, Heaviside())
            self.decoded = rate_decode(self.spk_seq)
        else:  # the Dropdown only offers CODINGS
            raise ValueError(f"coding must be one of {list(CODINGS)}, got {coding!r}")
        self.error = float(((self.decoded - self.image) ** 2).mean())

    def _draw(self) -> None:
        axes = self.figure.subplots(1, 3, width_ratios=(1, 1.8, 1))
        plot_encoding(
            self.image,
            self.spk_seq,
            decoded=self.decoded,
            axes=axes,
            max_neurons=self.max_neurons,
            title=f"{self.coding.value} code of image {self.index.value}: "
            f"{int(self.spk_seq.sum())} spikes for {self.image.numel()} pixels",
        )
