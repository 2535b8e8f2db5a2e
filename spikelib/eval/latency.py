r"""How early is a spiking localizer's prediction good? Its readout after every time step.

An SNN computes over :math:`T` steps; because every layer is causal, the prediction it
would give if stopped after step :math:`t` is available along the way, at no extra cost.
:func:`predictions_per_step` computes those predictions from one run, and
:func:`latency_curve` scores them on a dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from spikelib.eval import metrics
from spikelib.models.localizer import Prediction, SpikingLocalizer

__all__ = ["predictions_per_step", "latency_curve", "first_good_step"]


def predictions_per_step(model: SpikingLocalizer, images: Tensor) -> list[Prediction]:
    r"""What the spiking localizer would predict if it stopped after each step.

    With :math:`S[t]` the spikes of the last decoder layer, the head reads at step
    :math:`t` the rate so far, :math:`\frac{1}{t+1}\sum_{t' \le t} S[t']` (readout
    "mean"), :math:`S[t]` (readout "last"), or the running mean of the leaky integrator
    :math:`M` of that layer's current (readout "membrane"); these per-step features come
    from ``model.record(images).readout_seq``. Every layer is causal, so these are the
    predictions of the same network run for :math:`t+1` steps (for direct and rate
    coding; latency coding spreads its spikes over all :math:`T` steps, so an early stop
    has seen only the brightest pixels). The last entry equals ``model(images)``.

    Args:
        model: a :class:`~spikelib.models.localizer.SpikingLocalizer` (anything whose ``record``
            returns a ``readout_seq``, and a ``prediction_seq``).
        images (Tensor[B, C, H, W]): a batch.

    Returns:
        list[Prediction]: ``T`` predictions, one per step.
    """
    record = model.record(images)  # its readout_seq [T, B, C, H, W]: the head's input after each step
    if record.readout_seq is None:
        raise ValueError(f"{type(model).__name__}.record() gave no readout_seq: not a spiking localizer")
    return model.prediction_seq(record)


@torch.no_grad()
def latency_curve(model: SpikingLocalizer, dataset: Dataset, batch_size: int = 100) -> dict[str, list[float]]:
    """mIoU, CorLoc and class accuracy of :func:`predictions_per_step` at every step.

    Args:
        model: a spiking localizer (see :func:`predictions_per_step`).
        dataset: items ``(image, {"box", "label", ...})``.
        batch_size: images per batch.

    Returns:
        dict: ``miou``, ``corloc``, ``accuracy``: lists of length T.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    boxes: list[list[Tensor]] = []
    labels: list[list[Tensor]] = []
    true_boxes: list[Tensor] = []
    true_labels: list[Tensor] = []
    for images, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        steps = predictions_per_step(model, images.to(device))
        if not boxes:
            boxes, labels = [[] for _ in steps], [[] for _ in steps]
        for t, pred in enumerate(steps):
            boxes[t].append(pred.boxes.float().cpu())
            labels[t].append(pred.logits.argmax(1).cpu())
        true_boxes.append(targets["box"].float())
        true_labels.append(targets["label"])
    model.train(was_training)
    truth, classes = torch.cat(true_boxes), torch.cat(true_labels)
    return {
        "miou": [metrics.mean_iou(torch.cat(b), truth) for b in boxes],
        "corloc": [metrics.corloc(torch.cat(b), truth) for b in boxes],
        "accuracy": [float((torch.cat(lab) == classes).float().mean()) for lab in labels],
    }


def first_good_step(curve: Sequence[float], share: float = 0.9) -> int:
    """The first step (1-based) whose value reaches ``share`` of the last step's.

    Example:
        >>> first_good_step([0.1, 0.5, 0.58, 0.6])
        3
    """
    target = share * curve[-1]
    return next(t + 1 for t, value in enumerate(curve) if value >= target)
