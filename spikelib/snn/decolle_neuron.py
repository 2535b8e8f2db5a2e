r"""DECOLLE's neuron: a current-based LIF with presynaptic traces and a refractory term.

Kaiser, Mostafa & Neftci, "Synaptic plasticity dynamics for deep continuous local
learning (DECOLLE)", Frontiers in Neuroscience 14:424, 2020
(https://doi.org/10.3389/fnins.2020.00424), eq. 4, and the ``LIFLayer`` of its reference
code (``decolle-public``, ``decolle/base_model.py``). The course's LIF
(:func:`spikelib.snn.neurons.lif_step`) filters the *weighted* input once, in the
membrane; this neuron filters every *input* twice before the weights, in two traces
:math:`Q` (synaptic) and :math:`P` (membrane), and adds a refractory trace :math:`R`:

.. math::

    Q[t] &= \beta\, Q[t-1] + (1 - \beta)\, X[t] \\
    P[t] &= \alpha\, P[t-1] + (1 - \alpha)\, Q[t-1] \\
    R[t] &= \alpha_{rp}\, R[t-1] - w_{rp}\, S[t-1] \\
    U[t] &= W \cdot P[t] + b + R[t] \\
    S[t] &= H(U[t] - \theta)

from rest (:math:`P = Q = R = S = 0`). Because the weights act on :math:`P` and the
state carries no gradient, :math:`\partial U[t] / \partial W = P[t]`: the trace *is* the
eligibility of the weight, which is what makes DECOLLE's update local in time. The price
is a delay: :math:`P[t]` sees :math:`Q[t-1]`, so an input reaches the membrane one step
after it arrives, and layer :math:`l` of a stack first sees the image at step :math:`l`
(counting from 1).

Differences from the reference code, on purpose: it scales the inputs of the traces by
:math:`\tau_s = 1/(1-\beta)` and :math:`\tau_m = 1/(1-\alpha)` instead of :math:`1-\beta`
and :math:`1-\alpha` (a constant factor, :math:`\tau_s\tau_m/((1-\beta)(1-\alpha))`, that
the weights absorb), and fires at :math:`U \ge 0`; here :math:`U > \theta`, the course's
convention (:math:`H(0) = 0`), with :math:`\theta = 0` by default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from spikelib.checks import check_number
from spikelib.snn.surrogate import FastSigmoid, SurrogateSpike, heaviside

__all__ = ["DecolleState", "DecolleParams", "decolle_step", "decolle_seq", "DecolleLIF"]


class DecolleState(NamedTuple):
    r"""State of a layer of DECOLLE neurons after a step.

    Attributes:
        q (Tensor[B, ...]): synaptic trace :math:`Q` of the layer's *input* (input's shape).
        p (Tensor[B, ...]): membrane trace :math:`P` of the input (input's shape).
        ref (Tensor[B, ...]): refractory trace :math:`R` (output's shape).
        mem (Tensor[B, ...]): membrane potential :math:`U` (output's shape).
    """

    q: Tensor
    p: Tensor
    ref: Tensor
    mem: Tensor


class DecolleParams(NamedTuple):
    r"""Parameters of DECOLLE neurons (defaults: those of the reference code's ``LIFLayer``).

    Attributes:
        alpha (float): decay of :math:`P`, in [0, 1). Default 0.9.
        beta (float): decay of :math:`Q`, in [0, 1). Default 0.85.
        alpha_rp (float): decay of the refractory trace, in [0, 1]. Default 0.65.
        w_rp (float): refractory kick per spike, >= 0. Default 1.
        threshold (float): :math:`\theta`. Default 0.
    """

    alpha: float = 0.9
    beta: float = 0.85
    alpha_rp: float = 0.65
    w_rp: float = 1.0
    threshold: float = 0.0


def _check_params(params: DecolleParams) -> DecolleParams:
    if not isinstance(params, DecolleParams):
        raise TypeError(f"expected DecolleParams, got {type(params).__name__}")
    check_number("alpha", params.alpha, 0.0, 1.0, high_open=True)
    check_number("beta", params.beta, 0.0, 1.0, high_open=True)
    check_number("alpha_rp", params.alpha_rp, 0.0, 1.0)
    check_number("w_rp", params.w_rp, 0.0)
    return params


def decolle_step(
    x: Tensor,
    state: DecolleState | None,
    synapse: Callable[[Tensor], Tensor],
    params: DecolleParams,
    spike_fn: SurrogateSpike,
) -> tuple[Tensor, DecolleState]:
    r"""Advance a layer of DECOLLE neurons by one step (equations in the module docstring).

    Args:
        x (Tensor[B, ...]): the layer's input :math:`X[t]` (spikes, or the coded image).
        state (DecolleState or None): after the previous step; ``None``: rest.
        synapse (callable): :math:`P \mapsto W \cdot P + b` (an ``nn.Linear`` or ``nn.Conv2d``).
        params (DecolleParams): decays, refractory kick, threshold (not validated here).
        spike_fn (SurrogateSpike): applied to :math:`U - \theta`.

    Returns:
        tuple[Tensor, DecolleState]: spikes :math:`S[t]` (output's shape) and the new state.
        The state is returned as computed; detach it to stop gradients through time.
    """
    if state is None:
        zeros = torch.zeros_like(x)
        q_prev, p_prev = zeros, zeros
        ref_prev = mem_prev = None
    else:
        q_prev, p_prev, ref_prev, mem_prev = state
    q = params.beta * q_prev + (1 - params.beta) * x
    p = params.alpha * p_prev + (1 - params.alpha) * q_prev
    cur = synapse(p)
    if ref_prev is None or mem_prev is None:
        ref = torch.zeros_like(cur)
    else:
        spk_prev = heaviside(mem_prev - params.threshold)
        ref = params.alpha_rp * ref_prev - params.w_rp * spk_prev
    mem = cur + ref
    return spike_fn(mem - params.threshold), DecolleState(q, p, ref, mem)


def decolle_seq(
    x_seq: Tensor,
    synapse: Callable[[Tensor], Tensor],
    params: DecolleParams,
    spike_fn: SurrogateSpike,
    detach: bool = True,
) -> tuple[Tensor, Tensor]:
    """Run :func:`decolle_step` over a sequence ``[T, B, ...]`` from rest.

    Args:
        x_seq (Tensor[T, B, ...]): inputs, time first.
        synapse, params, spike_fn: as in :func:`decolle_step`.
        detach (bool): detach the state after every step (DECOLLE's rule); ``False``
            keeps the graph through time (BPTT).

    Returns:
        tuple[Tensor[T, B, ...], Tensor[T, B, ...]]: ``spk_seq`` and ``mem_seq``.
    """
    if not isinstance(x_seq, Tensor) or x_seq.ndim < 2:
        raise ValueError(f"x_seq must be a Tensor [T, B, ...], got {getattr(x_seq, 'shape', type(x_seq))}")
    _check_params(params)
    state: DecolleState | None = None
    spks, mems = [], []
    for x in x_seq.unbind(0):
        spk, state = decolle_step(x, state, synapse, params, spike_fn)
        spks.append(spk)
        mems.append(state.mem)
        if detach:
            state = DecolleState(*(s.detach() for s in state))
    return torch.stack(spks), torch.stack(mems)


class DecolleLIF(nn.Module):
    r"""A layer of DECOLLE neurons around a synapse (``nn.Linear`` or ``nn.Conv2d``).

    A shell around :func:`decolle_seq`; holds the synapse and the parameters, never the
    state (every call starts from rest).

    Args:
        synapse (nn.Module): :math:`W \cdot P + b`.
        alpha, beta, alpha_rp, w_rp, threshold: :class:`DecolleParams`.
        spike_fn (SurrogateSpike, optional): default ``FastSigmoid(slope=5)``.
        detach (bool): stop gradients through time (DECOLLE). Default True.

    Shapes:
        ``x_seq`` (Tensor[T, B, ...]) -> ``spk_seq`` (Tensor[T, B, ...], the synapse's output shape).
    """

    def __init__(
        self,
        synapse: nn.Module,
        alpha: float = 0.9,
        beta: float = 0.85,
        alpha_rp: float = 0.65,
        w_rp: float = 1.0,
        threshold: float = 0.0,
        spike_fn: SurrogateSpike | None = None,
        detach: bool = True,
    ) -> None:
        super().__init__()
        self.synapse = synapse
        self.params = _check_params(DecolleParams(alpha, beta, alpha_rp, w_rp, threshold))
        self.spike_fn = FastSigmoid(slope=5.0) if spike_fn is None else spike_fn
        self.detach = bool(detach)

    def forward_with_mem(self, x_seq: Tensor) -> tuple[Tensor, Tensor]:
        """``x_seq [T, B, ...] -> (spk_seq, mem_seq)``."""
        return decolle_seq(x_seq, self.synapse, self.params, self.spike_fn, self.detach)

    def forward(self, x_seq: Tensor) -> Tensor:
        """``x_seq [T, B, ...] -> spk_seq [T, B, ...]``."""
        return self.forward_with_mem(x_seq)[0]

    def extra_repr(self) -> str:
        alpha, beta, alpha_rp, w_rp, threshold = self.params
        return (
            f"alpha={alpha}, beta={beta}, alpha_rp={alpha_rp}, w_rp={w_rp}, threshold={threshold}, "
            f"spike_fn={self.spike_fn!r}, detach={self.detach}"
        )
