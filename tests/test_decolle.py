"""Learning rules for the localizer: DECOLLE (spikelib.learning.decolle) and BPTT (spikelib.learning.bptt).

The pins: DECOLLE's readouts are fixed and random; its gradients stay inside each layer
(between layers and through time); both rules, and BPTT on the ANN twin, improve IoU in
a short run; NaN losses and misuse raise.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_iou

from spikelib.learning.base import LearningRule, TrainingDiverged
from spikelib.learning.bptt import BPTT
from spikelib.learning.decolle import (
    DECOLLE,
    InputTraces,
    MomentReadout,
    RandomReadout,
    rate_ceiling_penalty,
    rate_floor_penalty,
)
from spikelib.learning.losses import localization_loss
from spikelib.learning.rules import make_rule
from spikelib.models.config import preset
from spikelib.models.localizer import build_ann_twin, build_localizer
from spikelib.snn.neurons import LIFState
from spikelib.training.update import OptimizerUpdater


def _rectangles(num: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Bright rectangles on a dark noisy background; label 1 if wider than tall."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.1 * torch.rand(num, 1, size, size, generator=generator)
    boxes = torch.empty(num, 4)
    for i in range(num):
        w, h = (int(v) for v in torch.randint(6, size // 2 + 4, (2,), generator=generator))
        x0 = int(torch.randint(0, size - w + 1, (1,), generator=generator))
        y0 = int(torch.randint(0, size - h + 1, (1,), generator=generator))
        images[i, 0, y0 : y0 + h, x0 : x0 + w] = 0.9
        boxes[i] = torch.tensor([x0, y0, x0 + w, y0 + h]) / size
    labels = ((boxes[:, 2] - boxes[:, 0]) > (boxes[:, 3] - boxes[:, 1])).long()
    return images, {"box": boxes, "label": labels}


def _config(**overrides):
    return preset("tiny", num_classes=2, num_steps=4, **overrides)


pytestmark = pytest.mark.usefixtures("one_thread")


# The short training runs: 16 rectangles of 16x16 pixels, 20 full-batch steps (about 1-2 s
# of CPU per rule). Measured over seeds 0-2: BPTT gains 0.36-0.45 IoU, DECOLLE 0.39-0.47.
SHORT_SIZE, SHORT_NUM, SHORT_STEPS = 16, 16, 20


def _mean_iou(model, images, targets) -> float:
    with torch.no_grad():
        return float(box_iou(model(images).boxes, targets["box"]).diagonal().mean())


def test_readout_weights_are_fixed_uniform_and_seeded():
    readout = RandomReadout((8, 32, 32), num_classes=6, scale=2.0, pool=16, generator=torch.Generator().manual_seed(0))
    fan_in = 8 * 16 * 16
    assert readout.weight.shape == (10, fan_in)
    assert list(readout.parameters()) == []  # a buffer: no optimizer can change it
    bound = 2.0 / math.sqrt(fan_in)
    assert float(readout.weight.abs().max()) <= bound
    assert float(readout.weight.abs().max()) > 0.95 * bound  # it fills the interval
    assert abs(float(readout.weight.mean())) < 0.05 * bound
    again = RandomReadout((8, 32, 32), 6, scale=2.0, pool=16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(readout.weight, again.weight)


def test_readouts_do_not_change_during_training():
    torch.manual_seed(0)
    model, (images, targets) = build_localizer(_config()), _rectangles(8)
    rule = DECOLLE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = {name: readout.weight.clone() for name, readout in rule.readouts_for(model).items()}
    weight_before = model.encoder[0].conv.weight.detach().clone()
    rule.train_step(model, images, targets, OptimizerUpdater(optimizer))
    for name, readout in rule.readouts.items():
        assert torch.equal(readout.weight, before[name]), name
    assert not torch.equal(model.encoder[0].conv.weight, weight_before)  # the layers did learn


def test_a_later_layer_loss_gives_no_gradient_to_earlier_layers():
    torch.manual_seed(0)
    model, (images, targets) = build_localizer(_config(init_gain=2.0)), _rectangles(4)
    rule = DECOLLE()
    readouts = rule.readouts_for(model)
    x = model.encode(images)[0]
    spks, _ = model.step(x, None, detach_inputs=True)
    names = model.config.layer_names()
    loss, _ = localization_loss(readouts["dec3"](spks[names.index("dec3")]), targets)
    loss.backward()
    assert model.decoder[-1].conv.weight.grad.abs().sum() > 0  # its own layer learns
    for layer in [*model.encoder, *model.decoder[:-1]]:
        assert layer.conv.weight.grad is None  # no path at all from dec3's loss
    assert model.head.mlp[0].weight.grad is None


def test_without_detaching_the_same_loss_reaches_the_first_layer():
    """The control for the test above: the isolation comes from detaching, not from dead layers."""
    torch.manual_seed(0)
    model, (images, targets) = build_localizer(_config(init_gain=2.0)), _rectangles(4)
    readouts = DECOLLE().readouts_for(model)
    spks, _ = model.step(model.encode(images)[0], None, detach_inputs=False)
    loss, _ = localization_loss(readouts["dec3"](spks[-1]), targets)
    loss.backward()
    assert model.encoder[0].conv.weight.grad.abs().sum() > 0


def test_decolle_detaches_the_state_between_steps(monkeypatch):
    torch.manual_seed(0)
    model, (images, targets) = build_localizer(_config()), _rectangles(4)
    seen: list = []
    original = model.step

    def spy(x, states=None, detach_inputs=False, current_fn=None):
        seen.append((states, detach_inputs))
        return original(x, states, detach_inputs, current_fn)

    monkeypatch.setattr(model, "step", spy)
    DECOLLE().train_step(model, images, targets, OptimizerUpdater(torch.optim.SGD(model.parameters(), lr=0.0)))
    assert len(seen) == model.config.num_steps
    assert seen[0][0] is None and all(detach for _, detach in seen)
    for states, _ in seen[1:]:
        assert all(isinstance(s, LIFState) and not s.mem.requires_grad for s in states)


def test_decolle_step_gradient_equals_the_local_gradient_of_each_layer():
    """Summing the local losses and backpropagating once = each layer's own loss alone."""
    torch.manual_seed(0)
    model, (images, targets) = build_localizer(_config(init_gain=2.0)), _rectangles(4)
    readouts = DECOLLE().readouts_for(model)
    x = model.encode(images)[0]
    names = model.config.layer_names()
    layers = [*model.encoder, *model.decoder]
    spks, _ = model.step(x, None, detach_inputs=True)
    sum(localization_loss(readouts[n](s), targets)[0] for n, s in zip(names, spks)).backward()
    together = [layer.conv.weight.grad.clone() for layer in layers]
    for index, name in enumerate(names):
        model.zero_grad(set_to_none=True)
        spks, _ = model.step(x, None, detach_inputs=True)
        localization_loss(readouts[name](spks[index]), targets)[0].backward()
        torch.testing.assert_close(layers[index].conv.weight.grad, together[index])


def test_rate_floor_penalty_acts_only_below_the_floor():
    mem = torch.tensor([[0.2, -1.0, 1.5, 0.5]], requires_grad=True)
    quiet = torch.tensor([[0.0, 0.0, 1.0, 0.0]])  # rate 0.25
    penalty = rate_floor_penalty(quiet, mem, threshold=1.0, floor=0.5)
    assert float(penalty.detach()) == pytest.approx((0.8 + 2.0 + 0.0 + 0.5) / 4)
    penalty.backward()
    torch.testing.assert_close(mem.grad, torch.tensor([[-0.25, -0.25, 0.0, -0.25]]))  # descent raises U
    assert float(rate_floor_penalty(quiet, mem, threshold=1.0, floor=0.25)) == 0.0


def test_rate_floor_revives_a_silent_layer():
    torch.manual_seed(0)
    model, (images, targets) = build_localizer(_config()), _rectangles(8)
    with torch.no_grad():
        model.decoder[-1].conv.bias.fill_(-20.0)  # dec3 cannot fire
    biases = {}
    for floor in (0.0, 0.05):
        trial = build_localizer(_config())
        trial.load_state_dict(model.state_dict())
        rule = DECOLLE(rate_floor=floor, online=False)
        rule.train_step(trial, images, targets, OptimizerUpdater(torch.optim.SGD(trial.parameters(), lr=0.5)))
        biases[floor] = float(trial.decoder[-1].conv.bias.detach().mean())
    assert biases[0.0] == pytest.approx(-20.0)  # silent: no surrogate gradient reaches it
    assert biases[0.05] > -20.0 + 0.1  # the floor pushes its membrane up


@pytest.mark.parametrize("encoder_depth", [1, 2])
def test_decolle_reports_head_and_local_losses(encoder_depth):
    torch.manual_seed(0)
    model, (images, targets) = build_localizer(_config(encoder_depth=encoder_depth)), _rectangles(8)
    info = DECOLLE(burn_in=1).train_step(
        model, images, targets, OptimizerUpdater(torch.optim.Adam(model.parameters(), 1e-3))
    )
    for key in (
        "loss",
        "box_loss",
        "class_loss",
        "iou",
        "accuracy",
        "local_loss",
        "local_loss_enc1",
        "local_loss_dec3",
    ):
        assert key in info and math.isfinite(info[key]), key
    local = sum(info[f"local_loss_{name}"] for name in model.config.layer_names())
    assert info["local_loss"] == pytest.approx(local)
    if encoder_depth == 2:  # the inner layer of a level has its own readout and loss
        assert math.isfinite(info["local_loss_enc1_1"])


@pytest.mark.parametrize("rule_name", ["bptt", "decolle"])
def test_a_short_spiking_run_improves_iou(rule_name):
    torch.manual_seed(0)
    model = build_localizer(_config(image_size=SHORT_SIZE))
    images, targets = _rectangles(SHORT_NUM, size=SHORT_SIZE)
    rule = make_rule(rule_name, box_loss="smooth_l1+giou")
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    before = _mean_iou(model, images, targets)
    for _ in range(SHORT_STEPS):
        rule.train_step(model, images, targets, OptimizerUpdater(optimizer))
    after = _mean_iou(model, images, targets)
    assert after > before + 0.2, (before, after)


def test_bptt_trains_the_ann_twin():
    torch.manual_seed(0)
    model = build_ann_twin(_config(image_size=SHORT_SIZE))
    images, targets = _rectangles(SHORT_NUM, size=SHORT_SIZE)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    before = _mean_iou(model, images, targets)
    for _ in range(SHORT_STEPS):
        info = BPTT().train_step(model, images, targets, OptimizerUpdater(optimizer))
    assert _mean_iou(model, images, targets) > before + 0.2, before
    assert set(info) == {"loss", "box_loss", "class_loss", "iou", "accuracy"}


def test_layer_predictions_cover_every_layer_and_the_head():
    torch.manual_seed(0)
    model, (images, _) = build_localizer(_config()), _rectangles(4)
    predictions = DECOLLE().layer_predictions(model, images)
    assert list(predictions) == [*model.config.layer_names(), "head"]
    assert all(p.boxes.shape == (4, 4) and p.logits.shape == (4, 2) for p in predictions.values())
    torch.testing.assert_close(predictions["head"].boxes, model(images).boxes)


@pytest.mark.parametrize("rule", [BPTT(), DECOLLE()], ids=["bptt", "decolle"])
def test_nan_loss_raises_and_leaves_the_weights(rule):
    torch.manual_seed(0)
    model, (images, targets) = build_localizer(_config()), _rectangles(4)
    targets["box"][0, 0] = float("nan")  # (a NaN pixel would not do: NaN > threshold is no spike)
    weight = model.encoder[0].conv.weight.detach().clone()
    with pytest.raises(FloatingPointError, match="diverged"):
        rule.train_step(model, images, targets, OptimizerUpdater(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert torch.equal(model.encoder[0].conv.weight, weight)
    assert issubclass(TrainingDiverged, FloatingPointError)


def test_misuse_raises_clear_errors():
    model, (images, targets) = build_localizer(_config()), _rectangles(2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="BPTT"):
        DECOLLE().train_step(build_ann_twin(_config()), images, targets, OptimizerUpdater(optimizer))
    with pytest.raises(ValueError, match="burn_in"):
        DECOLLE(burn_in=4).train_step(model, images, targets, OptimizerUpdater(optimizer))
    with pytest.raises(ValueError, match="readout_input"):
        DECOLLE(readout_input="membrane")
    with pytest.raises(ValueError, match="rate_ceiling"):
        DECOLLE(rate_floor=0.3, rate_ceiling=0.2)
    with pytest.raises(ValueError, match="readout_scale"):
        DECOLLE(readout_scale=0)
    with pytest.raises(ValueError, match="rate_floor"):
        DECOLLE(rate_floor=-0.1)
    with pytest.raises(ValueError, match="unknown learning rule"):
        make_rule("eprop")
    with pytest.raises(TypeError, match="box_los"):
        make_rule("bptt", box_los="giou")


def test_decolle_is_importable_from_learning():
    from spikelib import learning

    assert learning.DECOLLE is DECOLLE
    assert isinstance(make_rule("decolle", readout_scale=2.0), DECOLLE)


def test_rules_meet_the_trainer_protocol():
    model = build_localizer(_config())  # T = 4
    assert isinstance(BPTT(), LearningRule) and isinstance(DECOLLE(), LearningRule)
    assert (BPTT.through_forward, DECOLLE.through_forward) == (True, False)
    assert BPTT().updates_per_batch(model) == 1
    assert DECOLLE().updates_per_batch(model) == 4 + 1  # T local updates, one of the head
    assert DECOLLE(burn_in=1).updates_per_batch(model) == 3 + 1
    assert DECOLLE(burn_in=1, online=False).updates_per_batch(model) == 1 + 1
    assert DECOLLE(head_steps=0).updates_per_batch(model) == 4
    assert DECOLLE(head_lr=1e-3).updates_per_batch(model) == 4  # the head's own optimizer
    with pytest.raises(TypeError, match="SpikingLocalizer"):
        DECOLLE().updates_per_batch(build_ann_twin(_config()))


@pytest.mark.parametrize("online, updates", [(True, 4), (False, 2)])
def test_decolle_updates_as_often_as_it_announces(online, updates):
    torch.manual_seed(0)
    model, (images, targets) = build_localizer(_config()), _rectangles(4)
    rule = DECOLLE(burn_in=1, online=online)
    update = OptimizerUpdater(torch.optim.SGD(model.parameters(), lr=0.1))
    rule.train_step(model, images, targets, update)
    assert update.steps == updates == rule.updates_per_batch(model)
    assert all(p.grad is None for p in model.parameters())  # every update clears the gradients


def test_decolle_readouts_survive_a_resume_without_state():
    """The readouts come from the rule's seed, so a new rule (a resumed run) draws the same ones."""
    model = build_localizer(_config())
    first, again = DECOLLE(seed=3), DECOLLE(seed=3)
    assert first.state_dict() == {}
    again.load_state_dict(first.state_dict())
    for name, readout in first.readouts_for(model).items():
        assert torch.equal(readout.weight, again.readouts_for(model)[name].weight), name
    other = DECOLLE(seed=4).readouts_for(model)
    assert not torch.equal(other["enc1"].weight, first.readouts["enc1"].weight)


def test_rate_ceiling_penalty_acts_only_above_the_ceiling():
    mem = torch.tensor([[0.2, 3.0, 1.5, 0.5]], requires_grad=True)
    busy = torch.tensor([[0.0, 1.0, 1.0, 0.0]])  # rate 0.5
    penalty = rate_ceiling_penalty(busy, mem, threshold=1.0, ceiling=0.25)
    assert float(penalty.detach()) == pytest.approx((0.0 + 2.0 + 0.5 + 0.0) / 4)
    penalty.backward()
    torch.testing.assert_close(mem.grad, torch.tensor([[0.0, 0.25, 0.25, 0.0]]))  # descent lowers U
    assert float(rate_ceiling_penalty(busy, mem, threshold=1.0, ceiling=0.5)) == 0.0


def test_input_trace_keeps_the_value_and_takes_the_gradient_of_the_trace():
    """I = W * X[t] in the forward pass; dI/dW = the filtered input E[t] = beta E[t-1] + X[t]."""
    torch.manual_seed(0)
    block = build_localizer(_config()).encoder[0]
    xs = [torch.rand(2, 1, 16, 16) for _ in range(3)]
    traces = InputTraces(decay=0.5)
    for t, x in enumerate(xs):
        block.zero_grad()
        cur = traces(0, block, x)
        torch.testing.assert_close(cur, block.current(x))  # the value of this step's input
        weights = torch.randn_like(cur)
        (cur * weights).sum().backward()
        got = block.conv.weight.grad.clone()
        trace = sum(0.5 ** (t - k) * xs[k] for k in range(t + 1))
        block.zero_grad()
        (block.current(trace) * weights).sum().backward()  # block.current is linear in its input (no BN here)
        torch.testing.assert_close(got, block.conv.weight.grad)


def test_readouts_read_the_sigmoid_of_the_membrane_by_default():
    torch.manual_seed(0)
    mem, spk = torch.randn(2, 3), torch.zeros(2, 3)
    torch.testing.assert_close(DECOLLE().layer_input(spk, mem, 1.0), torch.sigmoid(mem - 1.0))
    assert torch.equal(DECOLLE(readout_input="spikes").layer_input(spk, mem, 1.0), spk)


def test_the_head_is_fit_on_frozen_layers():
    """The head phase changes the head only, and leaves every layer trainable afterwards."""
    torch.manual_seed(0)
    model, (images, targets) = build_localizer(_config()), _rectangles(8)
    rule = DECOLLE()
    layers_before = [p.detach().clone() for name, p in model.named_parameters() if not name.startswith("head.")]
    head_before = [p.detach().clone() for p in model.head.parameters()]
    rule.fit_head(model, images, targets, OptimizerUpdater(torch.optim.SGD(model.parameters(), lr=0.1)))
    after = [p for name, p in model.named_parameters() if not name.startswith("head.")]
    assert all(torch.equal(a, b) for a, b in zip(after, layers_before))
    assert any(not torch.equal(a, b) for a, b in zip(model.head.parameters(), head_before))
    assert all(p.requires_grad for p in model.parameters()) and model.training


def _live_hidden_units(model, images) -> float:
    """Share of the head's hidden ReLU units active on at least one image."""
    head = model.head
    with torch.no_grad():
        features = model.record(images).outputs[model.config.layer_names()[-1]].mean(0)
        pooled = torch.nn.functional.adaptive_avg_pool2d(features, head.pool_size) if head.pool_size else features
        hidden = head.mlp[1](head.mlp[0](pooled.flatten(1)))
    return float((hidden > 0).any(0).float().mean())


@pytest.mark.parametrize("head_lr", [None, 3e-4])
def test_the_head_keeps_live_units_after_50_decolle_batches(head_lr):
    torch.manual_seed(0)
    model = build_localizer(_config(image_size=SHORT_SIZE))
    images, targets = _rectangles(32, size=SHORT_SIZE)
    rule = DECOLLE(head_lr=head_lr)
    update = OptimizerUpdater(torch.optim.Adam(model.parameters(), lr=3e-3))
    assert _live_hidden_units(model, images) > 0.5
    for step in range(50):
        batch = slice(8 * (step % 4), 8 * (step % 4) + 8)
        rule.train_step(model, images[batch], {k: v[batch] for k, v in targets.items()}, update)
    assert _live_hidden_units(model, images) > 0.25


def test_the_heads_own_optimizer_survives_a_resume():
    torch.manual_seed(0)
    model, (images, targets) = build_localizer(_config()), _rectangles(4)
    rule = DECOLLE(head_lr=1e-3)
    rule.train_step(model, images, targets, OptimizerUpdater(torch.optim.SGD(model.parameters(), lr=0.0)))
    saved = rule.state_dict()
    assert set(saved) == {"head_optimizer"} and saved["head_optimizer"]["state"]
    resumed = DECOLLE(head_lr=1e-3)
    resumed.load_state_dict(saved)
    optimizer = resumed.head_optimizer_for(model)
    step = optimizer.state_dict()["state"][0]["step"]
    assert float(step) == float(saved["head_optimizer"]["state"][0]["step"]) == 1.0
    with pytest.raises(ValueError, match="head_lr"):
        DECOLLE().head_optimizer_for(model)


def test_moment_readout_reads_the_box_of_a_uniform_active_region():
    readout = MomentReadout((2, 32, 32), num_classes=6, sharpness=50.0)
    act = torch.zeros(1, 2, 32, 32)
    act[0, :, 4:20, 8:30] = 1.0  # rows 4..19, columns 8..29
    prediction = readout(act)
    torch.testing.assert_close(prediction.boxes * 32, torch.tensor([[8.0, 4.0, 30.0, 20.0]]), atol=0.1, rtol=0)
    assert prediction.logits.shape == (1, 6) and list(readout.parameters()) == []
    rule = DECOLLE(readout="moments")
    model = build_localizer(_config())
    assert all(isinstance(r, MomentReadout) for r in rule.readouts_for(model).values())


def test_the_head_phase_trains_an_encoder_class_branch_too():
    """With the class read from the deepest encoder level, the head phase fits the classifier as well."""
    torch.manual_seed(0)
    model, (images, targets) = build_localizer(_config(class_source="encoder")), _rectangles(8)
    classifier_before = [p.detach().clone() for p in model.head.classifier.parameters()]
    layers_before = [p.detach().clone() for name, p in model.named_parameters() if not name.startswith("head.")]
    info = DECOLLE().train_step(model, images, targets, OptimizerUpdater(torch.optim.SGD(model.parameters(), lr=0.1)))
    assert math.isfinite(info["class_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(model.head.classifier.parameters(), classifier_before))
    after = [p for name, p in model.named_parameters() if not name.startswith("head.")]
    assert any(not torch.equal(a, b) for a, b in zip(after, layers_before))  # the local phase still learns
