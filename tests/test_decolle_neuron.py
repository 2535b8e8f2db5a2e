"""DECOLLE's neuron (spikelib.snn.decolle_neuron) against its equations transcribed by hand.

Kaiser, Mostafa & Neftci 2020, eq. 4, in the update order of the reference code's LIFLayer:
Q <- beta Q + (1 - beta) X;  P <- alpha P + (1 - alpha) Q_prev;  R <- alpha_rp R - w_rp S_prev;
U = W P + b + R;  S = H(U - theta).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikelib.snn.decolle_neuron import DecolleLIF, DecolleParams, DecolleState, decolle_seq, decolle_step
from spikelib.snn.surrogate import FastSigmoid, Heaviside

pytestmark = pytest.mark.usefixtures("one_thread")


def _by_hand(x_seq, weight, bias, alpha, beta, alpha_rp, w_rp, threshold):
    """The equations written out with plain tensors, one step at a time (no spikelib code)."""
    num_in, num_out = x_seq.shape[-1], weight.shape[0]
    batch = x_seq.shape[1]
    q = torch.zeros(batch, num_in)
    p = torch.zeros(batch, num_in)
    r = torch.zeros(batch, num_out)
    s = torch.zeros(batch, num_out)
    spikes, mems = [], []
    for x in x_seq:
        q_new = beta * q + (1 - beta) * x
        p = alpha * p + (1 - alpha) * q  # the previous Q
        q = q_new
        r = alpha_rp * r - w_rp * s
        u = p @ weight.T + bias + r
        s = (u > threshold).float()
        spikes.append(s)
        mems.append(u)
    return torch.stack(spikes), torch.stack(mems)


@pytest.mark.parametrize("threshold", [0.0, 0.3])
def test_decolle_seq_matches_the_equations_by_hand(threshold):
    generator = torch.Generator().manual_seed(0)
    x_seq = (torch.rand(12, 3, 5, generator=generator) < 0.4).float()
    synapse = nn.Linear(5, 4)
    with torch.no_grad():
        synapse.weight.copy_(torch.randn(4, 5, generator=generator) * 3)
        synapse.bias.copy_(torch.randn(4, generator=generator) * 0.2)
    params = DecolleParams(alpha=0.9, beta=0.85, alpha_rp=0.65, w_rp=1.0, threshold=threshold)
    with torch.no_grad():
        spk_seq, mem_seq = decolle_seq(x_seq, synapse, params, Heaviside())
        want_spk, want_mem = _by_hand(x_seq, synapse.weight, synapse.bias, *params)
    torch.testing.assert_close(mem_seq, want_mem)
    torch.testing.assert_close(spk_seq, want_spk)
    assert 0 < float(spk_seq.mean()) < 1  # the case exercises both spikes and the refractory term


def test_hand_worked_single_synapse():
    """One input spike at t = 0 into a weight of 1: U = P, reaching the membrane one step late."""
    x_seq = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(4, 1, 1)
    synapse = nn.Linear(1, 1)
    with torch.no_grad():
        synapse.weight.fill_(1.0)
        synapse.bias.zero_()
    params = DecolleParams(alpha=0.5, beta=0.5, alpha_rp=0.5, w_rp=1.0, threshold=10.0)
    _, mem_seq = decolle_seq(x_seq, synapse, params, Heaviside())
    # Q = 0.5, 0.25, 0.125, ...; P[t] = 0.5 P[t-1] + 0.5 Q[t-1] = 0, 0.25, 0.25, 0.1875
    torch.testing.assert_close(mem_seq.flatten(), torch.tensor([0.0, 0.25, 0.25, 0.1875]))


def test_eligibility_is_the_trace_p():
    """With the state detached, dU[t]/dW = P[t]: the gradient of a step needs nothing older."""
    generator = torch.Generator().manual_seed(1)
    synapse = nn.Linear(3, 1, bias=False)
    params = DecolleParams()
    state = None
    for x in torch.rand(5, 2, 3, generator=generator):
        synapse.zero_grad()
        _, state = decolle_step(x, state, synapse, params, FastSigmoid(5.0))
        state.mem.sum().backward()
        torch.testing.assert_close(synapse.weight.grad, state.p.sum(0, keepdim=True).detach())
        state = DecolleState(*(s.detach() for s in state))


def test_each_layer_of_a_stack_adds_one_step_of_delay():
    layers = [DecolleLIF(nn.Linear(1, 1, bias=False), threshold=0.01, spike_fn=Heaviside()) for _ in range(4)]
    for layer in layers:
        with torch.no_grad():
            layer.synapse.weight.fill_(5.0)
    x_seq = torch.ones(8, 1, 1)
    first_nonzero = []
    with torch.no_grad():
        for layer in layers:
            spk_seq, mem_seq = layer.forward_with_mem(x_seq)
            first_nonzero.append(int((mem_seq.flatten() != 0).nonzero()[0]))
            x_seq = spk_seq
    assert first_nonzero == [1, 2, 3, 4]  # layer l (from 1) first feels the input at step l


def test_module_matches_function_and_checks_its_parameters():
    synapse = nn.Linear(2, 2)
    layer = DecolleLIF(synapse, alpha=0.8)
    x_seq = torch.rand(3, 4, 2)
    spk_seq, mem_seq = decolle_seq(x_seq, synapse, layer.params, layer.spike_fn)
    torch.testing.assert_close(layer(x_seq), spk_seq)
    assert "alpha=0.8" in repr(layer)
    with pytest.raises(ValueError, match="alpha"):
        DecolleLIF(synapse, alpha=1.0)
    with pytest.raises(ValueError, match="x_seq"):
        decolle_seq(torch.ones(3), synapse, DecolleParams(), FastSigmoid(5.0))
