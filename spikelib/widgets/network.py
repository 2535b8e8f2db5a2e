r"""Look inside a trained spiking localizer: one image, one time step, one layer at a time.

:class:`NetworkExplorer` runs the network once per image (cached), so moving the step or
the layer only redraws. It shows the coded input at step :math:`t`, the chosen layer's
spikes at :math:`t`, a raster of sampled neurons of that layer over all :math:`T` steps,
the firing rate of every layer, and the box the network would predict if it stopped after
step :math:`t` (the head applied to the readout of the first :math:`t+1` steps,
:func:`spikelib.eval.latency.predictions_per_step`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import ipywidgets as widgets
import torch
from torch import Tensor
from torchvision.ops import box_iou

from spikelib.data.datasets import LocalizationDataset
from spikelib.models.localizer import SpikingLocalizer
from spikelib.viz.network import plot_box_steps, plot_layer_rates, plot_spike_map
from spikelib.viz.spikes import plot_raster
from spikelib.widgets.base import CONTROL_STYLE, Explorer

__all__ = ["ORDERS", "ImageRun", "NetworkState", "run_one_image", "sample_neurons", "NetworkExplorer"]

#: How :class:`NetworkExplorer` orders its images: dataset order, or by the IoU of the final box.
ORDERS: tuple[str, ...] = ("index", "IoU, best first", "IoU, worst first")


class ImageRun(NamedTuple):
    """One image through a spiking localizer, every step kept.

    Attributes:
        x_seq (Tensor[T, C, H, W]): the coded input.
        outputs (dict[str, Tensor[T, C_l, H_l, W_l]]): each layer's spikes (uint8).
        boxes_seq (Tensor[T, 4]): the box predicted after each step (normalized xyxy).
        labels_seq (Tensor[T]): the class predicted after each step.
    """

    x_seq: Tensor
    outputs: dict[str, Tensor]
    boxes_seq: Tensor
    labels_seq: Tensor


class NetworkState(NamedTuple):
    """What :class:`NetworkExplorer` shows now.

    Attributes:
        image_index (int): the dataset index of the image.
        step (int): the time step t (0-based).
        layer (str): the layer shown.
        box (Tensor[4]): the box predicted after steps 0..t.
        label (int): the class predicted after steps 0..t.
        iou (float): IoU of ``box`` with the annotated box.
        layer_rates (dict[str, float]): spikes per neuron per step of every layer, over all T.
        step_rates (dict[str, float]): the same at step t.
        neurons (Tensor[N]): the neurons of the raster (flat indices into the layer's [C, H, W]).
    """

    image_index: int
    step: int
    layer: str
    box: Tensor
    label: int
    iou: float
    layer_rates: dict[str, float]
    step_rates: dict[str, float]
    neurons: Tensor


@torch.no_grad()
def run_one_image(model: SpikingLocalizer, image: Tensor, seed: int = 0) -> ImageRun:
    """Run ``model`` on one image and keep its coded input, every layer's spikes and every step's prediction.

    The coded input and the run draw from the same seeded random state (it matters for rate
    coding only), and the global random state is left as it was.

    Args:
        model (SpikingLocalizer): in eval mode, usually.
        image (Tensor[C, H, W]): intensities in [0, 1].
        seed (int): seed of the input code's randomness.

    Returns:
        ImageRun: with ``boxes_seq[t]`` equal to
        ``predictions_per_step(model, image[None])[t].boxes[0]``.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be [C, H, W], got shape {tuple(image.shape)}")
    images = image[None]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x_seq = model.encode(images)
        torch.manual_seed(seed)
        record = model.record(images)
    if record.readout_seq is None:
        raise ValueError(f"{type(model).__name__}.record() gave no readout_seq: not a spiking localizer")
    steps = model.prediction_seq(record)  # T x Prediction for a batch of one
    return ImageRun(
        x_seq=x_seq[:, 0].float(),
        outputs={name: spk_seq[:, 0].to(torch.uint8) for name, spk_seq in record.outputs.items()},
        boxes_seq=torch.cat([p.boxes for p in steps]).float(),
        labels_seq=torch.cat([p.logits.argmax(1) for p in steps]),
    )


def sample_neurons(spk_seq: Tensor, count: int, seed: int = 0) -> Tensor:
    """Pick ``count`` neurons of a layer for a raster, those that fire first (at random among them).

    Args:
        spk_seq (Tensor[T, ...]): a layer's spikes; everything after T is flattened into neurons.
        count (int): neurons wanted (all of them if the layer has fewer).
        seed (int): seed of the random pick.

    Returns:
        Tensor[N] (int64): sorted flat neuron indices, ``N = min(count, neurons)``.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an int >= 1, got {count!r}")
    fired = spk_seq.reshape(spk_seq.shape[0], -1).sum(0) > 0
    generator = torch.Generator().manual_seed(seed)
    active, silent = torch.nonzero(fired).flatten(), torch.nonzero(~fired).flatten()
    active = active[torch.randperm(len(active), generator=generator)]
    silent = silent[torch.randperm(len(silent), generator=generator)]
    return torch.cat([active, silent])[:count].sort().values


class NetworkExplorer(Explorer):
    r"""Step through a trained spiking localizer: image, time step, layer.

    Controls: ``order`` (:data:`ORDERS`: dataset order or sorted by the IoU of the final
    box), ``image`` (position in that order), ``step`` (:math:`t`), ``layer``.

    The figure: the coded input at :math:`t`; the layer's spike map at :math:`t` (the share
    of its channels firing at each place); the image with the annotated box (green) and
    the boxes predicted after steps :math:`0..t` (orange, the one after :math:`t` bold); a
    raster of ``num_neurons`` sampled neurons of the layer over all :math:`T` steps (a red
    line at :math:`t`); the spike rate of every layer, over all steps (bars) and at
    :math:`t` (dots).

    Every image is run once (:func:`run_one_image`, cached), so moving ``step`` or
    ``layer`` only redraws. The IoU order comes from one batched run over all the images,
    made when the explorer is built.

    Results of the last update: ``state`` (:class:`NetworkState`), ``run``
    (:class:`ImageRun` of the image shown), ``figure``.

    Args:
        model (SpikingLocalizer): a trained spiking localizer; it is put in eval mode.
        dataset: ``(image, target)`` items with ``target["box"]`` (normalized xyxy) and
            ``target["label"]``, e.g. a test split.
        num_images (int): the first images of ``dataset`` offered. Default 64.
        class_names (Sequence[str], optional): names of the classes, for titles.
        order, image, step, layer: initial control values (``step`` None: the last step;
            ``layer`` None: the first layer).
        num_neurons (int): rows of the raster. Default 40.
        seed (int): seed of the input code (rate coding) and of the sampled neurons.
        dpi (int): resolution of the rendered figure. Default 72.
        render (bool, optional): render to PNG into ``output``; by default only in a kernel.
    """

    controls = ("order", "image", "step", "layer")

    def __init__(
        self,
        model: SpikingLocalizer,
        dataset: LocalizationDataset,
        num_images: int = 64,
        class_names: Sequence[str] | None = None,
        order: str = "index",
        image: int = 0,
        step: int | None = None,
        layer: str | None = None,
        num_neurons: int = 40,
        seed: int = 0,
        dpi: int = 72,
        render: bool | None = None,
    ) -> None:
        if not isinstance(model, SpikingLocalizer):
            raise TypeError(f"model must be a SpikingLocalizer, got {type(model).__name__}")
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images must be an int >= 1, got {num_images!r}")
        if len(dataset) == 0:
            raise ValueError("dataset is empty")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}")
        layer_names = list(model.config.layer_names())
        layer = layer_names[0] if layer is None else layer
        if layer not in layer_names:
            raise ValueError(f"layer must be one of {layer_names}, got {layer!r}")
        num_steps = model.config.num_steps
        step = num_steps - 1 if step is None else step
        if not 0 <= step < num_steps:
            raise ValueError(f"step must lie in [0, {num_steps - 1}], got {step!r}")
        if isinstance(num_neurons, bool) or not isinstance(num_neurons, int) or num_neurons < 1:
            raise ValueError(f"num_neurons must be an int >= 1, got {num_neurons!r}")
        self.model = model.eval()
        self.class_names = None if class_names is None else list(class_names)
        self.num_neurons, self.seed = num_neurons, seed
        items = [dataset[i] for i in range(min(num_images, len(dataset)))]
        self.images = torch.stack([image_ for image_, _ in items]).float()
        self.true_boxes = torch.stack([torch.as_tensor(t["box"]) for _, t in items]).float().reshape(-1, 4)
        self.true_labels = [int(t["label"]) for _, t in items]
        if not 0 <= image < len(items):
            raise ValueError(f"image must lie in [0, {len(items) - 1}], got {image!r}")
        self.final_ious = self._final_ious()
        self.runs: dict[int, ImageRun] = {}

        opts = {"continuous_update": False, **CONTROL_STYLE}
        self.order = widgets.Dropdown(options=list(ORDERS), value=order, description="order", **CONTROL_STYLE)
        self.image = widgets.IntSlider(image, min=0, max=len(items) - 1, description="image", **opts)
        self.step = widgets.IntSlider(step, min=0, max=num_steps - 1, description="step t", **opts)
        self.layer = widgets.Dropdown(options=layer_names, value=layer, description="layer", **CONTROL_STYLE)
        box = widgets.HBox([widgets.VBox([self.order, self.image]), widgets.VBox([self.step, self.layer])])
        self._setup((10.0, 6.0), dpi, box, render, layout=None)

    @torch.no_grad()
    def _final_ious(self, batch_size: int = 32) -> Tensor:
        boxes = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for start in range(0, len(self.images), batch_size):
                boxes.append(self.model(self.images[start : start + batch_size]).boxes.float())
        return box_iou(torch.cat(boxes), self.true_boxes).diagonal()

    def ordered_indices(self) -> list[int]:
        """Dataset indices in the order the ``image`` slider walks through them."""
        if self.order.value == "index":
            return list(range(len(self.images)))
        return torch.argsort(self.final_ious, descending=self.order.value == "IoU, best first", stable=True).tolist()

    def run_for(self, index: int) -> ImageRun:
        """The cached :class:`ImageRun` of image ``index`` (computed on first use)."""
        if index not in self.runs:
            self.runs[index] = run_one_image(self.model, self.images[index], self.seed)
        return self.runs[index]

    def _simulate(self) -> None:
        index = self.ordered_indices()[int(self.image.value)]
        self.run = self.run_for(index)
        step, layer = int(self.step.value), self.layer.value
        box = self.run.boxes_seq[step]
        self.state = NetworkState(
            image_index=index,
            step=step,
            layer=layer,
            box=box,
            label=int(self.run.labels_seq[step]),
            iou=float(box_iou(box[None], self.true_boxes[index][None])[0, 0]),
            layer_rates={name: float(spk.float().mean()) for name, spk in self.run.outputs.items()},
            step_rates={name: float(spk[step].float().mean()) for name, spk in self.run.outputs.items()},
            neurons=sample_neurons(self.run.outputs[layer], self.num_neurons, self.seed),
        )

    def _class(self, label: int) -> str:
        return str(label) if self.class_names is None else self.class_names[label]

    def _draw(self) -> None:
        state, run = self.state, self.run
        axes = self.figure.subplot_mosaic(
            [["input", "map", "box"], ["raster", "raster", "rates"]],
            gridspec_kw={"left": 0.06, "right": 0.98, "top": 0.92, "bottom": 0.1, "hspace": 0.35, "wspace": 0.25},
        )
        num_steps = run.x_seq.shape[0]
        plot_spike_map(run.x_seq[state.step], ax=axes["input"], title=f"coded input, t = {state.step}")
        spk = run.outputs[state.layer]
        plot_spike_map(
            spk[state.step],
            ax=axes["map"],
            title=f"{state.layer} {list(spk.shape[1:])}, t = {state.step}: {state.step_rates[state.layer]:.2f} fire",
        )
        truth = self._class(self.true_labels[state.image_index])
        plot_box_steps(
            self.images[state.image_index],
            run.boxes_seq[: state.step + 1],
            self.true_boxes[state.image_index],
            ax=axes["box"],
            title=f"image {state.image_index} ({truth}): after {state.step + 1}/{num_steps} steps\n"
            f"predicts {self._class(state.label)}, IoU {state.iou:.2f}",
        )
        flat = spk.reshape(num_steps, -1)[:, state.neurons]
        plot_raster(
            flat,
            ax=axes["raster"],
            title=f"{len(state.neurons)} neurons of {state.layer} (sampled among those that fire)",
        )
        axes["raster"].axvline(state.step, color="tab:red", lw=1)
        plot_layer_rates(
            state.layer_rates, state.step_rates, highlight=state.layer, ax=axes["rates"], title="spike rate per layer"
        )
