"""The explorers that look inside trained networks and studies: every control driven, state checked."""

import math

import pytest
import torch

from spikelib.eval.latency import predictions_per_step
from spikelib.models.config import preset
from spikelib.models.localizer import build_ann_twin, build_localizer
from spikelib.snn.surrogate import ArcTan, Boxcar, FastSigmoid, Sigmoid, Triangle
from spikelib.widgets import (
    FAILURE_KINDS,
    NetworkExplorer,
    PredictionGallery,
    StudySelector,
    SurrogateExplorer,
    deep_weights,
    gradient_per_layer,
    image_groups,
    run_one_image,
    sample_neurons,
    study_grid,
    surrogate_with_slope,
)

CLASSES = ["circle", "square", "triangle"]


def _items(count, seed=0, size=32):
    generator = torch.Generator().manual_seed(seed)
    items = []
    for i in range(count):
        x0, y0 = torch.rand(2, generator=generator) * 0.5
        box = torch.tensor([float(x0), float(y0), float(x0) + 0.4, float(y0) + 0.3])
        items.append((torch.rand(1, size, size, generator=generator), {"box": box, "label": torch.tensor(i % 3)}))
    return items


@pytest.fixture
def localizer():
    torch.manual_seed(0)
    return build_localizer(preset("tiny", num_classes=3, num_steps=4, init_gain=2.5)).eval()


# -- network explorer ---------------------------------------------------------------------------
def test_network_explorer_box_at_step_t_is_the_readout_of_the_first_t_steps(localizer):
    items = _items(6)
    explorer = NetworkExplorer(localizer, items, class_names=CLASSES, step=0)
    assert explorer.state.image_index == 0 and explorer.state.layer == "enc1"
    per_step = predictions_per_step(localizer, items[0][0][None])
    first = explorer.figure.axes[2].patches[-1].get_bbox().bounds
    for t in range(4):
        explorer.step.value = t
        assert explorer.state.step == t
        torch.testing.assert_close(explorer.state.box, per_step[t].boxes[0])
        assert explorer.state.label == int(per_step[t].logits.argmax())
        assert len(explorer.figure.axes[2].patches) == 1 + (t + 1)  # the annotation, then one box per step so far
    assert explorer.figure.axes[2].patches[-1].get_bbox().bounds != first  # the box moved over time
    assert len(explorer.runs) == 1  # moving the step reused the cached run


def test_network_explorer_layer_and_image_controls(localizer):
    items = _items(5)
    explorer = NetworkExplorer(localizer, items, num_neurons=10)
    explorer.layer.value = "dec2"
    run = run_one_image(localizer, items[0][0])
    spk = run.outputs["dec2"]
    assert explorer.state.layer == "dec2" and len(explorer.state.neurons) == 10
    assert explorer.state.layer_rates["dec2"] == pytest.approx(float(spk.float().mean()))
    assert explorer.state.step_rates["dec2"] == pytest.approx(float(spk[explorer.state.step].float().mean()))
    assert "dec2" in explorer.figure.axes[1].get_title()
    raster = explorer.figure.axes[3].collections[0]
    assert len(raster.get_offsets()) == int(spk.reshape(4, -1)[:, explorer.state.neurons].sum())
    explorer.image.value = 3
    assert explorer.state.image_index == 3 and set(explorer.runs) == {0, 3}


def test_network_explorer_orders_images_by_iou(localizer):
    explorer = NetworkExplorer(localizer, _items(8))
    explorer.order.value = "IoU, best first"
    ious = explorer.final_ious
    assert explorer.state.image_index == int(ious.argmax())
    explorer.order.value = "IoU, worst first"
    assert explorer.state.image_index == int(ious.argmin())
    order = explorer.ordered_indices()
    assert sorted(order) == list(range(8)) and (ious[order].diff() >= 0).all()
    # the final box of the cached single-image run scores what the batched run scored
    assert explorer.state.step == 3 and explorer.state.iou == pytest.approx(float(ious.min()), abs=1e-5)


def test_network_explorer_rate_code_input_matches_the_run_and_leaves_global_rng(localizer):
    model = build_localizer(preset("tiny", num_classes=3, num_steps=4, coding="rate")).eval()
    image = _items(1)[0][0]
    state = torch.random.get_rng_state()
    first, again = run_one_image(model, image, seed=3), run_one_image(model, image, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(first.x_seq, again.x_seq) and set(first.x_seq.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first.x_seq, run_one_image(model, image, seed=4).x_seq)


def test_network_explorer_renders_and_the_picture_changes_with_every_control(localizer):
    explorer = NetworkExplorer(localizer, _items(4), render=True)
    seen = {explorer.png}
    for control, value in (("step", 0), ("layer", "dec1"), ("image", 2)):
        getattr(explorer, control).value = value
        assert explorer.png not in seen, control
        seen.add(explorer.png)
        assert explorer.redraw_seconds > 0
    shown = explorer.state.image_index
    explorer.order.value = "IoU, worst first"  # the slider's position now walks another order
    assert explorer.state.image_index == explorer.ordered_indices()[2]
    assert (explorer.png not in seen) == (explorer.state.image_index != shown)


def test_network_explorer_rejects_bad_arguments(localizer):
    with pytest.raises(TypeError, match="SpikingLocalizer"):
        NetworkExplorer(build_ann_twin(preset("tiny", num_classes=3)), _items(2))
    with pytest.raises(ValueError, match="layer must be one of"):
        NetworkExplorer(localizer, _items(2), layer="conv9")
    with pytest.raises(ValueError, match=r"step must lie in \[0, 3\]"):
        NetworkExplorer(localizer, _items(2), step=4)
    with pytest.raises(ValueError, match="order must be one of"):
        NetworkExplorer(localizer, _items(2), order="random")
    with pytest.raises(ValueError, match=r"image must lie in \[0, 1\]"):
        NetworkExplorer(localizer, _items(2), image=5)
    with pytest.raises(ValueError, match="count must be an int"):
        sample_neurons(torch.zeros(3, 5), 0)


def test_sample_neurons_prefers_neurons_that_fire():
    spk_seq = torch.zeros(3, 10)
    spk_seq[1, [2, 7]] = 1
    assert sample_neurons(spk_seq, 2).tolist() == [2, 7]
    picked = sample_neurons(spk_seq, 5)
    assert {2, 7} <= set(picked.tolist()) and len(picked) == 5 and (picked.diff() > 0).all()
    assert len(sample_neurons(spk_seq, 50)) == 10


# -- surrogate explorer --------------------------------------------------------------------------
def test_surrogate_with_slope_maps_the_slope_to_each_kind():
    assert surrogate_with_slope("fast_sigmoid", 5) == FastSigmoid(slope=5.0)
    assert surrogate_with_slope("sigmoid", 5) == Sigmoid(slope=5.0)
    assert surrogate_with_slope("arctan", 4) == ArcTan(alpha=4.0)
    assert surrogate_with_slope("triangle", 2) == Triangle(width=0.5)
    assert surrogate_with_slope("boxcar", 4) == Boxcar(width=0.25)
    with pytest.raises(ValueError, match="kind must be one of"):
        surrogate_with_slope("heaviside", 1.0)
    with pytest.raises(ValueError, match="slope must be a finite number > 0"):
        surrogate_with_slope("fast_sigmoid", 0.0)


def test_gradient_per_layer_matches_autograd_by_hand_and_spikes_ignore_the_surrogate():
    x_seq = (torch.rand(5, 8, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    weights = deep_weights(6, 7, 3, gain=3.0, seed=1)
    gentle, steep = (
        gradient_per_layer(x_seq, weights, FastSigmoid(1.0)),
        gradient_per_layer(x_seq, weights, FastSigmoid(50.0)),
    )
    assert gentle.spike_rates == steep.spike_rates  # the forward pass is the same step
    for mine, theirs in zip(gentle.mem_x, steep.mem_x):
        torch.testing.assert_close(mine, theirs)
    # the same loss through torch directly
    from spikelib.snn.neurons import LIFParams, lif_seq

    leaves = [w.clone().requires_grad_(True) for w in weights]
    spk_seq = x_seq
    for w in leaves:
        spk_seq, _ = lif_seq(spk_seq @ w.T, LIFParams(0.5, 1.0), FastSigmoid(1.0))
    (spk_seq.sum() / 8).backward()
    assert gentle.grad_norms == pytest.approx([float(w.grad.norm()) for w in leaves], rel=1e-5)
    expected_gate = float(FastSigmoid(50.0).derivative(steep.mem_x[1]).mean())
    assert steep.gate[1] == pytest.approx(expected_gate)


@pytest.fixture
def digit_like_images():
    return torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_surrogate_explorer_steep_slope_silences_the_first_layers(digit_like_images):
    explorer = SurrogateExplorer(digit_like_images, kind="fast_sigmoid", slope=1.0, num_layers=6, width=64)
    gentle = explorer.profile.grad_norms
    explorer.slope.value = 100.0
    steep = explorer.profile.grad_norms
    assert explorer.spike_fn == FastSigmoid(slope=100.0)
    # every layer loses far more with the steep slope, the first layers most
    assert steep[0] / steep[-1] < 1e-3 * gentle[0] / gentle[-1]
    assert all(s < g for s, g in zip(steep, gentle))
    assert "k = 100" in explorer.figure.axes[1].get_title()  # axes: membranes, gradients, derivative


def test_surrogate_explorer_controls_cache_and_redraw(digit_like_images):
    explorer = SurrogateExplorer(digit_like_images, num_layers=4, width=32, render=True)
    assert explorer.layer.value == 2
    seen = {explorer.png}
    explorer.kind.value = "boxcar"
    assert explorer.png not in seen and explorer.spike_fn == Boxcar(width=1 / 25)
    seen.add(explorer.png)
    explorer.layer.value = 4
    assert explorer.png not in seen and "layer 4" in explorer.figure.axes[0].get_title()
    explorer.kind.value = "fast_sigmoid"
    assert len(explorer.profiles) == 2  # (fast_sigmoid, 25) was computed once and reused
    with pytest.raises(ValueError, match=r"layer must lie in \[1, 4\]"):
        SurrogateExplorer(digit_like_images, num_layers=4, layer=0)
    with pytest.raises(ValueError, match="kind must be one of"):
        SurrogateExplorer(digit_like_images, kind="step")


# -- prediction gallery --------------------------------------------------------------------------
def _predictions():
    true_boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5]] * 4 + [[0.1, 0.1, 0.3, 0.3]] * 2)
    boxes = true_boxes.clone()
    boxes[1] = torch.tensor([0.0, 0.0, 0.5, 0.2])  # IoU 0.4
    boxes[2] = torch.tensor([0.5, 0.5, 1.0, 1.0])  # IoU 0, on the second object of image 2
    boxes[4] = torch.tensor([0.6, 0.6, 0.9, 0.9])  # small object missed
    boxes[5] = torch.tensor([0.1, 0.1, 0.3, 0.26])  # IoU 0.8
    return {
        "boxes": boxes,
        "true_boxes": true_boxes,
        "true_labels": torch.tensor([0, 1, 2, 0, 1, 2]),
        "labels": torch.tensor([0, 1, 0, 0, 1, 2]),
        "scores": torch.ones(6),
    }


def _all_boxes(predictions):
    boxes = [b[None] for b in predictions["true_boxes"]]
    boxes[2] = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    return boxes


def test_image_groups_by_class_bucket_and_failure_kind():
    predictions = _predictions()
    groups = image_groups(predictions, CLASSES, _all_boxes(predictions))
    assert groups["class"] == {"circle": [0, 3], "square": [1, 4], "triangle": [2, 5]}
    assert groups["IoU bucket"] == {
        "IoU < 0.1": [2, 4],
        "0.1 to 0.5": [1],
        "0.5 to 0.75": [],
        "0.75 and more": [0, 3, 5],
    }
    assert groups["failure kind"] == dict(zip(FAILURE_KINDS, [[0, 3, 5], [2], [4], [1]]))
    no_others = image_groups(predictions, CLASSES)["failure kind"]
    assert no_others[FAILURE_KINDS[1]] == [] and no_others[FAILURE_KINDS[3]] == [1, 2]
    with pytest.raises(ValueError, match="has no name"):
        image_groups(predictions, CLASSES[:2])


def test_gallery_keeps_only_images_of_the_chosen_group_and_pages_through_it():
    predictions = _predictions()
    dataset = _items(6)
    gallery = PredictionGallery(dataset, predictions, CLASSES, per_page=2, all_boxes=_all_boxes(predictions))
    assert gallery.state.grouping == "failure kind" and gallery.state.group == FAILURE_KINDS[0]
    assert gallery.state.indices == [0, 3] and gallery.page.max == 1
    gallery.page.value = 1
    assert gallery.state.indices == [5] and gallery.state.ious == [pytest.approx(0.8)]
    gallery.grouping.value = "class"  # the groups follow, the page starts over
    assert gallery.group.value == "circle" and gallery.page.value == 0 and gallery.state.indices == [0, 3]
    gallery.group.value = "triangle"
    assert gallery.state.indices == [2, 5]
    assert "predicted: circle" in gallery.figure.axes[0].get_title()  # image 2 is a triangle called a circle
    gallery.grouping.value = "IoU bucket"
    assert gallery.state.group == "IoU < 0.1" and gallery.state.indices == [2, 4]
    assert all(iou < 0.1 for iou in gallery.state.ious)
    gallery.group.value = "0.5 to 0.75"  # an empty group
    assert gallery.state.indices == [] and gallery.figure.axes[0].texts


def test_gallery_redraws_once_per_change_and_checks_its_arguments():
    predictions = _predictions()
    gallery = PredictionGallery(_items(6), predictions, CLASSES, render=True)
    draws = []
    gallery.output.observe(lambda change: draws.append(1), names="outputs")
    before = gallery.png
    gallery.grouping.value = "class"
    assert gallery.png != before
    assert len(draws) <= 2  # clear + show of a single redraw, not one per control moved
    with pytest.raises(ValueError, match="grouping must be one of"):
        PredictionGallery(_items(6), predictions, CLASSES, grouping="size")
    with pytest.raises(ValueError, match="dataset has 5 images but predictions 6"):
        PredictionGallery(_items(5), predictions, CLASSES)
    with pytest.raises(ValueError, match="group must be one of"):
        PredictionGallery(_items(6), predictions, CLASSES, grouping="class", group="hexagon")


# -- study selector ------------------------------------------------------------------------------
def _model(kind, steps, coding, miou, energy_j, **extra):
    return {
        "kind": kind,
        "num_steps": steps,
        "coding": coding,
        "test": {"miou": miou, "corloc": miou, "map50": 0.1, "accuracy": 0.5},
        "energy": {"energy_j": energy_j, "macs": 1e5, "synops": 1e6},
        **extra,
    }


@pytest.fixture
def study():
    snn = {
        "snn-T1-direct": _model("snn", 1, "direct", 0.3, 1e-6, latency={"miou": [0.3]}, spike_rates={"enc1": [0.1]}),
        "snn-T4-direct": _model(
            "snn", 4, "direct", 0.4, 2e-6, latency={"miou": [0.1, 0.2, 0.3, 0.4]}, spike_rates={"enc1": [0.1] * 4}
        ),
        "snn-T4-rate": _model("snn", 4, "rate", 0.2, 1.5e-6, latency={"miou": [0.1, 0.1, 0.2, 0.2]}),
    }
    return {"reference": "snn-T4-direct", "models": {"ann": _model("ann", 1, "analog", 0.5, 4e-6), **snn}}


def test_study_selector_picks_the_model_of_the_chosen_code_and_t(study):
    assert study_grid(study) == {"direct": {1: "snn-T1-direct", 4: "snn-T4-direct"}, "rate": {4: "snn-T4-rate"}}
    selector = StudySelector(study, render=True)
    assert selector.state.model == "snn-T4-direct" and selector.state.energy_ratio == pytest.approx(2.0)
    before = selector.png
    selector.num_steps.value = 1
    assert selector.state.model == "snn-T1-direct" and selector.state.test["miou"] == 0.3
    assert selector.png != before
    marker = selector.figure.axes[0].get_lines()[-1]
    assert list(marker.get_xdata()) == [1] and list(marker.get_ydata()) == pytest.approx([30.0])
    selector.coding.value = "rate"  # only T = 4 was trained with rate coding
    assert list(selector.num_steps.options) == [4] and selector.state.model == "snn-T4-rate"
    assert selector.figure.axes[1].texts  # no spike rates recorded for that model
    assert selector.table.value.count("class='selected'") == 1
    selected = selector.table.value.split("class='selected'")[1].split("</tr>")[0]
    assert ">snn-T4-rate<" in selected and ">20.0<" in selected  # its mIoU, in percent
    selector.coding.value = "direct"
    assert selector.state.num_steps == 4  # kept where it exists


def test_study_selector_checks_its_arguments(study):
    with pytest.raises(ValueError, match="coding must be one of"):
        StudySelector(study, coding="phase")
    with pytest.raises(ValueError, match=r"num_steps must be one of \[4\]"):
        StudySelector(study, coding="rate", num_steps=1)
    with pytest.raises(ValueError, match="no spiking model"):
        study_grid({"models": {"ann": study["models"]["ann"]}})
    without_ann = {**study, "models": {k: v for k, v in study["models"].items() if k != "ann"}}
    assert math.isnan(StudySelector(without_ann).state.energy_ratio)
    with pytest.raises(ValueError, match="reference"):
        StudySelector({"models": study["models"]})
