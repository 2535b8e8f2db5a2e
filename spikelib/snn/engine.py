r"""The execution engine: how spiking layers run fast and lean on a CPU (and a GPU).

A spiking convolutional network spends its time in convolutions, like its ANN twin, but
``T`` times over; what decides whether it fits on a laptop is the memory that training
needs: autograd keeps, for the backward pass, every layer's input and membrane at every
step. The pieces here cut that to what backpropagation needs, without changing a single
number of the result:

* :func:`lif_seq_fused` / :class:`FusedLIF` (in :mod:`spikelib.snn.fused`): the LIF
  recurrence of a whole sequence as one autograd node that keeps only the membrane.
* :func:`spikes_saved_as_int8`: a layer that keeps a spike tensor for its backward pass
  (a convolution, a max-pool) keeps it as ``int8``, 4x smaller than float32 and exact
  (spikes are whole numbers); max-pool indices are narrowed from int64 too.
* :func:`run_chunked`: a network written layer by layer over whole sequences runs a few
  time steps at a time, so that activations and gradients exist for one chunk, not for
  all ``T`` steps, and what is kept for the backward pass goes into a few large blocks
  (:class:`SavedArena`) instead of thousands of small ones between which the C
  allocator's heap fragments.
* :func:`apply_seq` and ``fold_time``: a stateless layer sees ``[T*B, ...]`` in one call
  (a GPU's choice) or ``T`` calls of ``[B, ...]`` (a CPU's).
* :func:`configure_cpu_allocator`: one explicit call that stops glibc's ``malloc`` from
  returning large blocks to the system and faulting them back in at every step.

What each piece gave, measured, is in ``benchmarks/README.md``. Importing this module
changes nothing; every set-up is a function you call.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import mmap
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from spikelib.snn.fused import FusedLIF, _Carry, _LIFSeqFunction, lif_seq_fused

__all__ = [
    "FOLD_TIME_CHOICES",
    "resolve_fold_time",
    "apply_seq",
    "lif_seq_fused",
    "FusedLIF",
    "is_spike_train",
    "SavedArena",
    "spikes_saved_as_int8",
    "run_chunked",
    "empty_cache",
    "configure_cpu_allocator",
]

logger = logging.getLogger(__name__)

#: Accepted values of ``fold_time``: fold time into the batch, step by step, or pick by device.
FOLD_TIME_CHOICES: tuple[Any, ...] = (True, False, "auto")


def resolve_fold_time(fold_time: bool | str, x: Tensor) -> bool:
    """Decide whether a stateless layer sees ``[T*B, ...]`` at once or ``T`` calls of ``[B, ...]``.

    Args:
        fold_time (bool or "auto"): ``True`` folds, ``False`` loops over steps, ``"auto"``
            folds on a GPU and loops on a CPU (a large call keeps a GPU busy; on a CPU one
            call per step is as fast and its tensors stay in cache).
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
    if x_seq.shape[0] == 1 or resolve_fold_time(fold_time, x_seq):  # one step: views, no copy
        return module(x_seq.flatten(0, 1)).unflatten(0, x_seq.shape[:2])
    # unbind, not x_seq[t]: indexing makes backward build a full-size zero tensor per step
    return torch.stack([module(x) for x in x_seq.unbind(0)])


# Autograd nodes whose output holds values of their (first) input: views, pooling, nearest upsampling.
_SAME_VALUES = frozenset(
    {
        "ViewBackward0",
        "UnsafeViewBackward0",
        "SqueezeBackward0",
        "SqueezeBackward1",
        "UnsqueezeBackward0",
        "UnbindBackward0",
        "SplitBackward0",
        "SelectBackward0",
        "SliceBackward0",
        "CloneBackward0",
        "PermuteBackward0",
        "TransposeBackward0",
        "ExpandBackward0",
        "MaxPool2DWithIndicesBackward0",
        "UpsampleNearest2DBackward0",
    }
)


def _spike_bound(node: Any, depth: int = 12) -> int | None:
    """Largest value a tensor made by autograd node ``node`` can hold, if it is a count of
    spikes (a whole number >= 0) by construction; ``None`` if that cannot be told."""
    if node is None or depth == 0:
        return None
    if isinstance(node, _LIFSeqFunction._backward_cls):  # type: ignore[attr-defined]
        return 1
    name = type(node).__name__
    inputs = [fn for fn, _ in node.next_functions]
    if name in _SAME_VALUES:
        return _spike_bound(inputs[0], depth - 1)
    if name in ("AddBackward0", "MulBackward0", "CatBackward0", "StackBackward0"):
        if name == "AddBackward0" and getattr(node, "_saved_alpha", 1) != 1:
            return None
        bounds = [_spike_bound(fn, depth - 1) for fn in inputs]
        if not bounds or any(b is None for b in bounds):
            return None
        if name == "AddBackward0":
            return sum(bounds)  # type: ignore[arg-type]
        return math.prod(bounds) if name == "MulBackward0" else max(bounds)  # type: ignore[type-var]
    return None


def is_spike_train(x: Tensor) -> bool:
    """True if ``x`` holds whole numbers in [-128, 127], so :func:`spikes_saved_as_int8` is exact.

    Told from the autograd graph where it can be: the spikes of a :class:`FusedLIF` (or
    :func:`lif_seq_fused`), their views, max-pools and nearest upsamplings, and sums and
    products of such (SEW ``add`` and ``and``) need no look at the values. Any other
    floating-point tensor (an encoded input, a SEW ``iand``) is checked (one conversion,
    one comparison).

    Args:
        x (Tensor): e.g. a layer's input.

    Returns:
        bool: whether ``x`` may be kept as ``int8``.
    """
    bound = _spike_bound(x.grad_fn)
    if bound is not None:
        return bound <= 127
    if not x.is_floating_point():
        return False
    return torch.equal(x.to(torch.int8).to(x.dtype), x)


# --------------------------------------------------------------------- saved tensors


class _BlockPool:
    """Anonymous memory maps for :class:`SavedArena` blocks, reused once nothing uses them.

    A block goes back to the pool by itself when the last tensor carved from it dies
    (a ``weakref.finalize`` on the buffer the tensor was made from), so a block is never
    handed out while a graph still holds data in it. Reusing blocks saves the page
    faults of fresh memory at every training step (measured: a tenth of a step at
    64x64, T=10). The pool keeps what it was given back until :func:`empty_cache`.
    """

    def __init__(self) -> None:
        self._free: dict[int, list[mmap.mmap]] = {}

    def take(self, nbytes: int) -> Tensor:
        """A byte tensor of exactly ``nbytes`` bytes on its own memory map (reused if one is free)."""
        free = self._free.get(nbytes)
        memory = free.pop() if free else self._new_map(nbytes)
        buffer = (ctypes.c_char * nbytes).from_buffer(memory)
        weakref.finalize(buffer, self._give_back, memory)
        return torch.frombuffer(buffer, dtype=torch.uint8)

    @staticmethod
    def _new_map(nbytes: int) -> mmap.mmap:
        # Its own map, not the C allocator's heap: it never splits the heap, and on Linux
        # it is advised to use transparent huge pages (one page fault per 2 MiB instead of
        # per 4 KiB) where the system's setting allows ("madvise" or "always").
        memory = mmap.mmap(-1, nbytes)
        if hasattr(memory, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
            with contextlib.suppress(OSError):
                memory.madvise(mmap.MADV_HUGEPAGE)
        return memory

    def _give_back(self, memory: mmap.mmap) -> None:
        self._free.setdefault(len(memory), []).append(memory)

    def clear(self) -> int:
        """Unmap every free block; return the bytes given back to the system."""
        freed = 0
        for size, maps in list(self._free.items()):
            while maps:
                maps.pop().close()
                freed += size
        return freed


_POOL = _BlockPool()


def empty_cache() -> int:
    """Give the cached blocks of :class:`SavedArena` back to the system.

    After training with :func:`run_chunked`, the blocks that held the tensors saved for
    the backward pass stay mapped for the next step (as a C allocator keeps freed
    memory); call this to release them, e.g. before switching to a different model in
    the same notebook.

    Returns:
        int: the number of bytes released.
    """
    return _POOL.clear()


class SavedArena:
    """A bump allocator for tensors kept for the backward pass: a few large blocks.

    Used by :func:`run_chunked`. Run step by step, a network saves a few small tensors
    per layer and per step for its backward pass; allocated one by one, they end up
    scattered between the short-lived activations of each step, and glibc's heap grows
    well beyond what is alive (fragmentation). Carved out of large blocks instead, each
    on its own memory map (on Linux advised to use huge pages), they leave the heap to
    the activations, which reuse the same free chunks at every step. Blocks come from a
    process-wide pool: a block returns to it when the last tensor carved from it dies,
    and is reused by the next training step without page faults (:func:`empty_cache`
    unmaps them). Each carved tensor has its own version counter, so autograd's
    in-place checks see them as separate tensors.

    Args:
        block_bytes (int): size of each block. Default 64 MiB.
    """

    def __init__(self, block_bytes: int = 64 << 20) -> None:
        self.block_bytes = int(block_bytes)
        self._block: Tensor | None = None
        self._offset = 0

    def empty(self, shape: torch.Size | tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        """An uninitialized contiguous tensor carved from the current block (CPU), or a new one."""
        if torch.device(device).type != "cpu":
            return torch.empty(shape, dtype=dtype, device=device)
        itemsize = torch.empty((), dtype=dtype).element_size()
        nbytes = math.prod(shape) * itemsize
        offset = -(-self._offset // 64) * 64  # 64-byte aligned, as torch's own allocations
        if self._block is None or offset + nbytes > self._block.numel():
            blocks = -(-nbytes // self.block_bytes)  # whole blocks, so freed ones fit again
            self._block = _POOL.take(blocks * self.block_bytes)
            offset = 0
        self._offset = offset + nbytes
        strides, step = [], 1
        for size in reversed(tuple(shape)):  # contiguous (row-major) strides
            strides.insert(0, step)
            step *= size
        return torch.empty(0, dtype=dtype).set_(self._block.untyped_storage(), offset // itemsize, shape, strides)


class _PackedSpikes:
    """A spike tensor kept as ``int8`` for the backward pass, with its original dtype.

    int8, not uint8: both hold spike counts exactly, but on a CPU float32 -> int8 is a
    vectorized conversion and float32 -> uint8 is not (measured 0.5 ms against 2.1 ms for
    2 M values).
    """

    __slots__ = ("data", "dtype")

    def __init__(self, data: Tensor, dtype: torch.dtype) -> None:
        self.data, self.dtype = data, dtype


class _PackedIndices:
    """Integer indices kept narrower than int64 (exact: all lie in range)."""

    __slots__ = ("data",)

    def __init__(self, data: Tensor) -> None:
        self.data = data


def _narrow_copy(x: Tensor, dtype: torch.dtype, arena: SavedArena | None) -> Tensor:
    if arena is None:
        return x.to(dtype)
    out = arena.empty(x.shape, dtype, x.device)
    out.copy_(x)
    return out


@contextlib.contextmanager
def spikes_saved_as_int8(*spike_tensors: Tensor, arena: SavedArena | None = None) -> Iterator[None]:
    """Within the context, layers keep these spike tensors for backward as ``int8``.

    Autograd keeps a layer's input for its backward pass (a convolution needs it for the
    weight gradient, a max-pool for routing the gradient). When that input is a spike
    train its values are whole numbers (0 or 1; 0, 1 or 2 after a SEW ``add``), so
    ``int8`` holds them exactly in a quarter of the memory of float32. Inside this
    context every tensor that autograd saves and that shares memory with one of
    ``spike_tensors`` (the tensor or a view of it, e.g. one step of a sequence) is kept
    as ``int8`` and turned back into its dtype when the backward pass reads it.
    int64 indices (a max-pool's) are kept as int16 or int32, whichever holds them.
    Other saved tensors (weights, membranes) are left alone.

    Built on ``torch.autograd.graph.saved_tensors_hooks``.

    Args:
        *spike_tensors (Tensor): tensors whose values are whole numbers in [-128, 127]. The
            caller vouches for this (see :func:`is_spike_train`); nothing is checked.
        arena (SavedArena, optional): where to put the packed copies; ``None``: ordinary
            allocations.

    Example::

        with spikes_saved_as_int8(spk_seq):
            cur_seq = apply_seq(conv, spk_seq)
    """
    # Identify the spike tensors by address only: autograd keeps the hooks with every
    # tensor they packed, and a reference here would keep the float spikes alive.
    spike_storages = {(s.device, s.untyped_storage().data_ptr()) for s in spike_tensors}
    del spike_tensors

    def pack(saved: Tensor) -> Any:
        if saved.dtype == torch.int64 and saved.numel() >= 1024:  # max-pool indices
            narrow = torch.int16 if int(saved.max()) <= torch.iinfo(torch.int16).max else torch.int32
            return _PackedIndices(_narrow_copy(saved, narrow, arena))
        if saved.is_floating_point() and (saved.device, saved.untyped_storage().data_ptr()) in spike_storages:
            return _PackedSpikes(_narrow_copy(saved, torch.int8, arena), saved.dtype)
        return saved

    def unpack(packed: Any) -> Tensor:
        if isinstance(packed, _PackedSpikes):
            return packed.data.to(packed.dtype)
        if isinstance(packed, _PackedIndices):
            return packed.data.to(torch.int64)
        return packed

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


# --------------------------------------------------------------------------- chunks


def run_chunked(module: nn.Module, x_seq: Tensor, chunk_size: int | None = 1, reduce: str | None = None) -> Tensor:
    """``module(x_seq)``, computed ``chunk_size`` time steps at a time.

    A network written layer by layer over whole sequences (every layer maps ``[T, B, ...]``
    to ``[T, B, ...]``, as the blocks of :mod:`spikelib.snn.layers` do) holds, between two
    layers, a full-length activation ``[T, B, ...]``, and in the backward pass a
    full-length gradient. Run over chunks of ``chunk_size`` steps, every
    :class:`FusedLIF` continuing from where the previous chunk left it, it computes the
    same spikes and gradients while those temporaries are ``T / chunk_size`` times
    smaller; what it keeps for the backward pass goes into a :class:`SavedArena`. With
    ``chunk_size=1`` this is the step-by-step order of a snnTorch loop. The states and
    the arena live for this call only: each call starts from rest.

    Every layer of ``module`` must be causal in time (step ``t`` of its output depends on
    steps ``<= t`` of its input) and keep no state of its own except through
    :class:`FusedLIF`: convolutions, pooling, upsampling, additions are. BatchNorm in
    training mode is not (its statistics span the whole sequence), so it is refused.

    Args:
        module (nn.Module): ``[t, B, ...] -> [t, B, ...]`` for any ``t``.
        x_seq (Tensor[T, B, ...]): the input sequence.
        chunk_size (int or None): steps per chunk; ``None`` runs the whole sequence at once.
        reduce (str or None): ``None`` returns every step; ``"sum"`` or ``"mean"`` the sum or
            mean over time, accumulated chunk by chunk (no full-length output is formed).

    Returns:
        Tensor: ``[T, B, ...]`` (``reduce=None``) or ``[B, ...]``.

    Raises:
        ValueError: ``chunk_size`` not a positive int or None, unknown ``reduce``, or a
            BatchNorm layer in training mode while ``chunk_size`` is smaller than ``T``.
    """
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be an int >= 1 or None, got {chunk_size!r}")
    if reduce not in (None, "sum", "mean"):
        raise ValueError(f"reduce must be None, 'sum' or 'mean', got {reduce!r}")
    num_steps = x_seq.shape[0]
    if chunk_size is None or chunk_size >= num_steps:
        out_seq = module(x_seq)
        return out_seq if reduce is None else (out_seq.sum(0) if reduce == "sum" else out_seq.mean(0))
    for name, layer in module.named_modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.training:
            raise ValueError(
                f"run_chunked: {name or type(module).__name__} is a BatchNorm layer in training mode; its "
                "statistics span all T steps, so the sequence cannot be cut into chunks "
                "(use chunk_size=None, or model.eval())"
            )
    arena = SavedArena()
    lifs = [layer for layer in module.modules() if isinstance(layer, FusedLIF)]
    savers = [layer for layer in module.modules() if hasattr(type(layer), "_saved_arena")]
    for lif in lifs:
        lif._carry = _Carry(arena)
    for layer in savers:
        layer._saved_arena = arena
    try:
        outputs: list[Tensor] = []
        total: Tensor | None = None
        for chunk in x_seq.split(chunk_size):
            out_seq = module(chunk)
            if reduce is None:
                outputs.append(out_seq)
            else:
                part = out_seq.squeeze(0) if out_seq.shape[0] == 1 else out_seq.sum(0)
                total = part if total is None else total + part
    finally:
        for lif in lifs:
            del lif._carry
        for layer in savers:
            del layer._saved_arena
    if reduce is None:
        return torch.cat(outputs)
    return total if reduce == "sum" else total / num_steps


# ------------------------------------------------------------------------------ allocator

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4


def configure_cpu_allocator(
    trim_threshold: int = 1 << 30, mmap_threshold: int = 1 << 25, mmap_max: int | None = None
) -> dict[str, Any]:
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
        if mmap_max is not None:
            settings["M_MMAP_MAX"] = mmap_max
        codes = {
            "M_TRIM_THRESHOLD": _M_TRIM_THRESHOLD,
            "M_MMAP_THRESHOLD": _M_MMAP_THRESHOLD,
            "M_MMAP_MAX": _M_MMAP_MAX,
        }
        for name, value in settings.items():
            if libc.mallopt(codes[name], ctypes.c_int(value)) != 1:
                raise OSError(f"mallopt({name}, {value}) failed")
        result.update(changed=True, settings=settings)
        logger.info("configure_cpu_allocator: glibc mallopt %s", settings)
    return result
