"""Step through a localizer's test predictions by class, by IoU bucket or by kind of failure.

:func:`image_groups` sorts the test images into groups (pure, from the predictions);
:class:`PredictionGallery` shows one page of a group at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import ipywidgets as widgets
import torch
from torch import Tensor
from torchvision.ops import box_area, box_iou

from spikelib.data.datasets import LocalizationDataset, dataset_ground_truth
from spikelib.viz.boxes import GT_COLOR, PRED_COLOR, show_image_with_boxes
from spikelib.widgets.base import CONTROL_STYLE, Explorer

__all__ = [
    "GROUPINGS",
    "IOU_BUCKETS",
    "FAILURE_KINDS",
    "SMALL_AREA",
    "image_groups",
    "GalleryState",
    "PredictionGallery",
]

#: How :class:`PredictionGallery` groups the images.
GROUPINGS: tuple[str, ...] = ("class", "IoU bucket", "failure kind")

#: IoU buckets (lower bound included): the CorLoc threshold 0.5 splits hits from misses.
IOU_BUCKETS: dict[str, tuple[float, float]] = {
    "IoU < 0.1": (0.0, 0.1),
    "0.1 to 0.5": (0.1, 0.5),
    "0.5 to 0.75": (0.5, 0.75),
    "0.75 and more": (0.75, 1.01),
}

#: Kinds of result, the first for hits and the others for misses (IoU < 0.5 with the selected object).
FAILURE_KINDS: tuple[str, ...] = ("hit (IoU >= 0.5)", "boxed another object", "small object missed", "other miss")

#: Area (share of the image) under which an object counts as small, as in :func:`spikelib.eval.metrics.iou_by_size`.
SMALL_AREA = 0.1


def image_groups(
    predictions: Mapping[str, Tensor], class_names: Sequence[str], all_boxes: Sequence[Tensor] | None = None
) -> dict[str, dict[str, list[int]]]:
    """Sort the images of a prediction run into groups, for every :data:`GROUPINGS`.

    Args:
        predictions: what :func:`spikelib.eval.evaluate.predict` returns: ``boxes`` and
            ``true_boxes`` (Tensor[N, 4], normalized xyxy), ``true_labels`` (Tensor[N]).
        class_names: the names of the classes.
        all_boxes (list of Tensor[M_i, 4], optional): every annotated object of each image,
            to tell "boxed another object" (IoU >= 0.5 with an object that is not the
            selected one) from the other misses; without it no miss is of that kind.

    Returns:
        dict: grouping -> group name -> image indices (in order). ``"class"``: by true class;
        ``"IoU bucket"``: :data:`IOU_BUCKETS`; ``"failure kind"``: :data:`FAILURE_KINDS`.
    """
    boxes, true_boxes = predictions["boxes"].float(), predictions["true_boxes"].float()
    labels = predictions["true_labels"].flatten().tolist()
    if boxes.shape != true_boxes.shape or len(labels) != len(boxes):
        raise ValueError(
            f"predictions must hold boxes, true_boxes [N, 4] and true_labels [N] of one length, got "
            f"{tuple(boxes.shape)}, {tuple(true_boxes.shape)}, {len(labels)}"
        )
    if all_boxes is not None and len(all_boxes) != len(boxes):
        raise ValueError(f"all_boxes must hold one entry per image ({len(boxes)}), got {len(all_boxes)}")
    ious = box_iou(boxes, true_boxes).diagonal()
    small = box_area(true_boxes) < SMALL_AREA
    groups: dict[str, dict[str, list[int]]] = {
        "class": {name: [] for name in class_names},
        "IoU bucket": {name: [] for name in IOU_BUCKETS},
        "failure kind": {name: [] for name in FAILURE_KINDS},
    }
    for i, (iou, label) in enumerate(zip(ious.tolist(), labels)):
        if not 0 <= label < len(class_names):
            raise ValueError(f"true label {label} of image {i} has no name: class_names holds {len(class_names)}")
        groups["class"][class_names[label]].append(i)
        bucket = next(name for name, (low, high) in IOU_BUCKETS.items() if low <= iou < high)
        groups["IoU bucket"][bucket].append(i)
        if iou >= 0.5:
            kind = FAILURE_KINDS[0]
        elif (
            all_boxes is not None and float(box_iou(boxes[i : i + 1], all_boxes[i].float().reshape(-1, 4)).max()) >= 0.5
        ):
            kind = FAILURE_KINDS[1]
        else:
            kind = FAILURE_KINDS[2] if bool(small[i]) else FAILURE_KINDS[3]
        groups["failure kind"][kind].append(i)
    return groups


class GalleryState(NamedTuple):
    """What :class:`PredictionGallery` shows now.

    Attributes:
        grouping (str): one of :data:`GROUPINGS`.
        group (str): the group shown.
        page (int): the page of that group (0-based).
        indices (list[int]): the images on the page.
        group_size (int): images in the group.
        ious (list[float]): the IoU of each image on the page.
    """

    grouping: str
    group: str
    page: int
    indices: list[int]
    group_size: int
    ious: list[float]


class PredictionGallery(Explorer):
    """Step through test images and their predicted boxes, by class, IoU bucket or failure kind.

    Controls: ``grouping`` (:data:`GROUPINGS`), ``group`` (its groups, with their sizes),
    ``page`` (``per_page`` images at a time). Each image shows the annotated box (green),
    the predicted one (orange), the true and predicted classes and the IoU.

    The groups are computed once (:func:`image_groups`); a control change only redraws.

    Results of the last update: ``state`` (:class:`GalleryState`), ``figure``.

    Args:
        dataset: the ``(image, target)`` items the predictions were made on, in order.
        predictions: what :func:`spikelib.eval.evaluate.predict` returns for ``dataset``.
        class_names (Sequence[str]): names of the classes.
        grouping, group: initial control values (``group`` None: the first non-empty one).
        per_page (int): images per page. Default 4.
        all_boxes (list of Tensor[M_i, 4], optional): every annotated object per image;
            read from the dataset (``ground_truth``) when it has them.
        dpi (int): resolution of the rendered figure. Default 72.
        render (bool, optional): render to PNG into ``output``; by default only in a kernel.
    """

    controls = ("grouping", "group", "page")

    def __init__(
        self,
        dataset: LocalizationDataset,
        predictions: Mapping[str, Tensor],
        class_names: Sequence[str],
        grouping: str = "failure kind",
        group: str | None = None,
        per_page: int = 4,
        all_boxes: Sequence[Tensor] | None = None,
        dpi: int = 72,
        render: bool | None = None,
    ) -> None:
        if grouping not in GROUPINGS:
            raise ValueError(f"grouping must be one of {list(GROUPINGS)}, got {grouping!r}")
        if isinstance(per_page, bool) or not isinstance(per_page, int) or per_page < 1:
            raise ValueError(f"per_page must be an int >= 1, got {per_page!r}")
        if len(dataset) != len(predictions["boxes"]):
            raise ValueError(f"dataset has {len(dataset)} images but predictions {len(predictions['boxes'])}")
        if all_boxes is None:
            try:
                all_boxes = [dataset_ground_truth(dataset, i)["boxes"] for i in range(len(dataset))]  # type: ignore[arg-type]
            except TypeError:  # no annotations beyond the selected box
                all_boxes = None
        self.dataset, self.predictions, self.class_names = dataset, predictions, list(class_names)
        self.per_page = per_page
        self.groups = image_groups(predictions, self.class_names, all_boxes)
        self.ious = box_iou(predictions["boxes"].float(), predictions["true_boxes"].float()).diagonal()
        options = self._group_options(grouping)
        if group is None:
            group = next((key for _, key in options if self.groups[grouping][key]), options[0][1])
        if group not in self.groups[grouping]:
            raise ValueError(f"group must be one of {list(self.groups[grouping])} for {grouping!r}, got {group!r}")
        self._busy = False
        opts = {"continuous_update": False, **CONTROL_STYLE}
        self.grouping = widgets.Dropdown(options=list(GROUPINGS), value=grouping, description="by", **CONTROL_STYLE)
        self.group = widgets.Dropdown(options=options, value=group, description="group", **CONTROL_STYLE)
        self.page = widgets.IntSlider(0, min=0, max=self._last_page(grouping, group), description="page", **opts)
        box = widgets.HBox([widgets.VBox([self.grouping, self.group]), widgets.VBox([self.page])])
        self._setup((2.4 * per_page, 3.0), dpi, box, render, layout=None)

    def _group_options(self, grouping: str) -> list[tuple[str, str]]:
        return [(f"{name} ({len(indices)})", name) for name, indices in self.groups[grouping].items()]

    def _last_page(self, grouping: str, group: str) -> int:
        return max(0, -(-len(self.groups[grouping][group]) // self.per_page) - 1)

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._busy:  # the controls set below: one redraw for all of them
            return
        self._busy = True
        try:
            if change["owner"] is self.grouping:
                options = self._group_options(self.grouping.value)
                self.group.options = options
                self.group.value = next(
                    (key for _, key in options if self.groups[self.grouping.value][key]), options[0][1]
                )
            if change["owner"] is not self.page:
                self.page.value = 0
                self.page.max = self._last_page(self.grouping.value, self.group.value)
        finally:
            self._busy = False
        self.update()

    def _simulate(self) -> None:
        grouping, group, page = self.grouping.value, self.group.value, int(self.page.value)
        members = self.groups[grouping][group]
        indices = members[page * self.per_page : (page + 1) * self.per_page]
        self.state = GalleryState(grouping, group, page, indices, len(members), [float(self.ious[i]) for i in indices])

    def _draw(self) -> None:
        state = self.state
        axes = self.figure.subplots(
            1, self.per_page, squeeze=False, gridspec_kw={"left": 0.01, "right": 0.99, "bottom": 0.02, "top": 0.8}
        )[0]
        pages = self._last_page(state.grouping, state.group) + 1
        self.figure.suptitle(
            f"{state.grouping}: {state.group}: {state.group_size} images, page {state.page + 1} of {pages} "
            "(green: annotation, orange: prediction)",
            fontsize=10,
        )
        for ax in axes:
            ax.set_axis_off()
        if not state.indices:
            axes[0].text(0.0, 0.5, "no image in this group", fontsize=10)
        labels = self.predictions.get("labels")
        for ax, index, iou in zip(axes, state.indices, state.ious):
            image, _ = self.dataset[index]
            truth = self.class_names[int(self.predictions["true_labels"][index])]
            title = f"#{index} {truth}, IoU {iou:.2f}"
            if labels is not None and int(labels[index]) != int(self.predictions["true_labels"][index]):
                title += f"\npredicted: {self.class_names[int(labels[index])]}"
            boxes = torch.stack([self.predictions["true_boxes"][index], self.predictions["boxes"][index]]).float()
            show_image_with_boxes(image, boxes, colors=[GT_COLOR, PRED_COLOR], ax=ax, title=title)
