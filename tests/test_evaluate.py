"""spikelib.eval.evaluate: the confusion matrix in the results, and the mAP ceiling of one prediction per image."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import box_area

from spikelib.data import VOCLocalization
from spikelib.data.datasets import dataset_ground_truth
from spikelib.eval.evaluate import evaluate, predict, single_object_map_ceiling
from spikelib.models.localizer import Prediction

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def test_set(synth_root, synth_config):
    return VOCLocalization(synth_root, synth_config.name, "test", policy="largest", image_size=32)


def test_ceiling_is_the_share_of_each_class_objects_that_are_selected(test_set):
    num_classes = len(test_set.classes)
    selected, objects = torch.zeros(num_classes), torch.zeros(num_classes)
    for i in range(len(test_set)):
        truth = dataset_ground_truth(test_set, i)
        easy = ~truth["difficult"]
        objects += torch.bincount(truth["labels"][easy], minlength=num_classes)
        largest = box_area(truth["boxes"][easy]).argmax()
        selected[truth["labels"][easy][largest]] += 1
    ceiling, per_class = single_object_map_ceiling(test_set)
    present = objects > 0
    expected = {test_set.classes[c]: float(selected[c] / objects[c]) for c in range(num_classes) if present[c]}
    assert per_class == pytest.approx(expected)
    assert ceiling == pytest.approx(sum(expected.values()) / len(expected))
    assert 0 < ceiling < 1  # some images hold more than one object


def test_ground_truth_names_the_target_and_the_ceiling_ignores_augmentation(test_set, synth_root, synth_config):
    for i in range(0, len(test_set), 97):
        truth, (_, target) = dataset_ground_truth(test_set, i), test_set[i]
        torch.testing.assert_close(truth["boxes"][truth["selected"]], target["box"])
        assert int(truth["labels"][truth["selected"]]) == int(target["label"])
    augmented = VOCLocalization(synth_root, synth_config.name, "test", policy="largest", image_size=32, augment=True)
    assert single_object_map_ceiling(augmented) == single_object_map_ceiling(test_set)


class _Oracle(nn.Module):
    """Answers every image of a (non-augmented) set with its target box and a fixed class."""

    def __init__(self, boxes: torch.Tensor, label: int, num_classes: int) -> None:
        super().__init__()
        self.boxes, self.label, self.num_classes, self.seen = boxes, label, num_classes, 0
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, images: torch.Tensor) -> Prediction:
        boxes = self.boxes[self.seen : self.seen + len(images)]
        self.seen += len(images)
        logits = torch.zeros(len(images), self.num_classes)
        logits[:, self.label] = 1.0
        return Prediction(logits, boxes)


def test_evaluate_reports_the_confusion_matrix_of_the_argmax_classes(test_set):
    boxes = torch.stack([test_set[i][1]["box"] for i in range(len(test_set))])
    labels = torch.tensor([test_set[i][1]["label"] for i in range(len(test_set))])
    model = _Oracle(boxes, 1, len(test_set.classes))
    result = evaluate(model, test_set, predictions=predict(model, test_set, batch_size=len(test_set)))
    confusion = torch.tensor(result["confusion"])
    assert confusion.shape == (len(test_set.classes),) * 2
    assert confusion[:, 1].tolist() == torch.bincount(labels, minlength=len(test_set.classes)).tolist()
    assert int(confusion.sum()) == len(test_set)
    assert result["accuracy"] == pytest.approx(float((labels == 1).float().mean()))
    assert result["miou"] == pytest.approx(1.0)
