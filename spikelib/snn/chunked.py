r"""Running a spiking network a few time steps at a time, its state carried explicitly.

A network written layer by layer over whole sequences holds, between two layers, a
full-length activation ``[T, B, ...]``, and in the backward pass a full-length gradient.
Run over chunks of a few steps, each chunk continuing from the neuron states the previous
one ended in, it computes the same spikes and gradients while those temporaries are
``T / chunk_size`` times smaller. With one step per chunk this is the time-first order of
a snnTorch loop.

:func:`run_chunked` is the loop; the network supplies a *chunk function*
``chunk_fn(x_chunk, state, arena) -> (out_chunk, new_state)`` that runs one chunk from
``state`` (its neurons' :class:`~spikelib.snn.neurons.LIFState`, any structure it likes;
``None`` entries for rest) and returns the state to continue from. Nothing is stored on
the network's modules between chunks: the state goes in and comes out of the function.
What the chunks keep for the backward pass is carved from one
:class:`~spikelib.snn.saved.SavedArena` per call, passed to every chunk.

Every layer must be causal in time (step ``t`` of its output depends on steps ``<= t``
of its input). BatchNorm in training mode is not: its statistics span all ``T`` steps,
so a network with it runs the whole sequence at once
(:meth:`spikelib.models.localizer.SpikingLocalizer.forward` decides that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

from spikelib.snn.saved import SavedArena

__all__ = ["REDUCTIONS", "run_chunked"]

#: What :func:`run_chunked` returns: every step, or the sum, mean or last step over time.
REDUCTIONS: tuple[str | None, ...] = (None, "sum", "mean", "last")

StateT = TypeVar("StateT")


def run_chunked(
    chunk_fn: Callable[[Tensor, StateT, SavedArena], tuple[Tensor, StateT]],
    x_seq: Tensor,
    state: StateT,
    chunk_size: int = 1,
    reduce: str | None = None,
) -> Tensor:
    r"""Run ``chunk_fn`` over ``x_seq`` ``chunk_size`` steps at a time, threading its state.

    .. math::

        (y_{[k]}, s_{k+1}) = f(x_{[k]}, s_k), \qquad k = 0, 1, \dots, \lceil T / c \rceil - 1

    with :math:`x_{[k]}` the ``k``-th chunk of ``c = chunk_size`` steps and :math:`s_0` =
    ``state``. Gradients flow from each chunk's state into the previous chunk, so the
    result and its gradients are those of one call over the whole sequence.

    Args:
        chunk_fn (callable): ``(x_chunk [t, B, ...], state, arena) -> (y_chunk [t, B, ...], state)``
            for any ``1 <= t <= chunk_size``.
        x_seq (Tensor[T, B, ...]): the input sequence.
        state: the state before the first step (e.g. a tuple of ``None``: all at rest).
        chunk_size (int): steps per chunk, >= 1.
        reduce (str or None): one of :data:`REDUCTIONS`. ``None`` returns every step;
            ``"sum"`` / ``"mean"`` the sum / mean over time and ``"last"`` the last step,
            accumulated chunk by chunk (no full-length output is formed).

    Returns:
        Tensor: ``[T, B, ...]`` (``reduce=None``) or ``[B, ...]``.

    Raises:
        ValueError: ``chunk_size`` not an int >= 1, an unknown ``reduce``, or an empty ``x_seq``.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {list(REDUCTIONS)}, got {reduce!r}")
    if not isinstance(x_seq, Tensor) or x_seq.ndim < 1 or x_seq.shape[0] < 1:
        shape = tuple(x_seq.shape) if isinstance(x_seq, Tensor) else type(x_seq).__name__
        raise ValueError(f"x_seq must be a Tensor [T, B, ...] with T >= 1, got {shape}")
    arena = SavedArena()
    outputs: list[Tensor] = []
    total: Tensor | None = None
    for x_chunk in x_seq.split(chunk_size):
        y_chunk, state = chunk_fn(x_chunk, state, arena)
        if reduce is None:
            outputs.append(y_chunk)
        elif reduce == "last":
            total = y_chunk[-1]
        else:
            part = y_chunk.squeeze(0) if y_chunk.shape[0] == 1 else y_chunk.sum(0)
            total = part if total is None else total + part
    if reduce is None:
        return torch.cat(outputs)
    if total is None:  # unreachable: x_seq has at least one step, so one chunk ran
        raise ValueError("x_seq has no time step")
    if reduce == "mean":
        return total / x_seq.shape[0]
    return total
