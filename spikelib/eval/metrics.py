r"""Localization and detection metrics: IoU, CorLoc, Pascal VOC average precision, confusion matrix.

Boxes are ``xyxy``: ``(xmin, ymin, xmax, ymax)`` with ``xmax >= xmin`` and ``ymax >= ymin``.
Coordinates are continuous (normalized to ``[0, 1]`` or in pixels); unlike the VOC devkit,
no ``+1`` is added to widths, because our boxes are not inclusive integer pixel indices.

Matching rules follow the official VOC devkit (``VOCevaldet.m``, Everingham et al. 2010):

* detections of one class are ranked by confidence, highest first (ties keep input order);
* each detection is compared with the ground truths (GT) of its class in its image and
  takes the one of largest IoU; it is a true positive when that IoU is ``>= iou_threshold``
  (the MATLAB devkit's ``ovmax >= minoverlap``; the popular Python port ``voc_eval.py`` uses
  ``>``, which differs only for an IoU of exactly 0.5) and that GT is not yet taken;
* a GT is matched once: a later detection whose best GT is already taken is a false positive;
* a detection whose best GT is *difficult* is neither a true nor a false positive: it is
  dropped from the ranking, and difficult GTs do not count in the number of positives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torchvision.ops import box_area, box_iou

from spikelib.checks import check_choice

AP_METHODS = ("all_points", "11_points")


def _check_boxes(boxes: Tensor, name: str) -> Tensor:
    """Return ``boxes`` as a float tensor after checking shape, finiteness and xyxy order."""
    boxes = torch.as_tensor(boxes)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (xyxy), got {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        boxes = boxes.float()
    if not torch.isfinite(boxes).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"{name}[{i}] = {boxes[i].tolist()} is not xyxy: need xmax >= xmin and ymax >= ymin "
            "(convert cxcywh or xywh boxes with torchvision.ops.box_convert)"
        )
    return boxes


def _check_pair(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    boxes1, boxes2 = _check_boxes(boxes1, "boxes1"), _check_boxes(boxes2, "boxes2")
    if boxes1.shape[0] != boxes2.shape[0]:
        raise ValueError(
            f"boxes1 and boxes2 must hold the same number of boxes, got {boxes1.shape[0]} and {boxes2.shape[0]}"
        )
    return boxes1, boxes2


def _check_threshold(iou_threshold: float) -> None:
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")


def box_iou_pairwise(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    r"""IoU of each box with the box at the same index (the diagonal of ``box_iou``).

    .. math::
        \mathrm{IoU}(A, B) = \frac{|A \cap B|}{|A \cup B|} = \frac{|A \cap B|}{|A| + |B| - |A \cap B|}

    ``torchvision.ops.box_iou`` compares every box with every box ([N, M]); localization
    compares prediction ``i`` with target ``i`` only, which this does in O(N).
    Two empty (zero-area) boxes give ``0 / 0 = nan``, as in torchvision.

    Args:
        boxes1 (Tensor[N, 4]): boxes in xyxy format, e.g. predictions.
        boxes2 (Tensor[N, 4]): boxes in xyxy format, e.g. targets.

    Returns:
        Tensor[N]: IoU of ``boxes1[i]`` and ``boxes2[i]``, in ``[0, 1]``.

    Raises:
        ValueError: if a shape is not [N, 4], the lengths differ, or a box is not xyxy.
    """
    boxes1, boxes2 = _check_pair(boxes1, boxes2)
    top_left = torch.maximum(boxes1[:, :2], boxes2[:, :2])
    bottom_right = torch.minimum(boxes1[:, 2:], boxes2[:, 2:])
    width_height = (bottom_right - top_left).clamp(min=0)
    inter = width_height[:, 0] * width_height[:, 1]
    union = box_area(boxes1) + box_area(boxes2) - inter
    return inter / union


def mean_iou(pred_boxes: Tensor, true_boxes: Tensor) -> float:
    r"""Mean IoU over images, one predicted and one true box per image: :math:`\frac1N\sum_i \mathrm{IoU}_i`.

    Args:
        pred_boxes (Tensor[N, 4]): predicted boxes, xyxy.
        true_boxes (Tensor[N, 4]): ground-truth boxes, xyxy, same units.

    Returns:
        float: the mean IoU.

    Raises:
        ValueError: on bad boxes (see ``box_iou_pairwise``) or when N = 0.
    """
    ious = box_iou_pairwise(pred_boxes, true_boxes)
    if ious.numel() == 0:
        raise ValueError("mean_iou needs at least one pair of boxes, got N = 0")
    return float(ious.mean())


def corloc(pred_boxes: Tensor, true_boxes: Tensor, iou_threshold: float = 0.5) -> float:
    r"""Correct localization rate: the share of images whose box has IoU >= ``iou_threshold``.

    .. math:: \mathrm{CorLoc} = \frac{1}{N}\sum_{i=1}^{N} [\mathrm{IoU}_i \ge \theta]

    Args:
        pred_boxes (Tensor[N, 4]): predicted boxes, xyxy.
        true_boxes (Tensor[N, 4]): ground-truth boxes, xyxy.
        iou_threshold (float): :math:`\theta` in ``[0, 1]``, 0.5 by default.

    Returns:
        float: CorLoc in ``[0, 1]``.

    Raises:
        ValueError: on bad boxes, N = 0, or a threshold outside ``[0, 1]``.
    """
    _check_threshold(iou_threshold)
    ious = box_iou_pairwise(pred_boxes, true_boxes)
    if ious.numel() == 0:
        raise ValueError("corloc needs at least one pair of boxes, got N = 0")
    return float((ious >= iou_threshold).float().mean())


class SizeBucket(NamedTuple):
    """Mean IoU of the images whose true box area falls in ``[area_min, area_max)`` (the last bucket holds 1)."""

    mean_iou: float  # nan when the bucket is empty
    count: int  # type: ignore[assignment]  # a field named as tuple.count, which it hides
    area_min: float
    area_max: float


def iou_by_size(
    pred_boxes: Tensor,
    true_boxes: Tensor,
    area_edges: Sequence[float] = (0.1, 0.3),
    names: Sequence[str] = ("small", "medium", "large"),
) -> dict[str, SizeBucket]:
    """Mean IoU per object size, the size being the true box's share of the image area.

    With the defaults: small < 10 % of the image <= medium < 30 % <= large.

    Args:
        pred_boxes (Tensor[N, 4]): predicted boxes, xyxy, normalized.
        true_boxes (Tensor[N, 4]): ground-truth boxes, xyxy, normalized to ``[0, 1]``.
        area_edges (Sequence[float]): increasing edges strictly between 0 and 1.
        names (Sequence[str]): one name per bucket, ``len(area_edges) + 1`` of them.

    Returns:
        dict[str, SizeBucket]: bucket name -> (mean IoU, count, area range), in size order.

    Raises:
        ValueError: on bad boxes, true boxes outside ``[0, 1]``, bad edges or names.
    """
    pred_boxes, true_boxes = _check_pair(pred_boxes, true_boxes)
    if true_boxes.numel() and (true_boxes.min() < 0 or true_boxes.max() > 1):
        raise ValueError(
            "iou_by_size needs true_boxes normalized to [0, 1], got coordinates in "
            f"[{float(true_boxes.min())}, {float(true_boxes.max())}]; divide x by the width, y by the height"
        )
    edges = [float(e) for e in area_edges]
    if any(not 0 < e < 1 for e in edges) or edges != sorted(set(edges)):
        raise ValueError(f"area_edges must increase strictly inside (0, 1), got {tuple(area_edges)}")
    if len(names) != len(edges) + 1:
        raise ValueError(f"need {len(edges) + 1} names for area_edges {tuple(edges)}, got {tuple(names)}")
    ious = box_iou_pairwise(pred_boxes, true_boxes)
    bucket = torch.bucketize(box_area(true_boxes), torch.tensor(edges, dtype=true_boxes.dtype), right=True)
    bounds = [0.0, *edges, 1.0]
    result = {}
    for k, name in enumerate(names):
        members = ious[bucket == k]
        mean = float(members.mean()) if members.numel() else float("nan")
        result[name] = SizeBucket(mean, int(members.numel()), bounds[k], bounds[k + 1])
    return result


def _check_pr(recall: Tensor, precision: Tensor) -> tuple[Tensor, Tensor]:
    recall = torch.as_tensor(recall, dtype=torch.float64).flatten()
    precision = torch.as_tensor(precision, dtype=torch.float64).flatten()
    if recall.shape != precision.shape:
        raise ValueError(
            f"recall and precision must have the same length, got {recall.numel()} and {precision.numel()}"
        )
    for name, values in (("recall", recall), ("precision", precision)):
        if values.numel() and not ((values >= 0) & (values <= 1)).all():
            raise ValueError(f"{name} must lie in [0, 1], got values in [{float(values.min())}, {float(values.max())}]")
    if (recall.diff() < 0).any():
        raise ValueError("recall must be non-decreasing (detections ranked by decreasing score)")
    return recall, precision


def interpolated_precision(recall: Tensor, precision: Tensor) -> Tensor:
    r"""Monotone precision envelope: :math:`p_{\mathrm{interp}}(r_k) = \max_{j:\, r_j \ge r_k} p_j`.

    Args:
        recall (Tensor[K]): non-decreasing recall after each ranked detection.
        precision (Tensor[K]): precision after each ranked detection.

    Returns:
        Tensor[K]: the envelope at each point (float64), non-increasing.
    """
    recall, precision = _check_pr(recall, precision)
    best_from_here = precision.flip(0).cummax(0).values.flip(0)  # max over j >= k
    first_of_recall = torch.searchsorted(recall, recall, side="left")  # equal recalls: the first index
    return best_from_here[first_of_recall]


def eleven_point_precisions(recall: Tensor, precision: Tensor) -> Tensor:
    r"""Interpolated precision at the 11 recall levels :math:`t = 0, 0.1, \dots, 1` (VOC2007).

    :math:`p(t) = \max_{j:\, r_j \ge t} p_j`, and 0 when no point reaches recall :math:`t`.
    The levels are computed as ``k / 10`` so that a recall of exactly 3/10 reaches
    :math:`t = 0.3` (``0.1 * 3`` is ``0.30000000000000004`` in floating point).

    Args:
        recall (Tensor[K]): non-decreasing recall after each ranked detection.
        precision (Tensor[K]): precision after each ranked detection.

    Returns:
        Tensor[11]: interpolated precision at each level (float64).
    """
    recall, precision = _check_pr(recall, precision)
    levels = torch.arange(11, dtype=torch.float64) / 10
    reached = recall[None, :] >= levels[:, None]  # [11, K]
    masked = torch.where(reached, precision[None, :], torch.zeros((), dtype=torch.float64))
    return torch.cat([masked, torch.zeros(11, 1, dtype=torch.float64)], dim=1).amax(dim=1)


def average_precision(recall: Tensor, precision: Tensor, method: str = "all_points") -> float:
    r"""Average precision from a ranked precision/recall curve, in the two VOC conventions.

    ``"all_points"`` (VOC2010 onwards, the devkit's ``VOCap.m``) is the area under the envelope,

    .. math:: \mathrm{AP} = \sum_{k} (r_k - r_{k-1})\, p_{\mathrm{interp}}(r_k), \quad r_0 = 0,

    summed over the points where recall changes. ``"11_points"`` (VOC2007) averages the
    envelope at 11 recall levels, :math:`\mathrm{AP} = \frac{1}{11}\sum_{t \in \{0, 0.1, \dots, 1\}} p(t)`
    (Everingham et al. 2010, eqs. 1-2). Neither is ``sklearn.metrics.average_precision_score``,
    which sums raw precisions with no envelope.

    Args:
        recall (Tensor[K]): non-decreasing recall after each ranked detection, in ``[0, 1]``.
        precision (Tensor[K]): precision after each ranked detection, in ``[0, 1]``.
        method (str): ``"all_points"`` or ``"11_points"``.

    Returns:
        float: AP in ``[0, 1]``; 0.0 for an empty curve (no detections).

    Raises:
        ValueError: on an unknown method or an invalid curve.
    """
    check_choice("method", method, AP_METHODS)
    if method == "11_points":
        return float(eleven_point_precisions(recall, precision).mean())
    envelope = interpolated_precision(recall, precision)
    recall = torch.as_tensor(recall, dtype=torch.float64).flatten()
    recall_gain = recall.diff(prepend=torch.zeros(1, dtype=torch.float64))
    return float((recall_gain * envelope).sum())


class DetectionMatches(NamedTuple):
    """Detections of one class, ranked by score, each a true or false positive."""

    scores: Tensor  # [K] decreasing; detections on difficult GTs removed
    is_true_positive: Tensor  # [K] bool
    num_positives: int  # non-difficult ground truths of the class


class ClassAP(NamedTuple):
    """Average precision of one class and the curve it was computed from."""

    ap: float  # nan when the class has no non-difficult ground truth
    precision: Tensor  # [K] after each ranked detection
    recall: Tensor  # [K]
    scores: Tensor  # [K] confidence of each ranked detection
    num_positives: int


_REQUIRED_KEYS = {"detections": ("boxes", "scores", "labels"), "ground_truths": ("boxes", "labels")}


def _check_image_lists(detections: Sequence[dict], ground_truths: Sequence[dict]) -> None:
    """Check that both lists cover the same images and each entry is well formed."""
    if len(detections) != len(ground_truths):
        raise ValueError(
            f"detections and ground_truths must list the same images, got {len(detections)} and {len(ground_truths)}"
        )
    for name, entries in (("detections", detections), ("ground_truths", ground_truths)):
        for i, entry in enumerate(entries):
            missing = [key for key in _REQUIRED_KEYS[name] if key not in entry]
            if missing:
                raise ValueError(f"{name}[{i}] lacks keys {missing}; it has {sorted(entry)}")
            num_boxes = _check_boxes(entry["boxes"], f"{name}[{i}]['boxes']").shape[0]
            for key in ("scores", "labels", "difficult"):
                if key in entry and torch.as_tensor(entry[key]).numel() != num_boxes:
                    length = torch.as_tensor(entry[key]).numel()
                    raise ValueError(f"{name}[{i}]['{key}'] has {length} entries for {num_boxes} boxes")
            if "scores" in entry and not torch.isfinite(torch.as_tensor(entry["scores"], dtype=torch.float64)).all():
                raise ValueError(f"{name}[{i}]['scores'] contains NaN or infinite values")


def match_detections(
    detections: Sequence[dict], ground_truths: Sequence[dict], label: int, iou_threshold: float = 0.5
) -> DetectionMatches:
    """Rank the detections of class ``label`` and mark each a true or false positive (VOC rules).

    Args:
        detections (list[dict]): per image, ``boxes`` (Tensor[K, 4], xyxy), ``scores`` (Tensor[K]),
            ``labels`` (Tensor[K]); K may be 0.
        ground_truths (list[dict]): per image, ``boxes`` (Tensor[N, 4]), ``labels`` (Tensor[N]),
            optional ``difficult`` (Tensor[N], bool; all False if absent).
        label (int): the class to evaluate.
        iou_threshold (float): minimum IoU (inclusive) for a true positive.

    Returns:
        DetectionMatches: ranked scores, true-positive flags, number of positives.

    Raises:
        ValueError: when the lists differ in length or an entry is malformed.
    """
    _check_threshold(iou_threshold)
    _check_image_lists(detections, ground_truths)
    return _match_class(_pool(detections, _DETECTION_KEYS), _pool(ground_truths, _TRUTH_KEYS), label, iou_threshold)


_DETECTION_KEYS = {"boxes": torch.float32, "scores": torch.float64, "labels": torch.int64}
_TRUTH_KEYS = {"boxes": torch.float32, "labels": torch.int64, "difficult": torch.bool}


def _pool(entries: Sequence[dict], keys: dict[str, torch.dtype]) -> dict[str, Tensor]:
    """Concatenate the per-image tensors of checked entries; ``image`` gives each row's image index."""
    pooled = {key: [torch.zeros((0, 4) if key == "boxes" else (0,), dtype=dtype)] for key, dtype in keys.items()}
    pooled["image"] = [torch.zeros(0, dtype=torch.int64)]
    for i, entry in enumerate(entries):
        num_boxes = torch.as_tensor(entry["boxes"]).shape[0]
        for key, dtype in keys.items():
            value = entry.get(key, torch.zeros(num_boxes))  # only "difficult" may be absent: all False
            shape = (num_boxes, 4) if key == "boxes" else (num_boxes,)
            pooled[key].append(torch.as_tensor(value).detach().cpu().to(dtype).reshape(shape))
        pooled["image"].append(torch.full((num_boxes,), i))
    return {key: torch.cat(parts) for key, parts in pooled.items()}


def _match_class(dets: dict[str, Tensor], gts: dict[str, Tensor], label: int, iou_threshold: float) -> DetectionMatches:
    """``match_detections`` on pooled inputs (see ``_pool``)."""
    of_class = (gts["labels"] == label).nonzero().flatten().tolist()
    rows_of_image: dict[int, list[int]] = {}  # image -> rows of its ground truths of this class
    for row in of_class:
        rows_of_image.setdefault(int(gts["image"][row]), []).append(row)
    difficult = gts["difficult"].tolist()
    num_positives = sum(not difficult[row] for row in of_class)

    rows = (dets["labels"] == label).nonzero().flatten()
    ranked = rows[torch.sort(dets["scores"][rows], descending=True, stable=True).indices].tolist()  # ties: input order
    taken, ranked_scores, flags = set(), [], []
    for d in ranked:
        is_true_positive = False
        candidates = rows_of_image.get(int(dets["image"][d]), [])
        if candidates:
            ious = box_iou(dets["boxes"][d : d + 1], gts["boxes"][candidates])[0]
            best = candidates[int((ious == ious.max()).nonzero()[0])]  # the first best, as the devkit's strict ">"
            if ious.max() >= iou_threshold:
                if difficult[best]:
                    continue  # a detection of a difficult object is neither true nor false
                is_true_positive = best not in taken  # a second hit on one object is false
                taken.add(best)
        ranked_scores.append(float(dets["scores"][d]))
        flags.append(is_true_positive)
    return DetectionMatches(
        torch.tensor(ranked_scores, dtype=torch.float64), torch.tensor(flags, dtype=torch.bool), num_positives
    )


def precision_recall(is_true_positive: Tensor, num_positives: int) -> tuple[Tensor, Tensor]:
    r"""Precision and recall after each ranked detection.

    .. math:: P_k = \frac{TP_k}{k}, \qquad R_k = \frac{TP_k}{N_{pos}}, \qquad TP_k = \sum_{j \le k} tp_j

    Args:
        is_true_positive (Tensor[K]): bool flags in ranked order.
        num_positives (int): :math:`N_{pos}` > 0, the non-difficult ground truths.

    Returns:
        tuple[Tensor[K], Tensor[K]]: ``(precision, recall)``, float64.
    """
    if num_positives <= 0:
        raise ValueError(f"num_positives must be > 0 for recall to exist, got {num_positives}")
    tp = torch.as_tensor(is_true_positive, dtype=torch.float64).flatten().cumsum(0)
    ranks = torch.arange(1, tp.numel() + 1, dtype=torch.float64)
    return tp / ranks, tp / num_positives


def voc_ap_per_class(
    detections: Sequence[dict],
    ground_truths: Sequence[dict],
    num_classes: int,
    iou_threshold: float = 0.5,
    method: str = "all_points",
) -> dict[int, ClassAP]:
    """VOC average precision of every class, with the precision/recall curve behind it.

    Args:
        detections (list[dict]): per image, see ``match_detections``.
        ground_truths (list[dict]): per image, see ``match_detections``.
        num_classes (int): labels run over ``0 .. num_classes - 1``.
        iou_threshold (float): minimum IoU (inclusive) for a true positive.
        method (str): ``"all_points"`` (VOC2010+) or ``"11_points"`` (VOC2007).

    Returns:
        dict[int, ClassAP]: class -> AP and curve. A class without detections has AP 0;
        a class without non-difficult ground truth has AP nan (recall is undefined).
    """
    check_choice("method", method, AP_METHODS)
    _check_threshold(iou_threshold)
    _check_image_lists(detections, ground_truths)
    for name, entries in (("detections", detections), ("ground_truths", ground_truths)):
        for i, entry in enumerate(entries):
            labels = torch.as_tensor(entry["labels"]).flatten()
            if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(f"{name}[{i}]['labels'] = {labels.tolist()} outside 0 .. {num_classes - 1}")
    dets, gts = _pool(detections, _DETECTION_KEYS), _pool(ground_truths, _TRUTH_KEYS)
    result = {}
    for label in range(num_classes):
        scores, flags, num_positives = _match_class(dets, gts, label, iou_threshold)
        if num_positives == 0:
            empty = torch.zeros(0, dtype=torch.float64)
            result[label] = ClassAP(float("nan"), empty, empty, scores, 0)
            continue
        precision, recall = precision_recall(flags, num_positives)
        ap = average_precision(recall, precision, method)
        result[label] = ClassAP(ap, precision, recall, scores, num_positives)
    return result


def mean_average_precision(
    detections: Sequence[dict],
    ground_truths: Sequence[dict],
    num_classes: int,
    iou_threshold: float = 0.5,
    method: str = "all_points",
) -> tuple[float, dict[int, float]]:
    r"""VOC mAP: the mean AP over classes with at least one non-difficult ground truth.

    .. math:: \mathrm{mAP} = \frac{1}{|C|}\sum_{c \in C} \mathrm{AP}_c

    Args:
        detections (list[dict]): per image, see ``match_detections``.
        ground_truths (list[dict]): per image, see ``match_detections``.
        num_classes (int): labels run over ``0 .. num_classes - 1``.
        iou_threshold (float): minimum IoU (inclusive) for a true positive.
        method (str): ``"all_points"`` (VOC2010+) or ``"11_points"`` (VOC2007).

    Returns:
        tuple[float, dict[int, float]]: ``(map, per_class_ap)``, the dict holding only the
        classes that enter the mean.

    Raises:
        ValueError: when no class has a non-difficult ground truth.
    """
    per_class = voc_ap_per_class(detections, ground_truths, num_classes, iou_threshold, method)
    counted = {c: r.ap for c, r in per_class.items() if r.num_positives > 0}
    if not counted:
        raise ValueError("no class has a non-difficult ground truth, so mAP is undefined")
    return sum(counted.values()) / len(counted), counted


def confusion_matrix(true_labels: Tensor, pred_labels: Tensor, num_classes: int) -> Tensor:
    r"""Counts of (true class, predicted class) pairs: ``M[i, j]`` = images of class ``i`` predicted ``j``.

    The diagonal holds the correct answers, so the class accuracy is
    :math:`\sum_i M_{ii} / \sum_{ij} M_{ij}` and row ``i`` divided by its sum is where the
    images of class ``i`` go (``sklearn.metrics.confusion_matrix``'s layout).

    Args:
        true_labels (Tensor[N]): true class indices in ``0 .. num_classes - 1``.
        pred_labels (Tensor[N]): predicted class indices, same range.
        num_classes (int): number of classes ``C``.

    Returns:
        Tensor[C, C]: int64 counts, rows true, columns predicted.

    Raises:
        ValueError: shapes differ or a label is out of range.
    """
    true_labels, pred_labels = torch.as_tensor(true_labels).long(), torch.as_tensor(pred_labels).long()
    if true_labels.ndim != 1 or true_labels.shape != pred_labels.shape:
        raise ValueError(
            f"true_labels and pred_labels must be two Tensors [N] of the same length, "
            f"got {tuple(true_labels.shape)} and {tuple(pred_labels.shape)}"
        )
    for name, labels in (("true_labels", true_labels), ("pred_labels", pred_labels)):
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(
                f"{name} must lie in 0 .. {num_classes - 1} (num_classes={num_classes}), "
                f"got values {int(labels.min())} .. {int(labels.max())}"
            )
    flat = torch.bincount(true_labels * num_classes + pred_labels, minlength=num_classes * num_classes)
    return flat.view(num_classes, num_classes)
