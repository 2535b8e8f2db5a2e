r"""The execution engine in one import: how spiking layers run fast and lean on a CPU (and a GPU).

A spiking convolutional network spends its time in convolutions, like its ANN twin, but
``T`` times over; what decides whether it fits on a laptop is the memory that training
needs: autograd keeps, for the backward pass, every layer's input and membrane at every
step. The pieces below cut that to what backpropagation needs, without changing a single
number of the result. Each lives in its own module; this one gathers their public names.

* :mod:`spikelib.snn.fused`: :func:`lif_seq_fused` / :class:`FusedLIF`, the LIF recurrence
  of a whole sequence as one autograd node that keeps only the membrane.
* :mod:`spikelib.snn.sequence`: :func:`apply_seq` and ``fold_time``, a stateless layer sees
  ``[T*B, ...]`` in one call (a GPU's choice) or ``T`` calls of ``[B, ...]`` (a CPU's).
* :mod:`spikelib.snn.saved`: spike tensors that a layer keeps for its backward pass (a
  convolution's, a max-pool's input) kept as ``int8``, 4x smaller than float32 and exact;
  max-pool indices narrowed from int64; all of it in a few large blocks
  (:class:`SavedArena`).
* :mod:`spikelib.snn.chunked`: :func:`run_chunked`, a network run a few time steps at a
  time with its neuron states passed explicitly from chunk to chunk, so activations and
  gradients exist for one chunk, not for all ``T`` steps.
* :mod:`spikelib.runtime.allocator`: :func:`configure_cpu_allocator`, one explicit call that
  stops glibc's ``malloc`` from returning large blocks to the system and faulting them
  back in at every step.

:class:`spikelib.models.localizer.SpikingLocalizer` runs on all of them. What each piece
gave, measured, is in ``benchmarks/README.md``. Importing this module changes nothing;
every set-up is a function you call.
"""

from spikelib.runtime.allocator import configure_cpu_allocator
from spikelib.snn.chunked import REDUCTIONS, run_chunked
from spikelib.snn.fused import FusedLIF, lif_seq_fused
from spikelib.snn.saved import SavedArena, apply_seq_packed, empty_cache, is_spike_train, spikes_saved_as_int8
from spikelib.snn.sequence import FOLD_TIME_CHOICES, apply_seq, resolve_fold_time

__all__ = [
    "FOLD_TIME_CHOICES",
    "resolve_fold_time",
    "apply_seq",
    "lif_seq_fused",
    "FusedLIF",
    "is_spike_train",
    "SavedArena",
    "spikes_saved_as_int8",
    "apply_seq_packed",
    "empty_cache",
    "REDUCTIONS",
    "run_chunked",
    "configure_cpu_allocator",
]
