"""The training engine: schedule, one epoch, evaluation, fit (reproducible, resumable, stops on NaN)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, IterableDataset, Subset

from spikelib.data import VOCLocalization
from spikelib.data.datasets import dataset_classes, dataset_ground_truth, dataset_len
from spikelib.eval.evaluate import evaluate, predict
from spikelib.learning.base import LearningRule, TrainingDiverged
from spikelib.learning.bptt import BPTT
from spikelib.learning.decolle import DECOLLE
from spikelib.learning.losses import localization_loss
from spikelib.models.config import preset
from spikelib.models.localizer import Prediction, build_localizer, decode_boxes
from spikelib.runtime.distributed import DistInfo
from spikelib.training import update as update_module
from spikelib.training.config import TrainConfig
from spikelib.training.trainer import CHECKPOINT, METRICS_LOG, fit, make_train_loader, set_epoch, train_one_epoch
from spikelib.training.update import OptimizerUpdater, gradient_sync, lr_factor

SIZE = 16


pytestmark = pytest.mark.usefixtures("one_thread")


class TinyLocalizer(nn.Module):
    """A small honest localizer for these tests: conv -> ReLU -> pool -> dropout -> linear.

    Follows the model contract (images ``[B, C, H, W]`` in, :class:`Prediction` out); its
    dropout draws from the global generator, as rate coding does, so resuming must restore it.
    """

    def __init__(self, num_classes: int = 6, in_channels: int = 1, dropout: float = 0.2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(8 * 4 * 4, num_classes + 4)

    def forward(self, images: torch.Tensor) -> Prediction:
        features = F.adaptive_avg_pool2d(F.relu(self.conv(images)), 4).flatten(1)
        raw = self.fc(self.drop(features))
        return Prediction(raw[:, : self.num_classes], decode_boxes(raw[:, self.num_classes :]))


class PoisonAfter(nn.Module):
    """Wraps a model; from call ``after`` on, its logits are NaN (a diverging run)."""

    def __init__(self, inner: nn.Module, after: int) -> None:
        super().__init__()
        self.inner, self.after, self.calls = inner, after, 0

    def forward(self, images: torch.Tensor) -> Prediction:
        self.calls += 1
        pred = self.inner(images)
        return pred._replace(logits=pred.logits * float("nan")) if self.calls > self.after else pred


def _datasets(root, augment=True, policy="largest"):
    train = VOCLocalization(root, "SMALL", "train", policy=policy, image_size=SIZE, cache=True, augment=augment)
    val = VOCLocalization(root, "SMALL", "val", policy=policy, image_size=SIZE, cache=True)
    return train, val


def _config(**changes) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 8, "lr": 0.01, "eval_batch_size": 16, "device": "cpu", **changes})


def _without_timing(history):
    """Records without wall-clock fields, NaN (an empty size bucket) as None so that equal runs compare equal."""

    def plain(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    return [{k: plain(v) for k, v in r.items() if "seconds" not in k} for r in history]


def test_lr_factor_warms_up_linearly_then_follows_a_cosine_to_the_floor():
    total, warmup = 100, 0.1
    assert [lr_factor(s, total, "onecycle", warmup) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, total, "onecycle", warmup) == pytest.approx(1.0)
    # halfway through the 90 decay steps the cosine is at 1/2 (plus half the floor)
    assert lr_factor(55, total, "onecycle", warmup) == pytest.approx(0.5 * (1 + 1e-3))
    assert lr_factor(100, total, "onecycle", warmup) == pytest.approx(1e-3)
    assert lr_factor(100, total, "cosine", warmup) == pytest.approx(0.0)
    assert lr_factor(37, total, "constant", warmup) == 1.0
    with pytest.raises(ValueError, match="schedule must be"):
        lr_factor(0, total, "linear")


def test_loader_order_depends_only_on_seed_and_epoch(synth_root):
    train, _ = _datasets(synth_root, augment=False)

    def order(seed, epoch):
        loader = make_train_loader(train, batch_size=4, seed=seed)
        set_epoch(loader, epoch)
        return [int(i) for _, target in loader for i in target["index"]]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    assert sorted(order(0, 0)) == list(range(len(train)))  # 40 images, batches of 4: nothing dropped


def test_set_epoch_reaches_the_datasets_inside_a_concatenation(synth_root):
    train, _ = _datasets(synth_root)
    loader = make_train_loader(ConcatDataset([Subset(train, [0, 1, 2, 3]), train]), batch_size=4, seed=0)
    set_epoch(loader, 5)
    assert train.epoch == 5 and loader.sampler.epoch == 5


def test_ground_truth_and_classes_pass_through_subset_and_concat(synth_root):
    train, val = _datasets(synth_root, augment=False)
    both = ConcatDataset([Subset(train, [3, 7]), val])
    assert dataset_ground_truth(both, 1)["image_id"] == train.ground_truth(7)["image_id"]
    assert dataset_ground_truth(both, 2)["image_id"] == val.ground_truth(0)["image_id"]
    assert dataset_classes(both) == train.classes


def test_dataset_len_counts_map_style_datasets_and_names_one_without_a_length(synth_root):
    train, _ = _datasets(synth_root)
    assert dataset_len(Subset(train, [0, 2])) == 2
    assert dataset_len(ConcatDataset([train, train])) == 2 * len(train)

    class Stream(IterableDataset):
        def __iter__(self):
            yield from ()

    with pytest.raises(TypeError, match="Stream has no len"):
        dataset_len(Stream())


def test_evaluate_scores_perfect_and_half_overlapping_boxes_exactly(synth_root):
    test = VOCLocalization(synth_root, "SMALL", "test", policy="single", image_size=SIZE)
    true_boxes = torch.stack([test[i][1]["box"] for i in range(len(test))])
    true_labels = torch.stack([test[i][1]["label"] for i in range(len(test))])
    perfect = {
        "boxes": true_boxes,
        "labels": true_labels,
        "scores": torch.linspace(0.9, 0.5, len(test)),
        "true_boxes": true_boxes,
        "true_labels": true_labels,
        "indices": torch.arange(len(test)),
    }
    result = evaluate(None, test, predictions=perfect)
    assert (result["miou"], result["corloc"], result["accuracy"]) == pytest.approx((1.0, 1.0, 1.0))
    # policy "single": every image has one non-difficult object, found by its detection
    assert result["map50"] == pytest.approx(1.0)
    assert sum(result[f"count_{s}"] for s in ("small", "medium", "large")) == len(test) == result["num_images"]

    # half as wide, same left edge: IoU exactly 0.5 (still a CorLoc hit, >= 0.5)
    half = true_boxes.clone()
    half[:, 2] = (half[:, 0] + half[:, 2]) / 2
    wrong = (true_labels + 1) % len(test.classes)
    result = evaluate(None, test, predictions={**perfect, "boxes": half, "labels": wrong})
    assert result["miou"] == pytest.approx(0.5, abs=1e-5)
    assert result["accuracy"] == 0.0 and result["map50"] == 0.0


def test_predict_returns_one_box_per_image_in_dataset_order(synth_root):
    _, val = _datasets(synth_root)
    torch.manual_seed(0)
    pred = predict(TinyLocalizer(), val, batch_size=3)
    assert pred["boxes"].shape == (len(val), 4) and pred["indices"].tolist() == list(range(len(val)))
    assert torch.equal(pred["true_boxes"], torch.stack([val[i][1]["box"] for i in range(len(val))]))
    assert ((pred["scores"] > 0) & (pred["scores"] <= 1)).all()


def test_train_one_epoch_returns_image_weighted_means_and_steps_the_schedule(synth_root):
    train, _ = _datasets(synth_root)
    torch.manual_seed(0)
    model = TinyLocalizer()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (step + 1))
    loader = make_train_loader(train, batch_size=8, seed=0)
    stats = train_one_epoch(model, BPTT(), loader, optimizer, scheduler, progress=False)
    assert scheduler.last_epoch == 5 and stats["lr"] == pytest.approx(0.1 / 6)
    assert {"train_loss", "train_iou", "train_accuracy", "train_box_loss", "train_class_loss"} <= set(stats)
    assert 0 <= stats["train_iou"] <= 1 and math.isfinite(stats["train_loss"])


def test_fit_lowers_the_loss_and_logs_every_epoch(synth_root, tmp_path):
    train, val = _datasets(synth_root)
    torch.manual_seed(0)
    seen = []
    history = fit(
        TinyLocalizer(),
        BPTT(),
        train,
        val,
        _config(epochs=4),
        run_dir=tmp_path,
        progress=False,
        callbacks=[seen.append],
    )
    assert [r["epoch"] for r in history] == [1, 2, 3, 4] and seen == history
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.05
    logged = [json.loads(line) for line in (tmp_path / METRICS_LOG).read_text().splitlines()]
    assert [r["val_miou"] for r in logged] == [r["val_miou"] for r in history]
    checkpoint = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert checkpoint["epoch"] == 4 and checkpoint["global_step"] == 4 * 5 and len(checkpoint["history"]) == 4


def test_fit_refuses_validation_data_the_default_cannot_evaluate_before_training(synth_root):
    train, val = _datasets(synth_root)
    model = TinyLocalizer()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TypeError, match="validate="):
        fit(model, BPTT(), train, [val[0]], _config(epochs=1), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    history = fit(
        model, BPTT(), train, [val[0]], _config(epochs=1), validate=lambda m, data: {"items": len(data)}, progress=False
    )
    assert history[0]["val_items"] == 1


def test_same_seed_same_metrics(synth_root):
    train, val = _datasets(synth_root)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(
            _without_timing(fit(TinyLocalizer(), BPTT(), train, val, _config(epochs=2), seed=3, progress=False))
        )
    assert runs[0] == runs[1]
    torch.manual_seed(3)
    other = _without_timing(fit(TinyLocalizer(), BPTT(), train, val, _config(epochs=2), seed=4, progress=False))
    assert other != runs[0]  # the seed reaches the data order


class StopAfter(Exception):
    pass


def test_resume_after_an_interruption_reaches_the_same_metrics(synth_root, tmp_path):
    train, val = _datasets(synth_root)
    cfg = _config(epochs=3)
    torch.manual_seed(0)
    straight = fit(TinyLocalizer(), BPTT(), train, val, cfg, run_dir=tmp_path / "straight", progress=False)

    def interrupt(record):
        if record["epoch"] == 1:
            torch.rand(100)  # draws that a killed process would have made and lost
            raise StopAfter

    torch.manual_seed(0)
    with pytest.raises(StopAfter):
        fit(TinyLocalizer(), BPTT(), train, val, cfg, run_dir=tmp_path / "cut", progress=False, callbacks=[interrupt])
    torch.manual_seed(123)  # a new process: different global state, different initial weights
    resumed = fit(TinyLocalizer(), BPTT(), train, val, cfg, run_dir=tmp_path / "cut", resume=True, progress=False)
    assert _without_timing(resumed) == _without_timing(straight)
    assert len((tmp_path / "cut" / METRICS_LOG).read_text().splitlines()) == 3


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(synth_root, tmp_path):
    train, val = _datasets(synth_root)
    torch.manual_seed(0)
    # 5 steps per epoch and 1 validation batch: NaN from the 9th call on, epoch 2, step 3
    model = PoisonAfter(TinyLocalizer(), after=5 + 1 + 2)
    with pytest.raises(TrainingDiverged) as caught:
        fit(model, BPTT(), train, val, _config(epochs=3), run_dir=tmp_path, progress=False)
    message = str(caught.value)
    assert "epoch 2, step 3" in message and str(tmp_path / CHECKPOINT) in message and "(epoch 1)" in message
    checkpoint = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())
    assert len((tmp_path / METRICS_LOG).read_text().splitlines()) == 1


def test_grad_clip_bounds_the_gradient_norm_of_every_step(synth_root):
    train, _ = _datasets(synth_root)
    torch.manual_seed(0)
    model = TinyLocalizer()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    norms = []
    optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: norms.append(float(sum(p.grad.norm() ** 2 for p in model.parameters()) ** 0.5))
    )
    history = fit(model, BPTT(), train, None, _config(epochs=1, grad_clip=1e-3), optimizer=optimizer, progress=False)
    assert len(norms) == 5 and max(norms) <= 1e-3 + 1e-6
    assert "val_miou" not in history[0]


class RecordingRule:
    """BPTT that notes whether autocast is on in its forward pass, its backward pass and the update."""

    name = "recording"
    through_forward = True

    def __init__(self) -> None:
        self.seen: dict[str, list[bool]] = {"forward": [], "backward": [], "update": []}

    def updates_per_batch(self, model: nn.Module) -> int:
        return 1

    def train_step(self, model, images, targets, update):
        with update.autocast():
            self.seen["forward"].append(torch.is_autocast_enabled("cpu"))
            loss, info = localization_loss(model(images), targets)
        loss.register_hook(lambda grad: self.seen["backward"].append(torch.is_autocast_enabled("cpu")))
        loss.backward()
        update.step()
        return info

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_autocast_covers_the_forward_pass_only(synth_root, monkeypatch):
    # the trainer autocasts on GPUs only; let it autocast to bfloat16 on the CPU here
    monkeypatch.setattr(update_module, "autocast", lambda device, amp: torch.autocast("cpu", dtype=torch.bfloat16))
    train, _ = _datasets(synth_root)
    torch.manual_seed(0)
    model, rule = TinyLocalizer(), RecordingRule()
    assert isinstance(rule, LearningRule)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    optimizer.register_step_pre_hook(lambda *_: rule.seen["update"].append(torch.is_autocast_enabled("cpu")))
    loader = make_train_loader(train, batch_size=8, seed=0)
    train_one_epoch(model, rule, loader, optimizer, amp="bf16", progress=False)
    assert rule.seen["forward"] == [True] * 5
    assert rule.seen["backward"] == [False] * 5 and rule.seen["update"] == [False] * 5


def test_the_schedule_steps_once_per_decolle_update_and_follows_lr_factor(synth_root):
    """DECOLLE online, T = 4, burn-in 1: 3 local updates + 1 of the head per batch, each a step of the schedule."""
    train, _ = _datasets(synth_root)
    torch.manual_seed(0)
    model = build_localizer(preset("tiny", num_steps=4, image_size=SIZE, head_pool=4))
    rule = DECOLLE(burn_in=1, readout_pool=4)
    cfg = _config(epochs=2, lr=0.002, warmup=0.2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lrs = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: lrs.append(opt.param_groups[0]["lr"]))
    history = fit(model, rule, train, None, cfg, optimizer=optimizer, progress=False)
    total = 2 * 5 * (3 + 1)  # epochs x batches x updates per batch (local ones and the head's)
    assert len(lrs) == total
    assert lrs == pytest.approx([cfg.lr * lr_factor(step, total, cfg.schedule, cfg.warmup) for step in range(total)])
    assert history[-1]["lr"] == pytest.approx(cfg.lr * lr_factor(total, total, cfg.schedule, cfg.warmup))


def test_the_updater_clips_steps_the_schedule_and_clears_the_gradients():
    weight = nn.Parameter(torch.tensor([1.0, 1.0]))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    update = OptimizerUpdater(optimizer, scheduler, grad_clip=0.5)
    weight.grad = torch.tensor([3.0, 4.0])  # norm 5, clipped to 0.5
    update.step()
    assert weight.detach().tolist() == pytest.approx([1 - 0.3, 1 - 0.4])
    assert weight.grad is None and update.steps == 1 and optimizer.param_groups[0]["lr"] == 0.5
    with update.autocast():  # amp "none": no mixed precision anywhere
        assert not torch.is_autocast_enabled("cpu")


def test_the_rule_decides_between_ddp_and_gradient_averaging():
    two = DistInfo(rank=0, world_size=2, backend="gloo")
    assert gradient_sync(BPTT(), two) == "ddp"
    assert gradient_sync(DECOLLE(), two) == "average"
    assert gradient_sync(BPTT(), DistInfo()) == gradient_sync(DECOLLE(), DistInfo()) == "none"
