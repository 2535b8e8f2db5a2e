r"""The leaky integrate-and-fire (LIF) neuron: a pure step function and a thin module.

The math lives in :func:`lif_step`, a pure function ``(cur, state, params) -> (spk,
new_state)`` with state and parameters as small typed tuples (the design of Norse's
``functional/lif.py``). :func:`lif_seq` runs it over a sequence ``[T, B, ...]`` and the
:class:`LIF` module is a shell around both. State is never stored on the module between
calls: each sequence starts from zeros, so nothing leaks from one batch to the next.

The neuron is the one of ``snntorch.Leaky`` (snnTorch 1.0, default ``reset_delay=True``)
and gives the same spikes, membrane traces and gradients; ``tests/test_neurons.py``
checks it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor, nn

from spikelib.checks import check_choice, check_number
from spikelib.snn.surrogate import FastSigmoid, Heaviside, SurrogateSpike, heaviside

__all__ = [
    "RESETS",
    "PAPER_SPIKE_FN",
    "LIFState",
    "LIFParams",
    "check_lif_params",
    "lif_step",
    "lif_seq",
    "lif_seq_with_mem",
    "firing_rate",
    "LIF",
    "reset_states",
    "leaky_integrate_seq",
]

#: Reset mechanisms: subtract the threshold, set to zero, or no reset (pure integration).
RESETS: tuple[str, ...] = ("subtract", "zero", "none")

#: The spike function of the student replication's plan (Salikhov, Caceros & Lam 2022: snnTorch's
#: ``fast_sigmoid(slope=25)``); CBMI 2021 itself used DECOLLE's current-based LIF. The name is kept
#: for compatibility. Frozen (immutable), so sharing it as a default is safe.
PAPER_SPIKE_FN = FastSigmoid(slope=25.0)


class LIFState(NamedTuple):
    """State of a layer of LIF neurons.

    Attributes:
        mem (Tensor[B, ...]): membrane potential :math:`U[t]` *before* its reset, the
            value that is compared with the threshold (and that snnTorch returns).
    """

    mem: Tensor


class LIFParams(NamedTuple):
    r"""Parameters of a layer of LIF neurons (defaults: the student replication's plan, ``snn.Leaky(beta=0.5)``).

    Attributes:
        beta (float or Tensor): decay :math:`\beta \in [0, 1]` per step; a tensor
            broadcasts against the input (e.g. one value per channel).
        threshold (float or Tensor): firing threshold :math:`\theta > 0`.
        reset (str): one of :data:`RESETS`.
    """

    beta: float | Tensor = 0.5
    threshold: float | Tensor = 1.0
    reset: str = "subtract"


def check_lif_params(params: LIFParams) -> LIFParams:
    """Return ``params`` unchanged, or raise if a value is out of range.

    Raises:
        TypeError: ``params`` is not a :class:`LIFParams`.
        ValueError: ``beta`` outside [0, 1], ``threshold`` not > 0, unknown ``reset``.
    """
    if not isinstance(params, LIFParams):
        raise TypeError(f"expected LIFParams, got {type(params).__name__}")
    beta = torch.as_tensor(params.beta).detach()
    threshold = torch.as_tensor(params.threshold).detach()
    if not bool(((beta >= 0) & (beta <= 1)).all()):
        raise ValueError(f"beta must lie in [0, 1], got {params.beta!r}")
    if not bool((threshold > 0).all()):
        raise ValueError(f"threshold must be > 0, got {params.threshold!r}")
    check_choice("reset", params.reset, RESETS)
    return params


def _charge(mem: Tensor, cur: Tensor, spk_prev: Tensor, params: LIFParams) -> Tensor:
    """New membrane potential from the old one, the input and the previous spike."""
    if params.reset == "subtract":
        return params.beta * mem + cur - spk_prev * params.threshold
    if params.reset == "zero":
        return params.beta * ((1 - spk_prev) * mem) + cur
    if params.reset == "none":
        return params.beta * mem + cur
    raise ValueError(f"reset must be one of {list(RESETS)}, got {params.reset!r}")


def lif_step(
    cur: Tensor,
    state: LIFState,
    params: LIFParams,
    spike_fn: SurrogateSpike = PAPER_SPIKE_FN,
) -> tuple[Tensor, LIFState]:
    r"""Advance a layer of LIF neurons by one time step.

    With input current :math:`I`, membrane potential :math:`U`, spikes :math:`S`,
    decay :math:`\beta`, threshold :math:`\theta` and Heaviside step :math:`H`:

    .. math::

        S[t-1] &= H(U[t-1] - \theta) \quad\text{(treated as a constant: no gradient)} \\
        U[t] &= \beta\, U[t-1] + I[t] - S[t-1]\,\theta
            &&\text{reset = "subtract"} \\
        U[t] &= \beta\, (1 - S[t-1])\, U[t-1] + I[t]
            &&\text{reset = "zero"} \\
        U[t] &= \beta\, U[t-1] + I[t]
            &&\text{reset = "none"} \\
        S[t] &= H(U[t] - \theta) \quad\text{(surrogate derivative backward)}

    with :math:`U[-1] = 0`. This is the discrete LIF of Eshraghian et al., "Training
    spiking neural networks using lessons from deep learning", Proc. IEEE 111(9), 2023,
    exactly as ``snntorch.Leaky`` runs it. Conventions matched:

    * The membrane returned (and kept in the state) is the value *before* its reset, so a
      plot shows it crossing the threshold; the reset of a spike at step :math:`t-1` is
      applied at step :math:`t`. By subtraction the threshold is taken off *after* the
      decay (:math:`\theta` itself does not decay).
    * The reset is detached: no gradient flows through :math:`S[t-1]` in the reset term,
      only through the spike output. Zenke & Vogels, Neural Computation 33(4), 2021,
      found this helps learning; snnTorch does the same.
    * A neuron exactly at threshold does not fire (:math:`H(0) = 0`).

    Args:
        cur (Tensor[B, ...]): input current :math:`I[t]`.
        state (LIFState): :math:`U[t-1]` (zeros at the start of a sequence), shape of ``cur``.
        params (LIFParams): ``beta``, ``threshold``, ``reset`` (not validated here;
            see :func:`check_lif_params`).
        spike_fn (SurrogateSpike): spike function applied to :math:`U - \theta`.
            Default: fast sigmoid with slope 25.

    Returns:
        tuple[Tensor[B, ...], LIFState]: spikes :math:`S[t]` and the new state :math:`U[t]`.
    """
    spk_prev = heaviside(state.mem - params.threshold)  # 1. did it fire last step?
    mem = _charge(state.mem, cur, spk_prev, params)  # 2. leak, integrate, reset
    spk = spike_fn(mem - params.threshold)  # 3. fire
    return spk, LIFState(mem)


def _check_seq(cur_seq: Tensor) -> None:
    if not isinstance(cur_seq, Tensor):
        raise TypeError(f"cur_seq must be a Tensor [T, B, ...], got {type(cur_seq).__name__}")
    if cur_seq.ndim < 1 or cur_seq.shape[0] < 1:
        raise ValueError(f"cur_seq must be [T, B, ...] with T >= 1, got shape {tuple(cur_seq.shape)}")


def _run(
    cur_seq: Tensor, params: LIFParams, spike_fn: SurrogateSpike, state: LIFState | None
) -> Iterator[tuple[Tensor, LIFState]]:
    """Yield ``(spk, state)`` for each step of ``cur_seq``."""
    _check_seq(cur_seq)
    check_lif_params(params)
    if state is None:
        state = LIFState(cur_seq.new_zeros(cur_seq.shape[1:]))
    # unbind, not cur_seq[t]: indexing makes backward build a full-size zero tensor per step
    for cur in cur_seq.unbind(0):
        spk, state = lif_step(cur, state, params, spike_fn)
        yield spk, state


def lif_seq(
    cur_seq: Tensor,
    params: LIFParams,
    spike_fn: SurrogateSpike = PAPER_SPIKE_FN,
    state: LIFState | None = None,
) -> tuple[Tensor, LIFState]:
    """Run :func:`lif_step` over a whole sequence.

    Args:
        cur_seq (Tensor[T, B, ...]): input currents, time first.
        params (LIFParams): neuron parameters (validated once here).
        spike_fn (SurrogateSpike): spike function. Default: fast sigmoid, slope 25.
        state (LIFState, optional): state before the first step; zeros if ``None``.
            Pass the returned state back in to continue a sequence in chunks.

    Returns:
        tuple[Tensor[T, B, ...], LIFState]: spikes ``spk_seq`` and the state after the
        last step.

    Raises:
        ValueError: empty sequence or out-of-range parameters.
    """
    spks, last = [], state
    for spk, last in _run(cur_seq, params, spike_fn, state):  # noqa: B007 (the last state is returned)
        spks.append(spk)
    return torch.stack(spks), last  # type: ignore[return-value]


def lif_seq_with_mem(
    cur_seq: Tensor,
    params: LIFParams,
    spike_fn: SurrogateSpike = PAPER_SPIKE_FN,
    state: LIFState | None = None,
) -> tuple[Tensor, Tensor]:
    """Like :func:`lif_seq`, but also return the membrane trace (for plots and tests).

    Returns:
        tuple[Tensor[T, B, ...], Tensor[T, B, ...]]: ``spk_seq`` and ``mem_seq``, the
        membrane potential at each step before its reset (as snnTorch returns it). The
        final state is ``LIFState(mem_seq[-1])``.
    """
    spks, mems = [], []
    for spk, step_state in _run(cur_seq, params, spike_fn, state):
        spks.append(spk)
        mems.append(step_state.mem)
    return torch.stack(spks), torch.stack(mems)


def firing_rate(cur: Tensor | float, num_steps: int, params: LIFParams) -> Tensor:
    r"""Spikes per step of LIF neurons driven by a constant current (the f-I curve).

    Without a spike the membrane approaches :math:`I / (1 - \beta)` from below, so a
    leaky neuron (:math:`\beta < 1`) never fires for :math:`I \le \theta (1 - \beta)`,
    the rheobase. Without leak (:math:`\beta = 1`) and with reset by subtraction the
    rate tends to :math:`\min(I / \theta, 1)`.

    Args:
        cur (Tensor[...] or float): constant input currents, one per neuron.
        num_steps (int): number of steps :math:`T \ge 1` to simulate from rest.
        params (LIFParams): neuron parameters.

    Returns:
        Tensor[...]: spike count divided by ``num_steps``, shape of ``cur``.
    """
    check_number("num_steps", num_steps, 1, integer=True)
    if not isinstance(cur, Tensor):
        cur = torch.tensor(cur, dtype=torch.get_default_dtype())
    with torch.no_grad():
        spk_seq, _ = lif_seq(cur.expand(num_steps, *cur.shape), params, Heaviside())
    return spk_seq.mean(0)


class LIF(nn.Module):
    r"""A layer of LIF neurons: a shell around :func:`lif_step` (see it for the equation).

    Holds the parameters, never the state: every call of :meth:`forward` starts from
    :math:`U = 0`, so there is nothing to reset between batches.

    Args:
        beta (float): decay :math:`\beta \in [0, 1]`. Default 0.5 (the replication plan's).
        threshold (float): :math:`\theta > 0`. Default 1.
        reset (str): ``"subtract"`` (default), ``"zero"`` or ``"none"``.
        spike_fn (SurrogateSpike): spike function. Default ``FastSigmoid(slope=25.0)``.

    Example:
        >>> lif = LIF(beta=0.5)
        >>> lif(torch.full((4, 1), 0.6)).flatten().tolist()
        [0.0, 0.0, 1.0, 0.0]
    """

    def __init__(
        self,
        beta: float = 0.5,
        threshold: float = 1.0,
        reset: str = "subtract",
        spike_fn: SurrogateSpike = PAPER_SPIKE_FN,
    ) -> None:
        super().__init__()
        if not isinstance(spike_fn, SurrogateSpike):
            raise TypeError(
                "spike_fn must be a spikelib.snn.surrogate.SurrogateSpike, e.g. "
                f"FastSigmoid(slope=25), got {spike_fn!r}"
            )
        self.params = check_lif_params(LIFParams(float(beta), float(threshold), reset))
        self.spike_fn = spike_fn

    def initial_state(self, cur: Tensor) -> LIFState:
        """The resting state (all zeros) for inputs shaped like ``cur`` [B, ...]."""
        return LIFState(torch.zeros_like(cur))

    def step(self, cur: Tensor, state: LIFState) -> tuple[Tensor, LIFState]:
        """One step: ``(cur [B, ...], state) -> (spk [B, ...], new_state)``."""
        return lif_step(cur, state, self.params, self.spike_fn)

    def forward(self, cur_seq: Tensor) -> Tensor:
        """Spikes for a whole sequence: ``cur_seq [T, B, ...] -> spk_seq [T, B, ...]``."""
        spk_seq, _ = lif_seq(cur_seq, self.params, self.spike_fn)
        return spk_seq

    def forward_with_mem(self, cur_seq: Tensor) -> tuple[Tensor, Tensor]:
        """``cur_seq [T, B, ...] -> (spk_seq, mem_seq)``, both [T, B, ...], for plots."""
        return lif_seq_with_mem(cur_seq, self.params, self.spike_fn)

    def extra_repr(self) -> str:
        beta, threshold, reset = self.params
        return f"beta={beta}, threshold={threshold}, reset={reset!r}, spike_fn={self.spike_fn!r}"


def reset_states(model: nn.Module) -> int:
    """Clear the hidden state of every stateful neuron in ``model``, however nested.

    spikelib's :class:`LIF` keeps no state between calls, so it needs no reset. This
    function is for modules that do: any submodule with a ``reset_state()`` method, and
    snnTorch neurons (``snn.Leaky(init_hidden=True)`` and friends, through their own
    ``reset_mem()``). It walks ``model.modules()``, so it reaches neurons inside blocks,
    and touches nothing outside ``model`` (unlike ``snntorch.utils.reset``, which looks
    only at the top-level children and then resets every instance of the class in the
    process, snnTorch issue #438).

    Args:
        model (nn.Module): the network.

    Returns:
        int: how many modules were reset.
    """
    snntorch = sys.modules.get("snntorch")  # if never imported, no snnTorch neuron exists
    count = 0
    for module in model.modules():
        reset = getattr(module, "reset_state", None)
        if callable(reset):
            reset()
            count += 1
        elif snntorch is not None and isinstance(module, snntorch.SpikingNeuron):
            if callable(getattr(module, "reset_mem", None)):
                module.reset_mem()
                count += 1
    return count


def leaky_integrate_seq(cur_seq: Tensor, beta: float) -> Tensor:
    r"""A layer of non-spiking leaky integrators: the potential it reaches at every step.

    .. math:: M[t] = \beta\, M[t-1] + I[t], \qquad M[-1] = 0

    A LIF neuron without threshold or reset (the readout layer of many SNNs, e.g.
    DECOLLE's and SLAYER's regression outputs): it keeps the graded current that spikes
    would quantise to :math:`T + 1` levels.

    Args:
        cur_seq (Tensor[T, B, ...]): input current :math:`I`.
        beta (float): decay per step, in [0, 1].

    Returns:
        Tensor[T, B, ...]: :math:`M`.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    mem, mem_seq = torch.zeros_like(cur_seq[0]), []
    for cur in cur_seq:
        mem = beta * mem + cur
        mem_seq.append(mem)
    return torch.stack(mem_seq)
