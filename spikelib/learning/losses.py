r"""Losses for single-object localization: box regression plus class cross-entropy.

A localizer predicts, for each image, class scores ``logits [B, num_classes]`` and one box
``boxes [B, 4]`` (normalized ``xyxy``, see :class:`spikelib.models.localizer.Prediction`). Its
loss is a weighted sum

.. math::

    L = w_{\mathrm{box}}\, L_{\mathrm{box}}(\hat b, b) + w_{\mathrm{cls}}\,
        \mathrm{CE}(z, y)

with :math:`L_{\mathrm{box}}` one of

* ``"smooth_l1"``: Smooth L1 (Huber) on the four coordinates, averaged over them
  (Girshick, Fast R-CNN, 2015);
* ``"giou"``, ``"diou"``, ``"ciou"``: :math:`1 - \mathrm{IoU}` plus a penalty that still
  has a gradient when the boxes do not overlap: generalized IoU (Rezatofighi et al.,
  CVPR 2019), distance IoU and complete IoU (Zheng et al., AAAI 2020). These are
  ``torchvision.ops``'s ``generalized_box_iou_loss``, ``distance_box_iou_loss`` and
  ``complete_box_iou_loss``, called as they are;
* ``"smooth_l1+giou"``: the sum of the two (what DETR does with L1 + GIoU).

Every function is pure and returns means over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou, complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

from spikelib.checks import check_choice, check_number
from spikelib.learning.base import LocalizationTargets
from spikelib.models.localizer import Prediction

__all__ = ["BOX_LOSSES", "box_regression_loss", "localization_loss"]

#: Names accepted by :func:`box_regression_loss` and :func:`localization_loss`.
BOX_LOSSES: tuple[str, ...] = ("smooth_l1", "giou", "diou", "ciou", "smooth_l1+giou")

_IOU_LOSSES = {"giou": generalized_box_iou_loss, "diou": distance_box_iou_loss, "ciou": complete_box_iou_loss}


def _check_boxes(boxes: Tensor, name: str) -> None:
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"{name} must be a Tensor [B, 4] of normalized xyxy boxes, got {shape}")


def box_regression_loss(
    pred_boxes: Tensor, true_boxes: Tensor, box_loss: str = "smooth_l1+giou", smooth_l1_beta: float = 0.05
) -> Tensor:
    r"""Mean box loss between predicted and true boxes (both normalized ``xyxy``).

    Smooth L1 with threshold :math:`\beta` on each coordinate difference :math:`d`:

    .. math::

        \ell(d) = \begin{cases} d^2 / (2\beta) & |d| < \beta \\ |d| - \beta / 2 & \text{else}
        \end{cases}

    averaged over the 4 coordinates and the batch. On normalized boxes a
    coordinate error is at most 1, so :math:`\beta` is small (default 0.05, i.e. 3 pixels
    of a 64-pixel image), or the loss would be quadratic, and weak, almost everywhere.

    Args:
        pred_boxes (Tensor[B, 4]): predicted boxes, xyxy with ``x2 >= x1``, ``y2 >= y1``.
        true_boxes (Tensor[B, 4]): target boxes, same format.
        box_loss (str): one of :data:`BOX_LOSSES`.
        smooth_l1_beta (float): :math:`\beta > 0` of the Smooth L1 part.

    Returns:
        Tensor[]: the mean loss (differentiable in ``pred_boxes``).

    Raises:
        ValueError: unknown ``box_loss``, bad shapes, or ``smooth_l1_beta <= 0``.
    """
    check_choice("box_loss", box_loss, BOX_LOSSES)
    _check_boxes(pred_boxes, "pred_boxes")
    _check_boxes(true_boxes, "true_boxes")
    if pred_boxes.shape != true_boxes.shape:
        raise ValueError(f"pred_boxes {tuple(pred_boxes.shape)} and true_boxes {tuple(true_boxes.shape)} differ")
    check_number("smooth_l1_beta", smooth_l1_beta, 0.0, low_open=True)
    true_boxes = true_boxes.to(pred_boxes.dtype)
    loss = pred_boxes.new_zeros(())
    if box_loss in ("smooth_l1", "smooth_l1+giou"):
        loss = loss + F.smooth_l1_loss(pred_boxes, true_boxes, beta=smooth_l1_beta)
    iou_name = "giou" if box_loss == "smooth_l1+giou" else box_loss
    if iou_name in _IOU_LOSSES:
        loss = loss + _IOU_LOSSES[iou_name](pred_boxes, true_boxes, reduction="mean")
    return loss


def localization_loss(
    pred: Prediction,
    target: LocalizationTargets,
    box_weight: float = 1.0,
    class_weight: float = 1.0,
    box_loss: str = "smooth_l1+giou",
    smooth_l1_beta: float = 0.05,
) -> tuple[Tensor, dict[str, float]]:
    r"""Box regression plus class cross-entropy, and the batch's numbers for logging.

    .. math:: L = w_{\mathrm{box}} L_{\mathrm{box}} + w_{\mathrm{cls}} \mathrm{CE}(z, y)

    Args:
        pred (Prediction): ``logits [B, num_classes]`` and ``boxes [B, 4]`` (normalized xyxy).
        target (LocalizationTargets): ``{"box": Tensor[B, 4] normalized xyxy, "label": Tensor[B] int64}``
            (a batch from :class:`spikelib.data.VOCLocalization`; other keys are ignored).
        box_weight (float): :math:`w_{\mathrm{box}} \ge 0`.
        class_weight (float): :math:`w_{\mathrm{cls}} \ge 0`.
        box_loss (str): one of :data:`BOX_LOSSES` (see :func:`box_regression_loss`).
        smooth_l1_beta (float): threshold of the Smooth L1 part.

    Returns:
        tuple[Tensor[], dict[str, float]]: the loss to backpropagate, and ``{"loss",
        "box_loss", "class_loss", "iou" (mean IoU of the batch), "accuracy"}`` as floats.

    Raises:
        ValueError: bad weights, shapes or names; ``KeyError`` if ``target`` lacks "box"
        or "label".
    """
    for name, value in (("box_weight", box_weight), ("class_weight", class_weight)):
        check_number(name, value, 0.0)
    for key in ("box", "label"):
        if key not in target:
            raise KeyError(f"target must hold {key!r} (a batch from VOCLocalization), got keys {sorted(target)}")
    logits, boxes = pred.logits, pred.boxes
    labels = target["label"].to(logits.device)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"logits must be [B, num_classes] and labels [B], got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    true_boxes = target["box"].to(boxes.device)
    box_term = box_regression_loss(boxes, true_boxes, box_loss, smooth_l1_beta)
    class_term = F.cross_entropy(logits, labels)
    loss = box_weight * box_term + class_weight * class_term
    with torch.no_grad():
        iou = box_iou(boxes.detach().float(), true_boxes.float()).diagonal().mean()
        accuracy = (logits.argmax(1) == labels).float().mean()
    return loss, {
        "loss": float(loss.detach()),
        "box_loss": float(box_term.detach()),
        "class_loss": float(class_term.detach()),
        "iou": float(iou),
        "accuracy": float(accuracy),
    }
