"""Per-step readout of the spiking localizer: the prediction after step t is the network run for t steps."""

import doctest

import pytest
import torch

import spikelib.eval.latency
from spikelib.eval.latency import first_good_step, latency_curve, predictions_per_step
from spikelib.models.config import preset
from spikelib.models.localizer import build_localizer


def test_doctests_pass():
    assert doctest.testmod(spikelib.eval.latency).failed == 0


@pytest.mark.parametrize("norm", ["none", "batch"])
@pytest.mark.parametrize("readout", ["mean", "last", "membrane"])
def test_prediction_at_step_t_is_the_same_network_run_for_t_steps(readout, norm):
    torch.manual_seed(0)
    cfg = preset("tiny", num_classes=3, num_steps=4, coding="direct", readout=readout, init_gain=2.5, norm=norm)
    model = build_localizer(cfg).eval()
    images = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        steps = predictions_per_step(model, images)
        assert len(steps) == 4
        for t in range(4):  # every layer is causal: stopping after t + 1 steps gives the same spikes
            shorter = build_localizer(cfg.replace(num_steps=t + 1)).eval()
            shorter.load_state_dict(model.state_dict())
            expected = shorter(images)
            torch.testing.assert_close(steps[t].boxes, expected.boxes)
            torch.testing.assert_close(steps[t].logits, expected.logits)
    assert not torch.equal(steps[0].boxes, steps[-1].boxes)  # the readout does change over time


class _Items(torch.utils.data.Dataset):
    def __init__(self, images, boxes, labels):
        self.images, self.boxes, self.labels = images, boxes, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], {"box": self.boxes[i], "label": self.labels[i], "index": i}


def test_latency_curve_ends_at_the_models_own_score():
    from spikelib.eval import metrics

    torch.manual_seed(1)
    model = build_localizer(preset("tiny", num_classes=3, num_steps=3, init_gain=2.5)).eval()
    images = torch.rand(10, 1, 32, 32)
    boxes = torch.tensor([[0.2, 0.2, 0.7, 0.6]]).repeat(10, 1)
    curve = latency_curve(model, _Items(images, boxes, torch.zeros(10, dtype=torch.long)), batch_size=4)
    assert [len(v) for v in curve.values()] == [3, 3, 3]
    with torch.no_grad():
        assert curve["miou"][-1] == pytest.approx(metrics.mean_iou(model(images).boxes, boxes))


def test_first_good_step_is_one_based_and_reaches_the_share():
    assert first_good_step([0.5, 0.5]) == 1
    assert first_good_step([0.0, 0.2, 0.45, 0.5], share=0.9) == 3
