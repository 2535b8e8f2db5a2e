r"""The execution engine: how spiking layers run fast and lean on a CPU (and a GPU).

A spiking convolutional network spends its time in convolutions; what it adds to an
ordinary network is a recurrence over time (the LIF neurons) and, for training, the
tensors autograd keeps for the backward pass: every layer's input and membrane at
every step. On a laptop CPU the second is what decides whether a network fits. This
module holds the pieces that make :mod:`spikelib.layers` cheap, each usable alone:

* :func:`lif_seq_fused` and :class:`FusedLIF`: the LIF recurrence over a whole sequence
  as one ``torch.autograd.Function`` with a hand-written backward. It keeps one tensor
  for the backward pass (the membrane potential), not the chain of small tensors the
  step-by-step autograd graph keeps, and gives the same spikes, membrane and gradients
  as :func:`spikelib.neurons.lif_seq`.
* :func:`spikes_saved_as_uint8`: a context in which a layer that saves a spike tensor
  for its backward pass (a convolution, a max-pool) keeps it as ``uint8``, four times
  smaller than ``float32``, and converts it back when the backward pass needs it.
  Exact: spikes are whole numbers.
* :func:`apply_seq`: a stateless layer (convolution, pooling) applied to every step of
  ``[T, B, ...]``, either step by step or with time folded into the batch
  (``fold_time``; folding wins on a GPU, not on a CPU).
* :func:`configure_cpu_allocator`: one explicit call that stops glibc's ``malloc`` from
  giving large blocks back to the system after every step (which otherwise costs
  millions of page faults per training step).

Importing this module changes nothing; every set-up is a function you call.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from spikelib.neurons import LIF, PAPER_SPIKE_FN, LIFParams, LIFState, check_lif_params
from spikelib.surrogate import FastSigmoid, SurrogateSpike

__all__ = [
    "FOLD_TIME_CHOICES",
    "resolve_fold_time",
    "apply_seq",
    "lif_seq_fused",
    "FusedLIF",
    "spikes_saved_as_uint8",
    "is_spike_train",
    "configure_cpu_allocator",
]

logger = logging.getLogger(__name__)

#: Accepted values of ``fold_time``: fold time into the batch, step by step, or pick by device.
FOLD_TIME_CHOICES: tuple[Any, ...] = (True, False, "auto")


def resolve_fold_time(fold_time: bool | str, x: Tensor) -> bool:
    """Decide whether a stateless layer sees ``[T*B, ...]`` at once or ``T`` calls of ``[B, ...]``.

    Args:
        fold_time (bool or "auto"): ``True`` folds, ``False`` loops over steps, ``"auto"``
            folds on a GPU and loops on a CPU (measured in ``benchmarks/README.md``: one
            large call keeps a GPU busy; on a CPU the per-step tensors stay in cache and
            the large ones cost page faults).
        x (Tensor): the input, whose device decides ``"auto"``.

    Returns:
        bool: ``True`` to fold.

    Raises:
        ValueError: ``fold_time`` is none of :data:`FOLD_TIME_CHOICES`.
    """
    if fold_time is True or fold_time is False:
        return fold_time
    if fold_time == "auto":
        return x.device.type != "cpu"
    raise ValueError(f"fold_time must be True, False or 'auto', got {fold_time!r}")


def apply_seq(module: nn.Module, x_seq: Tensor, fold_time: bool | str = "auto") -> Tensor:
    """Apply a stateless layer to every step of a sequence.

    Args:
        module (nn.Module): a layer that maps ``[B, ...] -> [B, ...]`` and keeps no state
            between calls (``nn.Conv2d``, ``nn.MaxPool2d``, ``nn.Upsample``).
        x_seq (Tensor[T, B, ...]): the sequence, time first.
        fold_time (bool or "auto"): see :func:`resolve_fold_time`.

    Returns:
        Tensor[T, B, ...]: ``module`` applied at every step.
    """
    if resolve_fold_time(fold_time, x_seq):
        return module(x_seq.flatten(0, 1)).unflatten(0, x_seq.shape[:2])
    # unbind, not x_seq[t]: indexing makes backward build a full-size zero tensor per step
    return torch.stack([module(x) for x in x_seq.unbind(0)])


# ----------------------------------------------------------------------------- fused LIF

def _as_float(value: float | Tensor, name: str) -> float:
    """A Python float from a number or a one-element tensor that needs no gradient."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.requires_grad:
            raise ValueError(
                f"lif_seq_fused needs a scalar {name} without gradient, got a tensor of shape "
                f"{tuple(value.shape)} (requires_grad={value.requires_grad}); "
                "use spikelib.neurons.lif_seq for per-neuron or learnable parameters")
        return float(value)
    return float(value)


class _LIFSeqFunction(torch.autograd.Function):
    """The LIF recurrence over ``[T, B, ...]``; saves only the membrane trace."""

    @staticmethod
    def forward(ctx: Any, cur_seq: Tensor, mem_init: Tensor, beta: float, threshold: float,
                reset: str, spike_fn: SurrogateSpike) -> tuple[Tensor, Tensor]:
        mem_seq = torch.empty_like(cur_seq, memory_format=torch.contiguous_format)
        spk_seq = torch.empty_like(mem_seq)
        mem_prev = mem_init
        # spikes of the previous step; the initial state may already be above threshold
        spk_prev = mem_init > threshold if reset != "none" else None
        for cur, mem, spk in zip(cur_seq.unbind(0), mem_seq.unbind(0), spk_seq.unbind(0)):
            # the reference's order of operations, so the result is bit for bit the same:
            # beta * U[t-1] (with the old spike zeroed first for reset="zero"), + I[t], - S theta
            torch.mul(mem_prev, beta, out=mem)
            if reset == "zero":
                mem.masked_fill_(spk_prev, 0.0)
            mem.add_(cur)
            if reset == "subtract":
                mem.sub_(spk_prev.to(mem.dtype), alpha=threshold)
            torch.gt(mem, threshold, out=spk)  # H(U - theta), H(0) = 0
            if reset != "none":
                spk_prev = spk > 0
            mem_prev = mem
        ctx.save_for_backward(mem_seq, mem_init)
        ctx.params = (beta, threshold, reset, spike_fn)
        return spk_seq, mem_seq[-1].clone()

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
            # dL/dU[t] = dL/dS[t] * sigma'(U[t] - theta) + dL/dU[t+1] * dU[t+1]/dU[t]
            if grad_spks[t] is None:
                grad_cur.zero_()
            elif fast_sigmoid:  # 1 / (k|x| + 1)^2 in place: no temporaries
                torch.sub(mems[t], threshold, out=scratch).abs_().mul_(spike_fn.slope).add_(1.0)
                torch.div(grad_spks[t], scratch.square_(), out=grad_cur)
            else:
                torch.mul(spike_fn.derivative(mems[t] - threshold), grad_spks[t], out=grad_cur)
            if t == num_steps - 1:
                if grad_mem_last is not None:
                    grad_cur.add_(grad_mem_last)
            else:
                _add_carry(grad_cur, grad_curs[t + 1], mems[t], beta, threshold, reset, scratch)
        grad_mem_init = None
        if ctx.needs_input_grad[1]:
            grad_mem_init = torch.empty_like(mem_init).zero_()
            _add_carry(grad_mem_init, grad_curs[0], mem_init, beta, threshold, reset, scratch)
        return grad_cur_seq, grad_mem_init, None, None, None, None


def _add_carry(grad: Tensor, grad_next: Tensor, mem: Tensor, beta: float, threshold: float,
               reset: str, scratch: Tensor) -> None:
    """``grad += dL/dU[t+1] * dU[t+1]/dU[t]``: ``beta``, or ``beta (1 - S[t])`` for reset="zero".

    The reset term itself carries no gradient (it is detached, as in snnTorch).
    """
    if reset == "zero":
        torch.mul(grad_next, beta, out=scratch).masked_fill_(mem > threshold, 0.0)
        grad.add_(scratch)
    else:
        grad.add_(grad_next, alpha=beta)


def lif_seq_fused(
    cur_seq: Tensor,
    params: LIFParams,
    spike_fn: SurrogateSpike = PAPER_SPIKE_FN,
    state: LIFState | None = None,
) -> tuple[Tensor, LIFState]:
    r"""Same as :func:`spikelib.neurons.lif_seq`, as one autograd node with a hand-written backward.

    Forward, the recurrence of :func:`spikelib.neurons.lif_step`, in the same order of
    floating-point operations (so the spikes and membrane are bit for bit the same).
    Backward, with :math:`\sigma'` the surrogate derivative and
    :math:`g_t = \partial L / \partial U[t]`, from :math:`t = T-1` down to 0:

    .. math::

        g_t &= \frac{\partial L}{\partial S[t]}\, \sigma'(U[t] - \theta)
               + g_{t+1}\, \frac{\partial U[t+1]}{\partial U[t]}, \qquad
        \frac{\partial L}{\partial I[t]} = g_t \\
        \frac{\partial U[t+1]}{\partial U[t]} &= \beta \ \text{(subtract, none)}, \quad
        \beta\,(1 - S[t]) \ \text{(zero)}

    (the reset term is detached, as in the reference). What it keeps for the backward
    pass is the membrane trace ``[T, B, ...]`` and nothing else; the spikes are
    recomputed from it. The step-by-step graph keeps several tensors per step.

    Args:
        cur_seq (Tensor[T, B, ...]): input currents, time first.
        params (LIFParams): ``beta`` and ``threshold`` as numbers (or one-element tensors
            without gradient); per-neuron or learnable ones need :func:`~spikelib.neurons.lif_seq`.
        spike_fn (SurrogateSpike): spike function; ``FastSigmoid`` has an in-place path.
        state (LIFState, optional): state before the first step; zeros if ``None``.

    Returns:
        tuple[Tensor[T, B, ...], LIFState]: spikes and the state after the last step,
        both differentiable, as from :func:`~spikelib.neurons.lif_seq`.

    Raises:
        ValueError: empty sequence, out-of-range or non-scalar parameters.
    """
    if not isinstance(cur_seq, Tensor) or cur_seq.ndim < 1 or cur_seq.shape[0] < 1:
        shape = tuple(cur_seq.shape) if isinstance(cur_seq, Tensor) else type(cur_seq).__name__
        raise ValueError(f"cur_seq must be a Tensor [T, B, ...] with T >= 1, got {shape}")
    check_lif_params(params)
    beta, threshold = _as_float(params.beta, "beta"), _as_float(params.threshold, "threshold")
    mem_init = cur_seq.new_zeros(cur_seq.shape[1:]) if state is None else state.mem
    spk_seq, mem_last = _LIFSeqFunction.apply(cur_seq, mem_init, beta, threshold, params.reset, spike_fn)
    return spk_seq, LIFState(mem_last)


class FusedLIF(LIF):
    """A :class:`~spikelib.neurons.LIF` layer whose ``forward`` runs :func:`lif_seq_fused`.

    Same arguments, same results, same ``step`` (single steps use the reference
    :func:`~spikelib.neurons.lif_step`); it is a ``LIF``, so tools that look for LIF layers
    (``spikelib.learning.SpikeCounter``, spike-rate hooks) find it.
    """

    def forward(self, cur_seq: Tensor) -> Tensor:
        """Spikes for a whole sequence: ``cur_seq [T, B, ...] -> spk_seq [T, B, ...]``."""
        spk_seq, _ = lif_seq_fused(cur_seq, self.params, self.spike_fn)
        return spk_seq


# ----------------------------------------------------------------------- compact saving

class _Uint8Spikes:
    """A spike tensor kept as ``uint8`` for the backward pass, with its original dtype."""

    __slots__ = ("data", "dtype")

    def __init__(self, data: Tensor, dtype: torch.dtype) -> None:
        self.data, self.dtype = data, dtype


def _same_memory(a: Tensor, b: Tensor) -> bool:
    """True if ``a`` lies inside the storage of ``b`` (``b`` itself or a view of it)."""
    return a.device == b.device and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


@contextlib.contextmanager
def spikes_saved_as_uint8(*spike_tensors: Tensor) -> Iterator[None]:
    """Within the context, layers keep these spike tensors for backward as ``uint8``.

    Autograd keeps a layer's input for its backward pass (a convolution needs it for the
    weight gradient, a max-pool for routing the gradient). When that input is a spike
    train, its values are whole numbers (0 or 1; 0, 1 or 2 after a SEW ``add``), so
    ``uint8`` holds them exactly in a quarter of the memory of ``float32``. Inside this
    context every tensor that autograd saves and that shares memory with one of
    ``spike_tensors`` (the tensor or a view of it, e.g. one step of a sequence) is stored
    as ``uint8`` and turned back into its dtype when the backward pass reads it. Integer
    indices a max-pool saves are narrowed to ``int32`` (exact below 2**31 positions).
    Other saved tensors (weights, membranes) are left alone.

    Uses ``torch.autograd.graph.saved_tensors_hooks``; nothing outlives the context but
    the packed tensors in the graph.

    Args:
        *spike_tensors (Tensor): tensors whose values are whole numbers in [0, 255]. The
            caller vouches for this (a LIF output, a sum of two of them); nothing is checked.

    Example::

        with spikes_saved_as_uint8(spk_seq):
            cur_seq = apply_seq(conv, spk_seq)
    """
    def pack(saved: Tensor) -> Any:
        if saved.dtype == torch.int64 and saved.numel() >= 1024:
            return saved.to(torch.int32)  # max-pool indices
        if saved.is_floating_point() and any(_same_memory(saved, s) for s in spike_tensors):
            return _Uint8Spikes(saved.to(torch.uint8), saved.dtype)
        return saved

    def unpack(packed: Any) -> Tensor:
        if isinstance(packed, _Uint8Spikes):
            return packed.data.to(packed.dtype)
        if isinstance(packed, Tensor) and packed.dtype == torch.int32:
            return packed.to(torch.int64)
        return packed

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


def is_spike_train(x: Tensor) -> bool:
    """True if ``x`` holds whole numbers in [0, 255], so :func:`spikes_saved_as_uint8` is exact.

    The output of :func:`lif_seq_fused` (and :class:`FusedLIF`) is trusted without a look;
    any other floating-point tensor is checked (one conversion and one comparison).

    Args:
        x (Tensor): e.g. a layer's input.

    Returns:
        bool: whether ``x`` may be kept as ``uint8``.
    """
    if isinstance(x.grad_fn, _LIFSeqFunction._backward_cls):  # type: ignore[attr-defined]
        return True
    if not x.is_floating_point():
        return False
    return torch.equal(x.to(torch.uint8).to(x.dtype), x)


# ------------------------------------------------------------------------------ allocator

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def configure_cpu_allocator(trim_threshold: int = 1 << 30, mmap_threshold: int = 1 << 25) -> dict[str, Any]:
    """Keep freed memory in the process instead of giving it back to the system every step.

    glibc's ``malloc`` serves large blocks with ``mmap`` and returns them with ``munmap``
    as soon as they are freed; a training step that frees and re-allocates the same
    large activations then page-faults every page of them back in, every step
    (millions of faults). Two ``mallopt`` settings stop that: blocks above
    ``mmap_threshold`` still use ``mmap`` (glibc caps the threshold at 32 MiB), and the
    heap is trimmed only when more than ``trim_threshold`` bytes lie free at its top.

    Call it once, explicitly, before training (notebooks and the trainer do); importing
    spikelib never does. It is idempotent, does nothing (and says so) where the C
    library is not glibc (macOS, Windows, musl) or another allocator is preloaded
    (tcmalloc, jemalloc: already good), and logs what it did.

    Args:
        trim_threshold (int): bytes free at the heap top before glibc trims. Default 1 GiB.
        mmap_threshold (int): allocation size from which glibc uses ``mmap``. Default 32 MiB,
            glibc's maximum.

    Returns:
        dict: ``{"allocator": "glibc" | other, "changed": bool, "settings": {...}}``.
    """
    result: dict[str, Any] = {"allocator": "unknown", "changed": False, "settings": {}}
    try:
        libc = ctypes.CDLL(None)
        version = libc.gnu_get_libc_version
    except (OSError, AttributeError):
        logger.info("configure_cpu_allocator: not glibc, nothing to do")
        return result
    version.restype = ctypes.c_char_p
    result["allocator"] = f"glibc {version().decode()}"
    with open("/proc/self/maps", encoding="utf-8") as maps:
        preloaded = [name for name in ("tcmalloc", "jemalloc", "mimalloc") if name in maps.read()]
    if preloaded:
        result["allocator"] = preloaded[0]
        logger.info("configure_cpu_allocator: %s is loaded, leaving it alone", preloaded[0])
    else:
        settings = {"M_TRIM_THRESHOLD": trim_threshold, "M_MMAP_THRESHOLD": mmap_threshold}
        codes = {"M_TRIM_THRESHOLD": _M_TRIM_THRESHOLD, "M_MMAP_THRESHOLD": _M_MMAP_THRESHOLD}
        for name, value in settings.items():
            if libc.mallopt(codes[name], ctypes.c_int(value)) != 1:
                raise OSError(f"mallopt({name}, {value}) failed")
        result.update(changed=True, settings=settings)
        logger.info("configure_cpu_allocator: glibc mallopt %s", settings)
    return result
