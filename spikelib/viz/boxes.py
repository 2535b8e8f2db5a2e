"""Plots of images with bounding boxes, of IoU, and of precision/recall curves.

Boxes are ``xyxy`` and, for images, normalized to ``[0, 1]``: ``x`` is multiplied by the
image width and ``y`` by its height. Images are drawn with ``extent=(0, W, H, 0)``, so pixel
edges fall on integers and the normalized box ``[0, 0, 1, 1]`` is exactly the image border.

Every function draws on the ``ax`` it is given, or creates a figure with ``plt.subplots``,
and returns the figure; none calls ``plt.show()``. In a notebook, write ``fig = ...`` (or end
the line with ``;``) so that the figure is not displayed twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from torch import Tensor
from torchvision.ops import box_iou

from spikelib.checks import check_choice
from spikelib.eval import metrics
from spikelib.viz.common import figure_and_axes

GT_COLOR = "tab:green"
PRED_COLOR = "tab:orange"


def _as_boxes(boxes: Tensor | Sequence, name: str) -> Tensor:
    """Boxes as Tensor[N, 4]; a single box Tensor[4] becomes [1, 4]."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if boxes.ndim == 1 and boxes.numel() == 4:
        boxes = boxes[None]
    if boxes.numel() == 0:
        return boxes.reshape(0, 4)
    return metrics._check_boxes(boxes, name)


def _image_array(image: Tensor | np.ndarray) -> tuple[np.ndarray, dict]:
    """An image [C, H, W] (C = 1 or 3) or [H, W] as a NumPy array for ``imshow``, with its options."""
    image = torch.as_tensor(image).detach().cpu()
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 3 and image.shape[0] == 3:
        image = image.permute(1, 2, 0)
    elif image.ndim != 2:
        raise ValueError(f"image must be [C, H, W] with C in (1, 3), or [H, W], got shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        vmax = 255
    else:
        image = image.float()
        low, high = float(image.min()), float(image.max())
        if low < 0 or high > 1:  # e.g. mean/std-normalized inputs: rescale for display only
            image = (image - low) / max(high - low, 1e-12)
        vmax = 1
    options = {"cmap": "gray", "vmin": 0, "vmax": vmax} if image.ndim == 2 else {}
    return image.numpy(), options


def _draw_boxes(
    ax: Axes, boxes_pixels: Tensor, colors: Sequence[str], labels: Sequence[str] | None, linestyle: str = "-"
) -> None:
    for k, (x0, y0, x1, y1) in enumerate(boxes_pixels.tolist()):
        ax.add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colors[k], linewidth=2, linestyle=linestyle)
        )
        if labels is not None:
            ax.text(
                x0,
                y0,
                f" {labels[k]}",
                color="white",
                fontsize=8,
                va="bottom",
                bbox={"facecolor": colors[k], "edgecolor": "none", "pad": 1},
            )


def _colors(colors: str | Sequence[str] | None, count: int, default: str) -> list[str]:
    if colors is None or isinstance(colors, str):
        return [colors or default] * count
    if len(colors) != count:
        raise ValueError(f"colors must be one color or one per box ({count}), got {len(colors)}")
    return list(colors)


def show_image_with_boxes(
    image: Tensor | np.ndarray,
    boxes_xyxy_normalized: Tensor | Sequence,
    labels: Sequence[str] | None = None,
    colors: str | Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    linestyle: str = "-",
) -> Figure:
    """Draw an image and its boxes.

    Args:
        image (Tensor[C, H, W] or Tensor[H, W]): grayscale (C = 1) or RGB (C = 3); floats in
            ``[0, 1]`` (others are min-max rescaled for display) or ``uint8``.
        boxes_xyxy_normalized (Tensor[N, 4] or Tensor[4]): boxes, xyxy, normalized to ``[0, 1]``.
        labels (Sequence[str], optional): one caption per box.
        colors (str or Sequence[str], optional): one color, or one per box; green by default.
        ax (Axes, optional): where to draw; a new figure when None.
        title (str, optional): axes title.
        linestyle (str): line style of the boxes, e.g. ``"--"`` for predictions.

    Returns:
        Figure: the figure holding ``ax``.
    """
    array, options = _image_array(image)
    height, width = array.shape[:2]
    boxes = _as_boxes(boxes_xyxy_normalized, "boxes_xyxy_normalized")
    if labels is not None and len(labels) != boxes.shape[0]:
        raise ValueError(f"labels must give one caption per box ({boxes.shape[0]}), got {len(labels)}")
    fig, ax = figure_and_axes(ax, (4, 4 * height / width), layout=None)
    ax.imshow(array, extent=(0, width, height, 0), interpolation="nearest", **options)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    _draw_boxes(ax, boxes * scale, _colors(colors, boxes.shape[0], GT_COLOR), labels, linestyle)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title, fontsize=9)
    return fig


def image_grid(
    images: Tensor | Sequence[Tensor],
    boxes: Tensor | Sequence[Tensor],
    labels: Tensor | Sequence[int],
    class_names: Sequence[str],
    ncols: int = 4,
    pred_boxes: Tensor | Sequence[Tensor] | None = None,
    pred_labels: Tensor | Sequence[int] | None = None,
    size: float = 2.5,
) -> Figure:
    """A grid of images with true boxes (green, solid) and, optionally, predicted ones (orange, dashed).

    The title names the true class (and the predicted one when it differs); with predictions
    it also gives the IoU, taken with the best-overlapping true box when an image has several.

    Args:
        images (Tensor[B, C, H, W] or list of Tensor[C, H, W]): the images.
        boxes (Tensor[B, 4] or list of Tensor[N_i, 4]): true boxes, xyxy, normalized.
        labels (Tensor[B] or list): class index of each image (of its first box if several).
        class_names (Sequence[str]): name of each class index.
        ncols (int): images per row.
        pred_boxes (Tensor[B, 4], optional): one predicted box per image, xyxy, normalized.
        pred_labels (Tensor[B], optional): predicted class of each image.
        size (float): width of one panel in inches.

    Returns:
        Figure: the grid.
    """
    count = len(images)
    if count == 0:
        raise ValueError("image_grid needs at least one image, got 0")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    per_image = {"boxes": boxes, "labels": labels, "pred_boxes": pred_boxes, "pred_labels": pred_labels}
    for name, values in per_image.items():
        if values is not None and len(values) != count:
            raise ValueError(f"{name} must have one entry per image ({count}), got {len(values)}")
    labels = [int(label) for label in torch.as_tensor(labels).flatten()]
    for label in labels + ([] if pred_labels is None else [int(p) for p in torch.as_tensor(pred_labels).flatten()]):
        if not 0 <= label < len(class_names):
            raise ValueError(f"label {label} has no name: class_names holds {len(class_names)} names")
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.4), squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= count:
            ax.set_axis_off()
            continue
        true = _as_boxes(boxes[index], f"boxes[{index}]")
        title = class_names[labels[index]]
        if pred_labels is not None and int(pred_labels[index]) != labels[index]:
            title += f" (pred: {class_names[int(pred_labels[index])]})"
        show_image_with_boxes(images[index], true, colors=GT_COLOR, ax=ax)
        if pred_boxes is not None:
            pred = _as_boxes(pred_boxes[index], f"pred_boxes[{index}]")
            iou = float(box_iou(pred, true).max()) if true.shape[0] else 0.0
            title += f"\nIoU {iou:.2f}"
            width, height = ax.get_xlim()[1], ax.get_ylim()[0]  # set to (0, W) and (H, 0) above
            scale = torch.tensor([width, height, width, height], dtype=torch.float32)
            _draw_boxes(ax, pred * scale, [PRED_COLOR] * pred.shape[0], None, linestyle="--")
        ax.set_title(title, fontsize=9)
    handles = [Line2D([], [], color=GT_COLOR, lw=2, label="ground truth")]
    if pred_boxes is not None:
        handles.append(Line2D([], [], color=PRED_COLOR, lw=2, ls="--", label="prediction"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.4 / (size * nrows + 0.4), 1, 1))
    return fig


def _union_outline(box_a: Tensor, box_b: Tensor) -> list[list[tuple[float, float]]]:
    """Segments of the outline of A ∪ B: the edges of grid cells inside the union that face outside."""
    xs = sorted({float(v) for v in (box_a[0], box_a[2], box_b[0], box_b[2])})
    ys = sorted({float(v) for v in (box_a[1], box_a[3], box_b[1], box_b[3])})

    def inside(i: int, j: int) -> bool:
        if not (0 <= i < len(xs) - 1 and 0 <= j < len(ys) - 1):
            return False
        cx, cy = (xs[i] + xs[i + 1]) / 2, (ys[j] + ys[j + 1]) / 2
        return any(float(b[0]) <= cx <= float(b[2]) and float(b[1]) <= cy <= float(b[3]) for b in (box_a, box_b))

    segments = []
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            if not inside(i, j):
                continue
            x0, x1, y0, y1 = xs[i], xs[i + 1], ys[j], ys[j + 1]
            for (di, dj), segment in (
                ((-1, 0), [(x0, y0), (x0, y1)]),
                ((1, 0), [(x1, y0), (x1, y1)]),
                ((0, -1), [(x0, y0), (x1, y0)]),
                ((0, 1), [(x0, y1), (x1, y1)]),
            ):
                if not inside(i + di, j + dj):
                    segments.append(segment)
    return segments


def plot_iou_example(
    box_a: Tensor | Sequence[float], box_b: Tensor | Sequence[float], ax: Axes | None = None
) -> Figure:
    r"""Two boxes, their intersection shaded and their union outlined, with the IoU in the title.

    .. math:: \mathrm{IoU}(A, B) = \frac{|A \cap B|}{|A \cup B|}

    Args:
        box_a (Tensor[4]): box A, xyxy (any units; y grows downwards as in images).
        box_b (Tensor[4]): box B, xyxy.
        ax (Axes, optional): where to draw; a new figure when None.

    Returns:
        Figure: the figure holding ``ax``.
    """
    a, b = _as_boxes(box_a, "box_a")[0], _as_boxes(box_b, "box_b")[0]
    fig, ax = figure_and_axes(ax, (4, 4), layout=None)
    inter_box = torch.cat([torch.maximum(a[:2], b[:2]), torch.minimum(a[2:], b[2:])])
    inter_w, inter_h = (inter_box[2:] - inter_box[:2]).clamp(min=0).tolist()
    if inter_w * inter_h > 0:
        ax.add_patch(
            Rectangle(
                (float(inter_box[0]), float(inter_box[1])),
                inter_w,
                inter_h,
                facecolor="tab:purple",
                alpha=0.5,
                edgecolor="none",
                label="A ∩ B",
            )
        )
    for box, color, name in ((a, "tab:blue", "A"), (b, "tab:red", "B")):
        x0, y0, x1, y1 = box.tolist()
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=2, label=name))
    ax.add_collection(
        LineCollection(_union_outline(a, b), colors="black", linewidths=1.5, linestyles="--", label="A ∪ B")
    )
    inter = inter_w * inter_h
    union = float(a[2:].sub(a[:2]).prod() + b[2:].sub(b[:2]).prod()) - inter
    iou = float(metrics.box_iou_pairwise(a[None], b[None])[0])
    ax.set_title(f"IoU = |A ∩ B| / |A ∪ B| = {inter:.3g} / {union:.3g} = {iou:.3f}")
    corners = torch.stack([a, b])
    low, high = corners[:, :2].min(0).values, corners[:, 2:].max(0).values
    margin = 0.1 * float((high - low).max())
    ax.set_xlim(float(low[0]) - margin, float(high[0]) + margin)
    ax.set_ylim(float(high[1]) + margin, float(low[1]) - margin)  # y downwards, as in an image
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_precision_recall(
    recall: Tensor | Sequence[float],
    precision: Tensor | Sequence[float],
    ap: float | None = None,
    method: str = "all_points",
    ax: Axes | None = None,
) -> Figure:
    """A ranked precision/recall curve, the envelope the VOC AP integrates, and its AP.

    With ``"all_points"`` the shaded area under the envelope equals the AP. With ``"11_points"``
    the 11 interpolated precisions averaged by the AP are marked at recall 0, 0.1, ..., 1.

    Args:
        recall (Tensor[K]): recall after each ranked detection (non-decreasing).
        precision (Tensor[K]): precision after each ranked detection.
        ap (float, optional): the AP to print; computed with ``metrics.average_precision`` if None.
        method (str): ``"all_points"`` or ``"11_points"``.
        ax (Axes, optional): where to draw; a new figure when None.

    Returns:
        Figure: the figure holding ``ax``.
    """
    recall_t = torch.as_tensor(recall, dtype=torch.float64).flatten()
    precision_t = torch.as_tensor(precision, dtype=torch.float64).flatten()
    if ap is None:
        ap = metrics.average_precision(recall_t, precision_t, method)  # also checks the curve and method
    else:
        check_choice("method", method, metrics.AP_METHODS)
    envelope = metrics.interpolated_precision(recall_t, precision_t).numpy()
    recall_np, precision_np = recall_t.numpy(), precision_t.numpy()
    fig, ax = figure_and_axes(ax, (4.5, 4), layout=None)
    if recall_np.size:
        steps_x, steps_y = np.concatenate([[0.0], recall_np]), np.concatenate([envelope[:1], envelope])
        ax.plot(recall_np, precision_np, "o-", color="tab:blue", markersize=3, lw=1, label="precision at each rank")
        ax.step(steps_x, steps_y, where="pre", color="tab:red", lw=2, label="interpolated (envelope)")
        if method == "all_points":
            ax.fill_between(steps_x, steps_y, step="pre", color="tab:red", alpha=0.15, label="area = AP")
    if method == "11_points":
        levels = np.arange(11) / 10
        ax.plot(
            levels,
            metrics.eleven_point_precisions(recall_t, precision_t).numpy(),
            "s",
            color="black",
            markersize=5,
            clip_on=False,
            label="11 recall levels",
        )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"AP ({method}) = {ap:.3f}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=8)
    return fig
