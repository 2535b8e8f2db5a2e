r"""The LIF recurrence over a whole sequence as one autograd node with a hand-written backward.

:func:`lif_seq_fused` computes exactly what :func:`spikelib.snn.neurons.lif_seq` computes
(same spikes and membrane bit for bit, same gradients to rounding), but as a single
``torch.autograd.Function``: the forward loop runs without building a graph, and the
backward loop is written out. What it keeps for the backward pass is the membrane trace
``[T, B, ...]`` and nothing else (the spikes are recomputed from it), where the
step-by-step graph of ``lif_seq`` or ``snntorch.Leaky`` keeps several tensors per step.
:class:`FusedLIF` is the :class:`~spikelib.snn.neurons.LIF` module running it.

Used by :mod:`spikelib.snn.layers`; tested against the reference in ``tests/test_engine.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from spikelib.snn.neurons import LIF, PAPER_SPIKE_FN, LIFParams, LIFState, check_lif_params
from spikelib.snn.surrogate import FastSigmoid, SurrogateSpike

__all__ = ["lif_seq_fused", "LIFCarry", "FusedLIF"]


def _as_float(value: float | Tensor, name: str) -> float:
    """A Python float from a number or a one-element tensor that needs no gradient."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.requires_grad:
            raise ValueError(
                f"lif_seq_fused needs a scalar {name} without gradient, got a tensor of shape "
                f"{tuple(value.shape)} (requires_grad={value.requires_grad}); "
                "use spikelib.snn.neurons.lif_seq for per-neuron or learnable parameters"
            )
    return float(value)


def _is_power_of_two(value: float) -> bool:
    return value > 0 and math.frexp(value)[0] == 0.5


class _LIFSeqFunction(torch.autograd.Function):
    """The LIF recurrence over ``[T, B, ...]``; saves only the membrane trace."""

    @staticmethod
    def forward(
        ctx: Any,
        cur_seq: Tensor,
        mem_init: Tensor,
        beta: float,
        threshold: float,
        reset: str,
        spike_fn: SurrogateSpike,
        mem_out: tuple[Tensor | None],
    ) -> tuple[Tensor, Tensor]:
        # mem_out (in a tuple, so autograd does not take it for an input): a preallocated trace
        mem_seq = torch.empty_like(cur_seq, memory_format=torch.contiguous_format) if mem_out[0] is None else mem_out[0]
        spk_seq = torch.empty_like(mem_seq)
        mem_prev = mem_init
        spk_prev = torch.gt(mem_init, threshold, out=torch.empty_like(mem_init))  # S[t-1] = H(U[t-1] - theta)
        # beta a power of two: beta U is exact, so I + beta U in one pass rounds as the reference does
        one_pass = reset != "zero" and _is_power_of_two(beta)
        for cur, mem, spk in zip(cur_seq.unbind(0), mem_seq.unbind(0), spk_seq.unbind(0)):
            # the reference's floating-point operations, so the result is bit for bit the same:
            # beta U[t-1] (zeroed where S[t-1] = 1 for reset="zero"), + I[t], - S[t-1] theta
            if one_pass:
                torch.add(cur, mem_prev, alpha=beta, out=mem)
            else:
                torch.mul(mem_prev, beta, out=mem)
                if reset == "zero":
                    mem.addcmul_(mem, spk_prev, value=-1.0)  # exactly 0 where S[t-1] = 1
                mem.add_(cur)
            if reset == "subtract":
                mem.sub_(spk_prev, alpha=threshold)
            torch.gt(mem, threshold, out=spk)  # H(U - theta), H(0) = 0
            mem_prev, spk_prev = mem, spk
        # the initial membrane is needed backward only for reset="zero" (its spike gates the carry)
        ctx.save_for_backward(mem_seq, mem_init if reset == "zero" else None)
        ctx.params = (beta, threshold, reset, spike_fn)
        # the final state is a view of the saved trace, not a copy: a caller that runs a
        # sequence in chunks passes it on without storing the membrane twice
        return spk_seq, mem_seq[-1]

    @staticmethod
    def backward(ctx: Any, grad_spk_seq: Tensor | None, grad_mem_last: Tensor | None):
        mem_seq, mem_init = ctx.saved_tensors
        beta, threshold, reset, spike_fn = ctx.params
        num_steps = mem_seq.shape[0]
        grad_cur_seq = torch.empty_like(mem_seq)
        scratch = torch.empty_like(mem_seq[0])
        grad_spks = grad_spk_seq.unbind(0) if grad_spk_seq is not None else (None,) * num_steps
        grad_curs = grad_cur_seq.unbind(0)
        mems = mem_seq.unbind(0)
        fast_sigmoid = type(spike_fn) is FastSigmoid
        for t in range(num_steps - 1, -1, -1):
            grad_cur = grad_curs[t]
            # dL/dU[t] = dL/dS[t] sigma'(U[t] - theta) + dL/dU[t+1] dU[t+1]/dU[t]
            if grad_spks[t] is None:
                grad_cur.zero_()
            elif fast_sigmoid:  # dL/dS / (k|x| + 1)^2, in place: no temporaries
                torch.sub(mems[t], threshold, out=scratch).abs_().mul_(spike_fn.slope).add_(1.0)
                torch.div(grad_spks[t], scratch.square_(), out=grad_cur)
            else:
                torch.mul(spike_fn.derivative(mems[t] - threshold), grad_spks[t], out=grad_cur)
            if t < num_steps - 1:
                _add_carry(grad_cur, grad_curs[t + 1], mems[t], beta, threshold, reset, scratch)
            elif grad_mem_last is not None:
                grad_cur.add_(grad_mem_last)
        grad_mem_init = None
        if ctx.needs_input_grad[1]:
            grad_mem_init = torch.zeros_like(scratch)
            _add_carry(grad_mem_init, grad_curs[0], mem_init, beta, threshold, reset, scratch)
        return grad_cur_seq, grad_mem_init, None, None, None, None, None


def _add_carry(
    grad: Tensor, grad_next: Tensor, mem: Tensor | None, beta: float, threshold: float, reset: str, scratch: Tensor
) -> None:
    """``grad += dL/dU[t+1] dU[t+1]/dU[t]``: times ``beta``, or ``beta (1 - S[t])`` for reset="zero".

    The reset term carries no gradient of its own (it is detached, as in snnTorch).
    """
    if reset == "zero":
        if mem is None:
            raise ValueError("reset='zero' needs the membrane trace to route the gradient through the reset")
        torch.gt(mem, threshold, out=scratch).sub_(1.0).mul_(-beta)  # beta (1 - S[t])
        grad.addcmul_(grad_next, scratch)
    else:
        grad.add_(grad_next, alpha=beta)


def _run_fused(
    cur_seq: Tensor, params: LIFParams, spike_fn: SurrogateSpike, state: LIFState | None, mem_seq: Tensor | None = None
) -> tuple[Tensor, LIFState]:
    """:func:`lif_seq_fused` without argument checks; ``mem_seq``: where to write the trace."""
    beta, threshold = _as_float(params.beta, "beta"), _as_float(params.threshold, "threshold")
    mem_init = cur_seq.new_zeros(cur_seq.shape[1:]) if state is None else state.mem
    spk_seq, mem_last = _LIFSeqFunction.apply(cur_seq, mem_init, beta, threshold, params.reset, spike_fn, (mem_seq,))
    return spk_seq, LIFState(mem_last)


def lif_seq_fused(
    cur_seq: Tensor,
    params: LIFParams,
    spike_fn: SurrogateSpike = PAPER_SPIKE_FN,
    state: LIFState | None = None,
) -> tuple[Tensor, LIFState]:
    r"""Same as :func:`spikelib.snn.neurons.lif_seq`, as one autograd node with a hand-written backward.

    Forward: the recurrence of :func:`spikelib.snn.neurons.lif_step`, in the same order of
    floating-point operations (so spikes and membrane are bit for bit the same).
    Backward, with :math:`\sigma'` the surrogate derivative and
    :math:`g_t = \partial L / \partial U[t]`, from :math:`t = T-1` down to 0:

    .. math::

        g_t &= \frac{\partial L}{\partial S[t]}\, \sigma'(U[t] - \theta)
               + g_{t+1}\, \frac{\partial U[t+1]}{\partial U[t]}, \qquad
        \frac{\partial L}{\partial I[t]} = g_t \\
        \frac{\partial U[t+1]}{\partial U[t]} &= \beta \ \text{(subtract, none)}, \qquad
        \beta\,(1 - S[t]) \ \text{(zero)}

    (the reset term is detached, as in the reference), plus the gradient of the final
    state if it is used. Kept for the backward pass: the membrane trace ``[T, B, ...]``
    (and, for reset="zero", the initial state).

    Args:
        cur_seq (Tensor[T, B, ...]): input currents, time first.
        params (LIFParams): ``beta`` and ``threshold`` as numbers (or one-element tensors
            without gradient); per-neuron or learnable ones need :func:`~spikelib.snn.neurons.lif_seq`.
        spike_fn (SurrogateSpike): spike function; ``FastSigmoid`` has an in-place backward.
        state (LIFState, optional): state before the first step; zeros if ``None``. Pass
            the returned state back in to continue a sequence in chunks.

    Returns:
        tuple[Tensor[T, B, ...], LIFState]: spikes and the state after the last step, both
        differentiable, as from :func:`~spikelib.snn.neurons.lif_seq`. The state's membrane
        is a view of the saved trace: do not modify it in place.

    Raises:
        ValueError: empty sequence, out-of-range or non-scalar parameters.
    """
    if not isinstance(cur_seq, Tensor) or cur_seq.ndim < 1 or cur_seq.shape[0] < 1:
        shape = tuple(cur_seq.shape) if isinstance(cur_seq, Tensor) else type(cur_seq).__name__
        raise ValueError(f"cur_seq must be a Tensor [T, B, ...] with T >= 1, got {shape}")
    return _run_fused(cur_seq, check_lif_params(params), spike_fn, state)


@dataclass
class LIFCarry:
    """A LIF layer's state from one call to the next within one sequence, held by the caller.

    Created by :meth:`FusedLIF.run` for one call (never stored on a module): ``forward``
    starts from ``state`` and replaces it with the state after its last step, so that
    the call goes through ``nn.Module.__call__`` and forward hooks (``SpikeCounter``) see
    the spikes of every chunk.

    Attributes:
        state (LIFState or None): the state before the call (``None``: rest); after it, the
            state after the last step.
        mem_out (Tensor[T, B, ...] or None): where to write the membrane trace kept for
            backward (e.g. carved from a :class:`~spikelib.snn.saved.SavedArena`).
    """

    state: LIFState | None = None
    mem_out: Tensor | None = None


class FusedLIF(LIF):
    """A :class:`~spikelib.snn.neurons.LIF` layer whose ``forward`` runs :func:`lif_seq_fused`.

    Same arguments and results as ``LIF``; ``step`` (one time step) is ``LIF``'s. It is a
    ``LIF``, so tools that look for LIF layers (``spikelib.eval.activity.SpikeCounter``,
    :func:`spikelib.snn.layers.lif_layers`) find it and count what ``forward`` emits.
    """

    def forward(self, cur_seq: Tensor, carry: LIFCarry | None = None) -> Tensor:
        """Spikes for a sequence: ``cur_seq [T, B, ...] -> spk_seq [T, B, ...]``.

        From rest, or, given a ``carry``, from ``carry.state``, which is then replaced by
        the state after the last step (see :meth:`run`).
        """
        if not isinstance(cur_seq, Tensor) or cur_seq.ndim < 1 or cur_seq.shape[0] < 1:
            shape = tuple(cur_seq.shape) if isinstance(cur_seq, Tensor) else type(cur_seq).__name__
            raise ValueError(f"cur_seq must be a Tensor [T, B, ...] with T >= 1, got {shape}")
        if carry is None:
            spk_seq, _ = _run_fused(cur_seq, self.params, self.spike_fn, None)
            return spk_seq
        if carry.mem_out is not None and carry.mem_out.shape != cur_seq.shape:
            raise ValueError(
                f"mem_out must have the shape of cur_seq {tuple(cur_seq.shape)}, got {tuple(carry.mem_out.shape)}"
            )
        spk_seq, carry.state = _run_fused(cur_seq, self.params, self.spike_fn, carry.state, carry.mem_out)
        carry.mem_out = None  # used
        return spk_seq

    def run(
        self, cur_seq: Tensor, state: LIFState | None = None, mem_out: Tensor | None = None
    ) -> tuple[Tensor, LIFState]:
        """Spikes for a sequence that continues from ``state``, and the state it ends in.

        The explicit-state form of :meth:`forward`, for running a sequence in chunks
        (:func:`spikelib.snn.chunked.run_chunked`): pass the returned state to the next
        chunk's call. Goes through the module call, so forward hooks see every chunk.

        Args:
            cur_seq (Tensor[T, B, ...]): input currents.
            state (LIFState, optional): the state before the first step; ``None``: rest.
            mem_out (Tensor[T, B, ...], optional): where to write the membrane trace kept
                for backward; ``None``: a new tensor.

        Returns:
            tuple[Tensor[T, B, ...], LIFState]: spikes, and the state after the last step
            (its membrane is a view of the saved trace: do not modify it in place).
        """
        carry = LIFCarry(state, mem_out)
        spk_seq = self(cur_seq, carry)
        if carry.state is None:  # forward always leaves the state after its last step
            raise RuntimeError("FusedLIF.forward did not record the state after its last step")
        return spk_seq, carry.state
