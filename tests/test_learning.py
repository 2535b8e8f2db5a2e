"""Classifiers: spike-count readout, spike counting, ClassifierBPTT on the generic trainer, fit_classifier."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spikelib.data.digits import load_digits_split
from spikelib.eval.activity import SpikeCounter
from spikelib.learning.base import LearningRule, TrainingDiverged
from spikelib.learning.bptt import ClassifierBPTT, spike_count
from spikelib.models.mlp import SpikingMLP
from spikelib.snn.encoding import direct_encode
from spikelib.snn.neurons import LIF
from spikelib.snn.surrogate import FastSigmoid, Heaviside
from spikelib.training import trainer
from spikelib.training.classifier import evaluate_classifier, fit_classifier
from spikelib.training.trainer import train_one_epoch

NUM_STEPS = 10
ENCODE = functools.partial(direct_encode, num_steps=NUM_STEPS)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(test_fraction=0.2, seed=0)


def _loaders(digits, batch_size=64, seed=0):
    train, test = digits
    generator = torch.Generator().manual_seed(seed)
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator),
        DataLoader(test, batch_size=len(test)),
    )


def _mlp(spike_fn=FastSigmoid(25.0), seed=0):
    torch.manual_seed(seed)
    return SpikingMLP(64, 64, 10, spike_fn=spike_fn)


def test_spike_count_sums_over_time():
    spk_seq = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]], [[0.0, 1.0]], [[1.0, 0.0]]])  # [T=4, B=1, C=2]
    assert spike_count(spk_seq).tolist() == [[3.0, 2.0]]


def test_spike_count_rejects_a_single_step():
    with pytest.raises(ValueError, match=r"\[T, B, C\], got \(3,\)"):
        spike_count(torch.zeros(3))


def test_spike_counter_hand_worked_rates_and_removes_hooks():
    # LIF(beta=0.5) on a constant 0.6 spikes at step 2 of 4: rate 1/4 (see LIF's docstring)
    model = nn.Sequential(LIF(beta=0.5), nn.Identity())
    cur_seq = torch.full((4, 3, 2), 0.6)
    with SpikeCounter(model) as counter:
        model(cur_seq)
        model(cur_seq)
    assert counter.spikes == {"0": 12.0}
    assert counter.neuron_steps == {"0": 48}
    assert counter.layer_rates() == {"0": 0.25}
    model(cur_seq)  # outside the block: not counted
    assert counter.mean_rate() == 0.25


def test_spike_counter_weighs_layers_by_neuron_steps():
    model = SpikingMLP(4, 3, 2)
    counter = SpikeCounter(model)
    counter.spikes = {"lif1": 6.0, "lif2": 0.0}
    counter.neuron_steps = {"lif1": 30, "lif2": 20}
    assert counter.mean_rate() == pytest.approx(6 / 50)
    assert counter.layer_rates() == {"lif1": pytest.approx(0.2), "lif2": 0.0}


def test_spike_counter_needs_a_lif_layer():
    with pytest.raises(ValueError, match="Linear has no spikelib.snn.neurons.LIF layer"):
        SpikeCounter(nn.Linear(2, 2))


def test_evaluate_reports_accuracy_loss_and_spike_rates_of_the_model(digits):
    model = _mlp()
    _, test_loader = _loaders(digits)
    metrics = evaluate_classifier(model, test_loader, ENCODE)
    images, labels = digits[1].tensors
    with torch.no_grad():
        record = model.record(ENCODE(images))
    scores = record.output_spk_seq.sum(0)
    assert metrics["num_samples"] == 360
    assert metrics["accuracy"] == pytest.approx((scores.argmax(1) == labels).float().mean().item())
    assert metrics["loss"] == pytest.approx(F.cross_entropy(scores, labels).item(), rel=1e-6)
    assert metrics["layer_spike_rates"]["lif1"] == pytest.approx(record.hidden_spk_seq.mean().item())
    assert metrics["layer_spike_rates"]["lif2"] == pytest.approx(record.output_spk_seq.mean().item())
    total = record.hidden_spk_seq.sum() + record.output_spk_seq.sum()
    numel = record.hidden_spk_seq.numel() + record.output_spk_seq.numel()
    assert metrics["spike_rate"] == pytest.approx((total / numel).item())


def test_short_training_on_digits_beats_chance_by_far(digits):
    model = _mlp()
    train_loader, test_loader = _loaders(digits)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    before = evaluate_classifier(model, test_loader, ENCODE)["accuracy"]
    history = fit_classifier(model, train_loader, test_loader, optimizer, ENCODE, num_epochs=4)
    after = history[-1]["test_accuracy"]
    assert before < 0.3  # untrained: about chance (0.1)
    assert after >= 0.8, after
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_heaviside_network_does_not_learn(digits):
    model = _mlp(Heaviside())
    weights_before = [p.detach().clone() for p in model.parameters()]
    train_loader, test_loader = _loaders(digits)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    batches = []
    train_one_epoch(model, ClassifierBPTT(ENCODE), train_loader, optimizer, progress=False, on_batch=batches.append)
    assert len(batches) == math.ceil(1437 / 64)
    for before, after in zip(weights_before, model.parameters()):
        assert torch.equal(before, after)  # zero gradient: Adam takes no step
    assert evaluate_classifier(model, test_loader, ENCODE)["accuracy"] < 0.3


def test_train_epoch_reports_sample_weighted_loss(digits):
    model = _mlp()
    train_loader, _ = _loaders(digits, batch_size=500)  # batches of 500, 500, 437
    batches = []
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    epoch = train_one_epoch(
        model, ClassifierBPTT(ENCODE), train_loader, optimizer, progress=False, on_batch=batches.append
    )
    sizes = [500, 500, 437]
    expected = sum(batch["loss"] * size for batch, size in zip(batches, sizes)) / 1437
    assert len(batches) == 3 and epoch["train_loss"] == pytest.approx(expected)
    assert 0.0 <= epoch["train_spike_rate"] <= 1.0


def _nan_loss(scores, labels):
    return F.cross_entropy(scores, labels) * float("nan")


def test_nan_loss_raises_before_updating_weights(digits):
    model = _mlp()
    weights_before = [p.detach().clone() for p in model.parameters()]
    train_loader, test_loader = _loaders(digits)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TrainingDiverged, match="epoch 1, step 1: the loss is nan at this batch"):
        fit_classifier(model, train_loader, test_loader, optimizer, ENCODE, num_epochs=2, loss_fn=_nan_loss)
    for before, after in zip(weights_before, model.parameters()):
        assert torch.equal(before, after)


def test_infinite_loss_raises_in_an_epoch():
    model = SpikingMLP(4, 3, 2)
    loader = [(torch.rand(2, 4), torch.tensor([0, 1]))]
    rule = ClassifierBPTT(ENCODE, loss_fn=lambda scores, labels: scores.sum() + float("inf"))
    with pytest.raises(TrainingDiverged, match="inf"):
        train_one_epoch(model, rule, loader, torch.optim.SGD(model.parameters(), lr=0.1), progress=False)


def test_fit_calls_back_once_per_epoch_with_the_record(digits):
    model = _mlp()
    small = TensorDataset(*(t[:128] for t in digits[0].tensors))
    train_loader, test_loader = _loaders((small, small))
    seen = []
    history = fit_classifier(
        model,
        train_loader,
        test_loader,
        torch.optim.Adam(model.parameters()),
        ENCODE,
        num_epochs=3,
        callback=seen.append,
    )
    assert seen == history
    assert [record["epoch"] for record in history] == [1, 2, 3]
    assert {
        "train_loss",
        "train_accuracy",
        "train_spike_rate",
        "batch_losses",
        "test_loss",
        "test_accuracy",
        "test_spike_rate",
        "seconds",
    } <= set(history[0])


@pytest.mark.parametrize("num_epochs", [0, 1.5, True])
def test_fit_rejects_bad_num_epochs(num_epochs):
    model = SpikingMLP(4, 3, 2)
    with pytest.raises(ValueError, match="num_epochs must be an int >= 1"):
        fit_classifier(model, [], [], torch.optim.SGD(model.parameters(), lr=0.1), ENCODE, num_epochs)


def test_empty_loader_raises():
    model = SpikingMLP(4, 3, 2)
    with pytest.raises(ValueError, match="no batch"):
        evaluate_classifier(model, [], ENCODE)


def test_classifier_rule_meets_the_trainer_protocol():
    rule = ClassifierBPTT(ENCODE)
    assert isinstance(rule, LearningRule)
    assert rule.through_forward and rule.updates_per_batch(SpikingMLP(4, 3, 2)) == 1
    assert rule.state_dict() == {}
    with pytest.raises(TypeError, match="encode must be callable"):
        ClassifierBPTT(None)


def test_classifier_rule_trains_a_non_spiking_model_too():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    rule = ClassifierBPTT(encode=nn.Identity(), readout=nn.Identity())
    loader = [(torch.rand(8, 4), torch.randint(0, 2, (8,))) for _ in range(3)]
    stats = train_one_epoch(model, rule, loader, torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    assert set(stats) == {"train_loss", "train_accuracy", "lr", "train_seconds"}  # no spikes to count


def test_fit_classifier_trains_through_the_generic_train_one_epoch(digits, monkeypatch):
    calls = []

    def spy(model, rule, loader, *args, **kwargs):
        calls.append(rule)
        return train_one_epoch(model, rule, loader, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", spy)
    model = _mlp()
    small = TensorDataset(*(t[:128] for t in digits[0].tensors))
    train_loader, test_loader = _loaders((small, small))
    fit_classifier(model, train_loader, test_loader, torch.optim.Adam(model.parameters()), ENCODE, num_epochs=2)
    assert len(calls) == 2 and all(isinstance(rule, ClassifierBPTT) for rule in calls)


def test_fit_classifier_equals_a_hand_written_bptt_loop(digits):
    """Same loader order, same Adam, constant learning rate: losses and weights match bit for bit."""
    small = TensorDataset(*(t[:192] for t in digits[0].tensors))
    losses, weights = {}, {}
    for way in ("fit_classifier", "by hand"):
        model = _mlp()
        train_loader, test_loader = _loaders((small, small))
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        if way == "fit_classifier":
            history = fit_classifier(model, train_loader, test_loader, optimizer, ENCODE, num_epochs=2)
            losses[way] = [loss for record in history for loss in record["batch_losses"]]
        else:
            losses[way] = []
            for _ in range(2):
                for images, labels in train_loader:
                    loss = F.cross_entropy(spike_count(model(ENCODE(images))), labels)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    losses[way].append(loss.item())
        weights[way] = [p.detach().clone() for p in model.parameters()]
    assert len(losses["by hand"]) == 6 and losses["fit_classifier"] == losses["by hand"]
    assert all(torch.equal(a, b) for a, b in zip(weights["fit_classifier"], weights["by hand"]))
    assert not torch.equal(weights["by hand"][0], next(_mlp().parameters()))  # it did learn
