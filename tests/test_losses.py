"""spikelib.learning.losses: box regression (hand-worked and against torchvision.ops) plus cross-entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

from spikelib.learning.losses import BOX_LOSSES, box_regression_loss, localization_loss
from spikelib.models.localizer import Prediction

TRUE = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.6, 0.6]])
PRED = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.3, 0.2, 0.7, 0.6]])


def test_perfect_boxes_have_zero_loss_for_every_box_loss():
    for name in BOX_LOSSES:
        assert float(box_regression_loss(TRUE.clone(), TRUE, name)) == pytest.approx(0.0, abs=1e-6), name


def test_giou_of_a_quarter_box_is_hand_worked():
    # [0, 0, .5, .5] inside [0, 0, 1, 1]: IoU = 0.25, enclosing box = the true box, so GIoU = IoU
    loss = box_regression_loss(PRED[:1], TRUE[:1], "giou")
    assert float(loss) == pytest.approx(0.75, abs=1e-6)


def test_smooth_l1_is_hand_worked():
    # second pair: differences (0.1, 0, 0.1, 0) with beta 0.05 -> linear part: 0.1 - 0.025
    loss = box_regression_loss(PRED[1:], TRUE[1:], "smooth_l1", smooth_l1_beta=0.05)
    assert float(loss) == pytest.approx(2 * (0.1 - 0.025) / 4, abs=1e-6)
    small = box_regression_loss(TRUE[1:] + 0.01, TRUE[1:], "smooth_l1", smooth_l1_beta=0.05)
    assert float(small) == pytest.approx(0.01**2 / (2 * 0.05), rel=1e-4)


@pytest.mark.parametrize(
    "name,reference",
    [("giou", generalized_box_iou_loss), ("diou", distance_box_iou_loss), ("ciou", complete_box_iou_loss)],
)
def test_iou_losses_are_torchvision_ops(name, reference):
    pred = torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.5, 0.5, 0.9, 0.8], [0.0, 0.6, 0.2, 0.9]])
    true = torch.tensor([[0.2, 0.1, 0.5, 0.6], [0.1, 0.1, 0.3, 0.3], [0.0, 0.5, 0.3, 1.0]])
    expected = reference(pred, true, reduction="mean")
    torch.testing.assert_close(box_regression_loss(pred, true, name), expected)


def test_combined_loss_is_the_sum_of_its_parts():
    both = box_regression_loss(PRED, TRUE, "smooth_l1+giou")
    parts = box_regression_loss(PRED, TRUE, "smooth_l1") + box_regression_loss(PRED, TRUE, "giou")
    torch.testing.assert_close(both, parts)


def test_giou_still_has_a_gradient_for_disjoint_boxes():
    pred = torch.tensor([[0.0, 0.0, 0.2, 0.2]], requires_grad=True)
    true = torch.tensor([[0.6, 0.6, 0.9, 0.9]])
    box_regression_loss(pred, true, "giou").backward()
    assert pred.grad.abs().sum() > 0
    # plain IoU would be flat here: the loss is above 1 (IoU 0 plus the enclosing-box penalty)
    assert float(box_regression_loss(pred.detach(), true, "giou")) > 1.0


def test_localization_loss_weights_box_and_class_terms():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    pred, target = Prediction(logits, PRED), {"box": TRUE, "label": labels, "index": torch.tensor([0, 1])}
    loss, info = localization_loss(pred, target, box_weight=2.0, class_weight=0.5, box_loss="giou")
    expected = 2.0 * generalized_box_iou_loss(PRED, TRUE, reduction="mean") + 0.5 * F.cross_entropy(logits, labels)
    torch.testing.assert_close(loss, expected)
    assert info["loss"] == pytest.approx(float(expected))
    assert info["class_loss"] == pytest.approx(float(F.cross_entropy(logits, labels)))
    assert info["iou"] == pytest.approx((0.25 + 0.6) / 2, abs=1e-5)  # second pair: 0.12 / 0.20
    assert info["accuracy"] == 0.5


def test_localization_loss_backpropagates_into_logits_and_boxes():
    logits = torch.zeros(2, 3, requires_grad=True)
    boxes = PRED.clone().requires_grad_(True)
    loss, _ = localization_loss(Prediction(logits, boxes), {"box": TRUE, "label": torch.tensor([0, 1])})
    loss.backward()
    assert logits.grad.abs().sum() > 0 and boxes.grad.abs().sum() > 0


def test_bad_arguments_name_the_parameter():
    pred = Prediction(torch.zeros(2, 3), PRED)
    target = {"box": TRUE, "label": torch.tensor([0, 1])}
    with pytest.raises(ValueError, match="box_loss"):
        localization_loss(pred, target, box_loss="iou")
    with pytest.raises(ValueError, match="box_weight"):
        localization_loss(pred, target, box_weight=-1.0)
    with pytest.raises(KeyError, match="label"):
        localization_loss(pred, {"box": TRUE})
    with pytest.raises(ValueError, match="pred_boxes"):
        box_regression_loss(PRED[:, :3], TRUE[:, :3])
    with pytest.raises(ValueError, match="smooth_l1_beta"):
        box_regression_loss(PRED, TRUE, "smooth_l1", smooth_l1_beta=0.0)
