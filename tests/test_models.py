"""spikelib.models.mlp.SpikingMLP: shapes, no state between calls, surrogate gradients, snnTorch twin."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import surrogate as snn_surrogate

from spikelib.models.mlp import MLPRecord, SpikingMLP
from spikelib.snn.surrogate import ArcTan, FastSigmoid, Heaviside

NUM_STEPS, BATCH = 8, 5


def _digit_like_input(seed: int = 0) -> torch.Tensor:
    """[T, B, 1, 8, 8] in [0, 1], the same image at every step (direct code)."""
    images = torch.rand(BATCH, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return images.expand(NUM_STEPS, *images.shape)


def _model(spike_fn=FastSigmoid(25.0), seed: int = 0) -> SpikingMLP:
    """A small model with weights scaled x3, so that both layers spike (about 20 % / 10 %)."""
    torch.manual_seed(seed)
    model = SpikingMLP(64, 32, 10, spike_fn=spike_fn)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0)
    return model


def test_forward_maps_image_sequence_to_output_spike_sequence():
    spk_seq = _model()(_digit_like_input())
    assert spk_seq.shape == (NUM_STEPS, BATCH, 10)
    assert set(spk_seq.unique().tolist()) <= {0.0, 1.0}


def test_flat_and_image_inputs_give_the_same_spikes():
    model, x_seq = _model(), _digit_like_input()
    assert torch.equal(model(x_seq), model(x_seq.flatten(2)))


def test_record_matches_forward_and_has_layer_shapes():
    model, x_seq = _model(), _digit_like_input()
    record = model.record(x_seq)
    assert isinstance(record, MLPRecord)
    assert record.hidden_spk_seq.shape == (NUM_STEPS, BATCH, 32)
    assert record.output_mem_seq.shape == (NUM_STEPS, BATCH, 10)
    assert torch.equal(record.output_spk_seq, model(x_seq))
    # the output spikes are the membrane above threshold
    assert torch.equal(record.output_spk_seq, (record.output_mem_seq > 1.0).float())


def test_each_call_starts_from_rest():
    model, x_seq = _model(), _digit_like_input()
    first = model(x_seq)
    assert first.sum() > 0  # the test needs some activity to mean something
    assert torch.equal(model(x_seq), first)
    assert torch.equal(model(x_seq[:3]), first[:3])


def test_number_of_steps_comes_from_the_input():
    model, x_seq = _model(), _digit_like_input()
    assert model(x_seq[:2]).shape == (2, BATCH, 10)


def test_surrogate_gradient_reaches_first_layer_weights():
    model = _model(ArcTan())
    loss = F.cross_entropy(model(_digit_like_input()).sum(0), torch.arange(BATCH))
    loss.backward()
    assert model.fc1.weight.grad is not None
    assert model.fc1.weight.grad.abs().sum() > 0
    assert model.fc2.weight.grad.abs().sum() > 0


def test_heaviside_gives_exactly_zero_gradient_everywhere():
    model = _model(Heaviside())
    spk_seq = model(_digit_like_input())
    loss = F.cross_entropy(spk_seq.sum(0), torch.arange(BATCH))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert torch.count_nonzero(parameter.grad) == 0, name


def test_matches_snntorch_network_spikes_and_gradients():
    model, x_seq = _model(seed=3), _digit_like_input(seed=4)
    labels = torch.tensor([0, 3, 5, 7, 9])
    loss = F.cross_entropy(model(x_seq).sum(0), labels)
    loss.backward()

    fc1, fc2 = (torch.nn.Linear(64, 32), torch.nn.Linear(32, 10))
    fc1.load_state_dict(model.fc1.state_dict())
    fc2.load_state_dict(model.fc2.state_dict())
    lif1 = snn.Leaky(beta=0.5, spike_grad=snn_surrogate.fast_sigmoid(slope=25))
    lif2 = snn.Leaky(beta=0.5, spike_grad=snn_surrogate.fast_sigmoid(slope=25))
    mem1, mem2, spk_rec = lif1.reset_mem(), lif2.reset_mem(), []
    for step in range(NUM_STEPS):
        spk1, mem1 = lif1(fc1(x_seq[step].flatten(1)), mem1)
        spk2, mem2 = lif2(fc2(spk1), mem2)
        spk_rec.append(spk2)
    reference_spk_seq = torch.stack(spk_rec)
    F.cross_entropy(reference_spk_seq.sum(0), labels).backward()

    assert reference_spk_seq.sum() > 0
    assert torch.equal(model(x_seq), reference_spk_seq)
    torch.testing.assert_close(model.fc1.weight.grad, fc1.weight.grad)
    torch.testing.assert_close(model.fc2.weight.grad, fc2.weight.grad)


def test_wrong_number_of_input_features_names_both():
    with pytest.raises(ValueError, match="49 features .* num_inputs=64"):
        _model()(torch.zeros(NUM_STEPS, BATCH, 7, 7))


def test_input_without_time_axis_raises():
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\].*\(5, 64\)"):
        _model()(torch.zeros(BATCH, 64))


@pytest.mark.parametrize("kwargs", [{"num_hidden": 0}, {"num_inputs": 2.5}, {"num_outputs": True}])
def test_bad_sizes_raise(kwargs):
    sizes = {"num_inputs": 64, "num_hidden": 32, "num_outputs": 10} | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SpikingMLP(**sizes)


def test_repr_shows_neuron_settings():
    text = repr(SpikingMLP(64, 32, 10, beta=0.9, spike_fn=FastSigmoid(5.0)))
    assert "beta=0.9" in text and "FastSigmoid(slope=5.0)" in text
