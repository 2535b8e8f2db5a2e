"""The LIF neuron: hand-worked cases, equality with snntorch.Leaky, module = function."""

import doctest
import math

import pytest
import snntorch as snn
import snntorch.utils
import torch
from snntorch import surrogate as snn_surrogate
from torch import nn

import spikelib.snn.neurons
from spikelib.snn.neurons import (
    LIF,
    LIFParams,
    LIFState,
    check_lif_params,
    firing_rate,
    lif_seq,
    lif_seq_with_mem,
    lif_step,
    reset_states,
)
from spikelib.snn.surrogate import ArcTan, FastSigmoid, Heaviside

NUM_STEPS = 25


def _random_current(shape, seed, scale=0.8):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * scale


def _snntorch_run(leaky, cur_seq):
    """The usual snnTorch loop: explicit mem, one call per step."""
    mem = leaky.reset_mem()
    spk_rec, mem_rec = [], []
    for step in range(cur_seq.shape[0]):
        spk, mem = leaky(cur_seq[step], mem)
        spk_rec.append(spk)
        mem_rec.append(mem)
    return torch.stack(spk_rec), torch.stack(mem_rec)


@pytest.mark.parametrize(
    ("reset", "spikes", "mems"),
    [
        ("subtract", [0, 0, 1, 0, 0, 0], [0.6, 0.9, 1.05, 0.125, 0.6625, 0.93125]),
        ("zero", [0, 0, 1, 0, 0, 1], [0.6, 0.9, 1.05, 0.6, 0.9, 1.05]),
        ("none", [0, 0, 1, 1, 1, 1], [0.6, 0.9, 1.05, 1.125, 1.1625, 1.18125]),
    ],
)
def test_hand_worked_trace_beta_half_constant_input(reset, spikes, mems):
    # subtract: U = 0.5 U + 0.6 - S_prev: 0.6, 0.9, 1.05 (fires), 0.525 + 0.6 - 1 = 0.125, ...
    # zero: after the spike U restarts from 0.6; none: U -> 1.2, firing every step
    cur_seq = torch.full((6, 1), 0.6, dtype=torch.float64)
    spk_seq, mem_seq = lif_seq_with_mem(cur_seq, LIFParams(beta=0.5, threshold=1.0, reset=reset))
    assert spk_seq.flatten().tolist() == spikes
    assert mem_seq.flatten().tolist() == pytest.approx(mems, abs=1e-12)


def test_lif_step_is_pure_and_returns_typed_state():
    params = LIFParams(beta=0.9, threshold=1.0, reset="subtract")
    state = LIFState(torch.tensor([0.5, 1.2]))
    before = state.mem.clone()
    spk, new_state = lif_step(torch.tensor([0.2, 0.0]), state, params)
    assert torch.equal(state.mem, before)  # input state untouched
    assert isinstance(new_state, LIFState)
    # first neuron: 0.45 + 0.2 = 0.65; second fired last step: 1.08 + 0 - 1 = 0.08
    torch.testing.assert_close(new_state.mem, torch.tensor([0.65, 0.08]))
    assert spk.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_matches_snntorch_leaky_spikes_membrane_and_input_gradient(reset):
    cur_seq = _random_current((NUM_STEPS, 16, 32), seed=1)
    weights = torch.randn(32, generator=torch.Generator().manual_seed(2))
    leaky = snn.Leaky(beta=0.5, spike_grad=snn_surrogate.fast_sigmoid(slope=25), reset_mechanism=reset)
    ours = LIF(beta=0.5, threshold=1.0, reset=reset, spike_fn=FastSigmoid(slope=25))

    x_theirs = cur_seq.clone().requires_grad_()
    spk_theirs, mem_theirs = _snntorch_run(leaky, x_theirs)
    x_ours = cur_seq.clone().requires_grad_()
    spk_ours, mem_ours = ours.forward_with_mem(x_ours)

    assert 0.05 < spk_theirs.mean() < 0.95  # the comparison sees spikes and silences
    assert torch.equal(spk_ours, spk_theirs)
    torch.testing.assert_close(mem_ours, mem_theirs, rtol=0, atol=1e-6)
    # a loss through both outputs, so gradients flow via spikes (surrogate) and membrane
    for spk, mem in [(spk_theirs, mem_theirs), (spk_ours, mem_ours)]:
        ((spk * weights).sum() + (mem**2).sum()).backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=0, atol=1e-6)


class _SnnTorchNet(nn.Module):
    def __init__(self, reset):
        super().__init__()
        grad = snn_surrogate.fast_sigmoid(slope=25)
        self.fc1, self.fc2 = nn.Linear(20, 30), nn.Linear(30, 5)
        self.lif1 = snn.Leaky(beta=0.5, spike_grad=grad, reset_mechanism=reset)
        self.lif2 = snn.Leaky(beta=0.5, spike_grad=grad, reset_mechanism=reset)

    def forward(self, x_seq):
        mem1, mem2 = self.lif1.reset_mem(), self.lif2.reset_mem()
        spk_rec, mem_rec = [], []
        for step in range(x_seq.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x_seq[step]), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk_rec.append(spk2)
            mem_rec.append(mem2)
        return torch.stack(spk_rec), torch.stack(mem_rec)


class _OurNet(nn.Module):
    def __init__(self, reset):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(20, 30), nn.Linear(30, 5)
        self.lif1, self.lif2 = LIF(0.5, reset=reset), LIF(0.5, reset=reset)

    def forward(self, x_seq):  # Linear applies to [T, B, F] directly: time is a batch axis
        return self.lif2.forward_with_mem(self.fc2(self.lif1(self.fc1(x_seq))))


def _train_one_step(net, x_seq, targets):
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    spk_seq, mem_seq = net(x_seq)
    # membrane loss (as in the snnTorch tutorials) plus a spike-count term, so that the
    # surrogates of both layers carry gradient
    loss = sum(nn.functional.cross_entropy(mem, targets) for mem in mem_seq)
    loss = loss + 0.1 * spk_seq.mean(0).sum()
    optimizer.zero_grad()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    optimizer.step()
    return spk_seq, loss, grads


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_two_layer_net_matches_snntorch_through_one_training_step(reset):
    torch.manual_seed(0)
    theirs = _SnnTorchNet(reset)
    with torch.no_grad():  # stronger weights than the default init, so both layers spike
        theirs.fc1.weight.mul_(3.0)
        theirs.fc2.weight.mul_(4.0)
    ours = _OurNet(reset)
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if k.startswith("fc")})
    x_seq = _random_current((NUM_STEPS, 8, 20), seed=3, scale=1.0)
    targets = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])

    spk_theirs, loss_theirs, grads_theirs = _train_one_step(theirs, x_seq, targets)
    spk_ours, loss_ours, grads_ours = _train_one_step(ours, x_seq, targets)
    assert 0.02 < spk_theirs.mean() < 0.98
    assert torch.equal(spk_ours, spk_theirs)
    assert loss_ours.item() == pytest.approx(loss_theirs.item(), abs=1e-6)
    for name, grad in grads_ours.items():
        assert grad.abs().sum() > 0, name
        # rtol: our Linear sums the weight gradient over T*B in one matmul, snnTorch step
        # by step; the summation order differs in the 7th significant digit
        torch.testing.assert_close(grad, grads_theirs[name], rtol=1e-6, atol=1e-6)
    # after the update both nets still agree
    spk_after_theirs, mem_after_theirs = theirs(x_seq)
    spk_after_ours, mem_after_ours = ours(x_seq)
    assert torch.equal(spk_after_ours, spk_after_theirs)
    torch.testing.assert_close(mem_after_ours, mem_after_theirs, rtol=0, atol=1e-5)


def test_module_equals_functional_and_step_loop():
    lif = LIF(beta=0.8, threshold=0.7, reset="zero", spike_fn=ArcTan(alpha=2.0))
    cur_seq = _random_current((NUM_STEPS, 3, 4, 5), seed=4)
    spk_fn, mem_fn = lif_seq_with_mem(cur_seq, LIFParams(0.8, 0.7, "zero"), ArcTan(alpha=2.0))
    spk_mod, mem_mod = lif.forward_with_mem(cur_seq)
    assert torch.equal(lif(cur_seq), spk_fn)
    assert torch.equal(spk_mod, spk_fn) and torch.equal(mem_mod, mem_fn)
    state = lif.initial_state(cur_seq[0])
    for step, cur in enumerate(cur_seq):
        spk, state = lif.step(cur, state)
        assert torch.equal(spk, spk_fn[step]) and torch.equal(state.mem, mem_fn[step])


def test_lif_seq_returns_final_state_and_runs_in_chunks():
    params = LIFParams(beta=0.9, threshold=1.0, reset="subtract")
    cur_seq = _random_current((NUM_STEPS, 6), seed=5)
    spk_whole, final = lif_seq(cur_seq, params)
    spk_a, state_a = lif_seq(cur_seq[:10], params)
    spk_b, state_b = lif_seq(cur_seq[10:], params, state=state_a)
    assert torch.equal(torch.cat([spk_a, spk_b]), spk_whole)
    assert torch.equal(state_b.mem, final.mem)
    _, mem_seq = lif_seq_with_mem(cur_seq, params)
    assert torch.equal(final.mem, mem_seq[-1])


def test_tensor_beta_broadcasts_per_channel():
    beta = torch.tensor([0.0, 1.0]).view(2, 1)
    cur_seq = torch.full((3, 2, 1), 0.4)
    _, mem_seq = lif_seq_with_mem(cur_seq, LIFParams(beta=beta, threshold=1.0))
    assert mem_seq[:, 0, 0].tolist() == pytest.approx([0.4, 0.4, 0.4])  # no memory
    assert mem_seq[:, 1, 0].tolist() == pytest.approx([0.4, 0.8, 1.2])  # perfect integrator


def test_forward_keeps_no_state_between_calls_even_when_nested():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(4, 6), LIF(0.9))
    model = nn.Sequential(nn.Sequential(block), nn.Linear(6, 2), LIF(0.9))
    nn.init.constant_(model[1].bias, 0.5)  # the output layer fires on its bias alone
    x_seq = _random_current((NUM_STEPS, 3, 4), seed=6, scale=3.0)
    first = model(x_seq)
    assert first.sum() > 0
    assert torch.equal(model(x_seq), first)  # a second batch starts from rest
    assert all(not name.endswith("mem") for name in model.state_dict())
    assert list(model.buffers()) == []
    assert reset_states(model) == 0  # nothing to reset


def _stepped_snntorch_net(nested: bool) -> nn.Module:
    """Linear -> Leaky(init_hidden=True), with the neuron inside a block if ``nested``."""
    leaky = snn.Leaky(beta=0.9, init_hidden=True)
    if nested:
        return nn.Sequential(nn.Linear(3, 4), nn.Sequential(leaky))
    return nn.Sequential(nn.Linear(3, 4), leaky)


def _leakies(model):
    return [m for m in model.modules() if isinstance(m, snn.Leaky)]


def _charge(model):
    torch.manual_seed(0)
    model(torch.ones(2, 3))
    assert all(m.mem.abs().sum() > 0 for m in _leakies(model))


def test_snntorch_utils_reset_misses_nested_neurons_and_resets_unrelated_ones():
    """Documents snnTorch issue #438 with snntorch 1.0.0 (why reset_states exists)."""
    nested, flat, unrelated = (_stepped_snntorch_net(n) for n in (True, False, False))
    for model in (nested, flat, unrelated):
        _charge(model)
    snntorch.utils.reset(nested)
    assert _leakies(nested)[0].mem.abs().sum() > 0  # missed: it is inside a block
    snntorch.utils.reset(flat)
    assert _leakies(flat)[0].mem.abs().sum() == 0
    assert _leakies(unrelated)[0].mem.abs().sum() == 0  # collateral: another network


def test_reset_states_reaches_nested_neurons_and_spares_other_networks():
    nested, unrelated = _stepped_snntorch_net(True), _stepped_snntorch_net(False)
    _charge(nested)
    _charge(unrelated)
    assert reset_states(nested) == 1
    assert _leakies(nested)[0].mem.abs().sum() == 0
    assert _leakies(unrelated)[0].mem.abs().sum() > 0


def test_reset_states_calls_reset_state_on_any_nested_module():
    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.resets = 0

        def reset_state(self):
            self.resets += 1

    deep, other = Counter(), Counter()
    model = nn.Sequential(nn.Linear(2, 2), nn.ModuleList([nn.Sequential(deep)]), LIF())
    assert reset_states(model) == 1
    assert (deep.resets, other.resets) == (1, 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta": 1.5}, r"beta must lie in \[0, 1\], got 1.5"),
        ({"beta": -0.1}, r"beta must lie in \[0, 1\], got -0.1"),
        ({"threshold": 0.0}, r"threshold must be > 0, got 0.0"),
        ({"reset": "to_zero"}, r"one of \['subtract', 'zero', 'none'\], got 'to_zero'"),
    ],
)
def test_invalid_parameters_raise_with_value_and_allowed(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LIF(**kwargs)
    with pytest.raises(ValueError, match=match):
        check_lif_params(LIFParams()._replace(**kwargs))


def test_invalid_inputs_raise():
    with pytest.raises(TypeError, match="spike_fn must be a spikelib"):
        LIF(spike_fn=snn_surrogate.fast_sigmoid(slope=25))
    with pytest.raises(ValueError, match=r"T >= 1, got shape \(0, 3\)"):
        lif_seq(torch.zeros(0, 3), LIFParams())
    with pytest.raises(TypeError, match="expected LIFParams, got tuple"):
        lif_seq(torch.zeros(2, 3), (0.5, 1.0, "subtract"))


def test_repr_shows_parameters():
    assert repr(LIF()) == ("LIF(beta=0.5, threshold=1.0, reset='subtract', spike_fn=FastSigmoid(slope=25.0))")


def test_heaviside_spike_fn_gives_zero_weight_gradient():
    torch.manual_seed(0)
    fc = nn.Linear(4, 3)
    x_seq = _random_current((NUM_STEPS, 2, 4), seed=7, scale=3.0)
    for spike_fn, learns in [(Heaviside(), False), (FastSigmoid(), True)]:
        fc.zero_grad()
        spk_seq = LIF(0.9, spike_fn=spike_fn)(fc(x_seq))
        assert spk_seq.sum() > 0
        spk_seq.sum().backward()
        assert bool(fc.weight.grad.abs().sum() > 0) == learns


# --- f-I curve -------------------------------------------------------------------


def test_firing_rate_without_leak_is_current_over_threshold():
    """beta = 1, subtract: 0 < U <= theta + I always, so |count - T I / theta| <= 1."""
    num_steps, threshold = 1000, 1.5
    cur = torch.linspace(0.0, 3.0, 61, dtype=torch.float64)
    rate = firing_rate(cur, num_steps, LIFParams(beta=1.0, threshold=threshold))
    expected = (cur / threshold).clamp(max=1.0)
    assert (rate - expected).abs().max() <= 1 / num_steps + 1e-12
    assert rate[cur > threshold].eq(1.0).all()  # above threshold: a spike every step


@pytest.mark.parametrize("beta", [0.5, 0.8, 0.95])
def test_leaky_neuron_is_silent_below_rheobase_and_fires_above(beta):
    threshold = 1.0
    rheobase = threshold * (1 - beta)
    cur = torch.tensor([0.0, 0.5, 0.999, 1.0, 1.02, 1.5], dtype=torch.float64) * rheobase
    rate = firing_rate(cur, 2000, LIFParams(beta=beta, threshold=threshold))
    assert rate[:4].eq(0).all()  # at or below I = theta (1 - beta): U -> I/(1-beta) <= theta
    assert (rate[4:] > 0).all()


@pytest.mark.parametrize("beta", [1.0, 0.9, 0.6])
def test_zero_reset_firing_rate_matches_closed_form(beta):
    """Reset to zero restarts from rest: spikes every n* steps, n* the first n with
    I (1 - beta^n) / (1 - beta) > theta (n I > theta without leak); count = floor(T / n*)."""
    threshold, num_steps = 1.0, 500
    cur = torch.tensor([0.13, 0.3, 0.47, 0.71, 1.3], dtype=torch.float64)
    rate = firing_rate(cur, num_steps, LIFParams(beta=beta, threshold=threshold, reset="zero"))
    for current, measured in zip(cur.tolist(), rate.tolist()):
        if beta == 1.0:
            n_star = math.floor(threshold / current) + 1
        elif current <= threshold * (1 - beta):
            assert measured == 0.0
            continue
        else:
            n_star = math.floor(math.log(1 - threshold * (1 - beta) / current) / math.log(beta)) + 1
        assert measured == math.floor(num_steps / n_star) / num_steps, (current, n_star)


def test_firing_rate_validates_num_steps_and_accepts_floats():
    with pytest.raises(ValueError, match="num_steps must be an int >= 1, got 0"):
        firing_rate(1.0, 0, LIFParams())
    assert firing_rate(2.0, 10, LIFParams()).item() == 1.0


def test_docstring_examples_run():
    result = doctest.testmod(spikelib.snn.neurons)
    assert result.attempted >= 2 and result.failed == 0
