"""A localizer's predictions over a dataset and their VOC metrics (mIoU, CorLoc, mAP, by size).

:func:`single_object_map_ceiling` is what the mAP of a one-prediction-per-image model can
reach at best on a dataset: the bar to read a model's mAP against.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from spikelib.data.datasets import dataset_classes, dataset_ground_truth, dataset_len
from spikelib.eval import metrics
from spikelib.runtime.device import autocast
from spikelib.runtime.distributed import DistInfo, gather_objects, unwrap

__all__ = ["predict", "evaluate", "single_object_map_ceiling"]


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    amp: str = "none",
    info: DistInfo = DistInfo(),
    progress: bool = False,
) -> dict[str, Tensor]:
    """One box, class and confidence per image of ``dataset`` (in dataset order).

    In a multi-process run each process predicts every ``world_size``-th image and the
    results are gathered, so every process returns the whole set.

    Returns:
        dict: ``boxes`` [N, 4] (normalized xyxy), ``labels`` [N] (argmax class),
        ``scores`` [N] (its softmax probability), ``true_boxes`` [N, 4] and
        ``true_labels`` [N] (the selected object), ``indices`` [N].
    """
    net = unwrap(model)
    device = torch.device(device) if device is not None else next(net.parameters()).device
    was_training = net.training
    net.eval()
    shard = list(range(info.rank, dataset_len(dataset), info.world_size))
    loader = DataLoader(Subset(dataset, shard), batch_size=batch_size, shuffle=False)
    parts: dict[str, list[Tensor]] = {k: [] for k in ("boxes", "labels", "scores", "true_boxes", "true_labels")}
    for images, targets in tqdm(loader, desc="evaluate", leave=False, disable=not progress, unit="batch"):
        with autocast(device, amp):
            pred = net(images.to(device))
        probs = torch.softmax(pred.logits.float(), dim=1)
        scores, labels = probs.max(dim=1)
        parts["boxes"].append(pred.boxes.float().cpu())
        parts["labels"].append(labels.cpu())
        parts["scores"].append(scores.cpu())
        parts["true_boxes"].append(targets["box"].float())
        parts["true_labels"].append(targets["label"])
    net.train(was_training)
    empty = {"boxes": (0, 4), "true_boxes": (0, 4)}
    local = {k: torch.cat(v) if v else torch.zeros(empty.get(k, (0,))) for k, v in parts.items()}
    local["indices"] = torch.as_tensor(shard, dtype=torch.int64)  # positions in ``dataset``
    gathered = gather_objects(local, info)
    merged = {k: torch.cat([g[k] for g in gathered]) for k in local}
    order = torch.argsort(merged["indices"])
    return {k: v[order] for k, v in merged.items()}


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    amp: str = "none",
    info: DistInfo = DistInfo(),
    predictions: dict[str, Tensor] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Localization and detection metrics of ``model`` on ``dataset``.

    Every image yields one detection: the predicted box, labelled with the argmax class and
    scored by its softmax probability. Against every annotated object of the image
    (``ground_truth``, difficult ones included as the devkit does) this gives the VOC
    all-point AP of each class at IoU 0.5 and their mean (mAP@0.5).

    Args:
        model: maps images to a ``Prediction``.
        dataset: items ``(image, {"box", "label", "index"})`` and a ``ground_truth(i)``
            method (``VOCLocalization``, possibly in ``Subset``/``ConcatDataset``).
        batch_size, device, amp, info, progress: see :func:`predict`.
        predictions: reuse the output of :func:`predict` instead of running the model.

    Returns:
        dict: ``miou``, ``corloc`` (share with IoU >= 0.5), ``map50``, ``accuracy`` (class),
        ``ap`` ({class name: AP}), ``confusion`` (list of rows: ``confusion[i][j]`` images
        of true class ``i`` predicted ``j``, see :func:`metrics.confusion_matrix`),
        ``miou_small|medium|large`` and ``count_small|medium|large`` (true box < 10 %,
        10-30 %, >= 30 % of the image), ``num_images``.
    """
    pred = predictions if predictions is not None else predict(model, dataset, batch_size, device, amp, info, progress)
    classes = dataset_classes(dataset)
    detections = [
        {"boxes": pred["boxes"][i : i + 1], "scores": pred["scores"][i : i + 1], "labels": pred["labels"][i : i + 1]}
        for i in range(len(pred["boxes"]))
    ]
    truths = [dataset_ground_truth(dataset, int(i)) for i in pred["indices"]]
    map50, per_class = metrics.mean_average_precision(detections, truths, len(classes), 0.5, "all_points")
    result: dict[str, Any] = {
        "miou": metrics.mean_iou(pred["boxes"], pred["true_boxes"]),
        "corloc": metrics.corloc(pred["boxes"], pred["true_boxes"]),
        "map50": map50,
        "accuracy": float((pred["labels"] == pred["true_labels"]).float().mean()),
        "ap": {classes[c]: ap for c, ap in per_class.items()},
        "confusion": metrics.confusion_matrix(pred["true_labels"], pred["labels"], len(classes)).tolist(),
        "num_images": len(pred["boxes"]),
    }
    for name, bucket in metrics.iou_by_size(pred["boxes"], pred["true_boxes"]).items():
        result[f"miou_{name}"] = bucket.mean_iou
        result[f"count_{name}"] = bucket.count
    return result


def single_object_map_ceiling(dataset: Dataset) -> tuple[float, dict[str, float]]:
    r"""The mAP@0.5 of a perfect single-object predictor on ``dataset``, and its per-class AP.

    The predictor answers every image with its selected object (the target the loader
    gives: box, class, confidence 1), exactly. Every such detection is a true positive, so
    class :math:`c`'s precision is 1 up to the recall it reaches and its all-point AP is
    that recall:

    .. math:: \mathrm{AP}_c = \frac{\#\{\text{images whose selected object is of class } c\}}
        {\#\{\text{non-difficult objects of class } c\}}

    The objects it leaves out (the second and third objects of multi-object images) cap
    the mAP of any model that predicts one box per image below 1; the value is computed
    with the same matching as :func:`evaluate` (VOC all-point, IoU 0.5).

    Args:
        dataset: a dataset whose ``ground_truth(i)`` names the selected object
            (``VOCLocalization``, possibly in ``Subset``/``ConcatDataset``).

    Returns:
        tuple[float, dict[str, float]]: the mAP and ``{class name: AP}``.
    """
    classes = dataset_classes(dataset)
    truths = [dataset_ground_truth(dataset, i) for i in range(dataset_len(dataset))]
    detections = [  # read from the annotations: no image is decoded, no augmentation applies
        {
            "boxes": truth["boxes"][truth["selected"]].view(1, 4),
            "scores": torch.ones(1),
            "labels": truth["labels"][truth["selected"]].view(1),
        }
        for truth in truths
    ]
    ceiling, per_class = metrics.mean_average_precision(detections, truths, len(classes), 0.5, "all_points")
    return ceiling, {classes[c]: ap for c, ap in per_class.items()}
