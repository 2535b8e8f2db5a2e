r"""Tensors kept for the backward pass: spike trains as ``int8``, in a few large blocks.

Autograd keeps a layer's input for its backward pass (a convolution needs it for the
weight gradient, a max-pool for routing the gradient). When that input is a spike train
its values are whole numbers (0 or 1; 0, 1 or 2 after a skip connection adds two), so
``int8`` holds them exactly in a quarter of the memory of float32:

* :func:`is_spike_train`: whether a tensor's values allow that (looked at, one pass);
* :func:`spikes_saved_as_int8`: a context in which what autograd saves of given spike
  tensors is kept as ``int8`` (and max-pool indices narrower than int64);
* :func:`apply_seq_packed`: :func:`~spikelib.snn.sequence.apply_seq` inside that context
  when its input is a spike train (the caller says so, or the values are looked at);
* :class:`SavedArena`: a bump allocator that puts those copies (and the fused LIF's
  membrane traces) into a few large blocks instead of thousands of small allocations,
  between which the C allocator's heap fragments; :func:`empty_cache` releases them.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import mmap
import weakref
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from spikelib.snn.sequence import apply_seq

__all__ = ["is_spike_train", "SavedArena", "empty_cache", "spikes_saved_as_int8", "apply_seq_packed"]


def is_spike_train(x: Tensor) -> bool:
    """True if ``x`` holds whole numbers in [-128, 127], so :func:`spikes_saved_as_int8` is exact.

    Told by the values alone (one conversion to ``int8`` and back, one comparison), so it
    holds for spikes whatever made them: a LIF layer, a rate or latency code, a max-pool,
    a sum of spike maps (a skip connection, SEW ``add``). Pixel values, currents, values
    beyond int8 and NaN give ``False``.

    Args:
        x (Tensor): e.g. a layer's input.

    Returns:
        bool: whether ``x`` may be kept as ``int8``.
    """
    if not x.is_floating_point():
        return False
    return torch.equal(x.detach().to(torch.int8).to(x.dtype), x.detach())


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

    After training with :func:`spikelib.snn.chunked.run_chunked`, the blocks that held the tensors saved for
    the backward pass stay mapped for the next step (as a C allocator keeps freed
    memory); call this to release them, e.g. before switching to a different model in
    the same notebook.

    Returns:
        int: the number of bytes released.
    """
    return _POOL.clear()


class SavedArena:
    """A bump allocator for tensors kept for the backward pass: a few large blocks.

    Used by :func:`spikelib.snn.chunked.run_chunked`. Run step by step, a network saves a few small tensors
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
        strides: list[int] = []
        step = 1
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

    def pack(saved: Tensor) -> Tensor | _PackedSpikes | _PackedIndices:
        if saved.dtype == torch.int64 and saved.numel() >= 1024:  # max-pool indices
            narrow = torch.int16 if int(saved.max()) <= torch.iinfo(torch.int16).max else torch.int32
            return _PackedIndices(_narrow_copy(saved, narrow, arena))
        if saved.is_floating_point() and (saved.device, saved.untyped_storage().data_ptr()) in spike_storages:
            return _PackedSpikes(_narrow_copy(saved, torch.int8, arena), saved.dtype)
        return saved

    def unpack(packed: Tensor | _PackedSpikes | _PackedIndices) -> Tensor:
        if isinstance(packed, _PackedSpikes):
            return packed.data.to(packed.dtype)
        if isinstance(packed, _PackedIndices):
            return packed.data.to(torch.int64)
        return packed

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


def apply_seq_packed(
    module: nn.Module,
    x_seq: Tensor,
    fold_time: bool | str = "auto",
    *,
    spikes: bool | None = None,
    arena: SavedArena | None = None,
) -> Tensor:
    """:func:`~spikelib.snn.sequence.apply_seq`, keeping ``x_seq`` as ``int8`` for backward if it is a spike train.

    Args:
        module (nn.Module): a stateless layer ``[B, ...] -> [B, ...]``.
        x_seq (Tensor[T, B, ...]): the sequence.
        fold_time (bool or "auto"): see :func:`~spikelib.snn.sequence.resolve_fold_time`.
        spikes (bool, optional): whether ``x_seq`` holds whole numbers in [-128, 127]. A
            network that knows its wiring says so (the output of a LIF layer, a max-pool of
            it, a sum of two spike maps); ``None``: :func:`is_spike_train` looks at the values.
        arena (SavedArena, optional): where the packed copies go; ``None``: ordinary allocations.

    Returns:
        Tensor[T, B, ...]: ``module`` applied at every step (the same values either way).
    """
    if torch.is_grad_enabled() and (is_spike_train(x_seq) if spikes is None else spikes):
        with spikes_saved_as_int8(x_seq, arena=arena):
            return apply_seq(module, x_seq, fold_time)
    return apply_seq(module, x_seq, fold_time)
