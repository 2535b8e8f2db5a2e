"""Several processes, one model: PyTorch's own data parallelism, and nothing else.

Launch any training command with ``torchrun``; each process trains a replica of the model
on its share of every epoch's images and the replicas stay identical::

    torchrun --standalone --nproc_per_node=4 -m spikelib train --config configs/voc-gpu.toml
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d \\
        --rdzv_endpoint=HOST:29500 -m spikelib train --config configs/voc-gpu.toml

What each piece does:

* :func:`init_distributed` reads the variables ``torchrun`` sets (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``) and joins the process group: ``nccl`` on GPUs, ``gloo``
  on CPUs. Without them it returns a single-process :class:`DistInfo` and changes nothing.
* :func:`prepare_model` wraps the model in ``DistributedDataParallel`` for end-to-end
  rules (BPTT), which averages the gradients during the backward pass. A rule that
  updates the weights several times per batch from local losses, outside the model's
  ``forward`` (DECOLLE), cannot go through DDP's forward; for it the replicas start from
  rank 0's weights and the trainer averages the gradients across
  processes before every weight update (:func:`average_gradients`), which
  keeps the replicas identical just the same.
* Every process sees a different shard of the data (``DistributedSampler``); metrics are
  averaged across processes (:func:`all_reduce_mean`) and evaluation predictions gathered
  (:func:`gather_objects`); only rank 0 writes logs, checkpoints and reports.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "init_distributed",
    "shutdown_distributed",
    "prepare_model",
    "unwrap",
    "average_gradients",
    "broadcast_parameters",
    "all_reduce_mean",
    "gather_objects",
    "barrier",
    "max_replica_difference",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among ``world_size`` processes, its GPU index on the node.

    A single process (no ``torchrun``) is ``DistInfo()``: rank 0 of 1, no backend.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes files."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when a process group with more than one process is active."""
        return self.world_size > 1 and self.backend is not None


def init_distributed(device_type: str = "cpu") -> DistInfo:
    """Join the process group ``torchrun`` prepared, or return a single-process :class:`DistInfo`.

    Args:
        device_type: "cuda" (backend ``nccl``, one GPU per process, ``LOCAL_RANK`` picks it)
            or "cpu" (backend ``gloo``).

    Returns:
        DistInfo: this process's rank and the world size.

    Raises:
        RuntimeError: ``device_type`` is "cuda" but the node has fewer GPUs than processes.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(rank, local_rank, world_size, dist.get_backend())
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"process {rank} wants GPU {local_rank} but this node has {torch.cuda.device_count()}; "
                "start at most one process per GPU (torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend)
    return DistInfo(rank, local_rank, world_size, backend)


def shutdown_distributed(info: DistInfo) -> None:
    """Leave the process group (a no-op for a single process)."""
    if info.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_parameters(model: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every process (in place)."""
    if info.is_distributed:
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                dist.broadcast(tensor.data, src=0)


def average_gradients(parameters: Iterable[nn.Parameter], info: DistInfo) -> None:
    """Average the gradients of ``parameters`` over the processes, in place.

    Each gradient is summed with one ``all_reduce`` and divided by the world size. Every
    process must call it the same number of times (true when they see equally many
    batches of equal length, which ``DistributedSampler`` ensures, and the rule updates
    equally often per batch). A parameter without a gradient on one process but with one
    on another would deadlock; it therefore reduces a zero gradient for it. Does nothing
    for a single process.
    """
    if not info.is_distributed:
        return
    for param in parameters:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
        param.grad /= info.world_size


def prepare_model(model: nn.Module, info: DistInfo, device: torch.device, through_forward: bool = True) -> nn.Module:
    """The module to train with: ``model`` itself, or wrapped for several processes.

    Args:
        model: already on ``device``.
        info: from :func:`init_distributed`.
        device: this process's device.
        through_forward: the learning rule computes its loss from ``model(images)`` and
            calls ``backward`` once per step (BPTT): wrap in ``DistributedDataParallel``.
            False (DECOLLE): return ``model`` unwrapped, with rank 0's weights broadcast;
            pair it with :func:`average_gradients` before every update.
    """
    if not info.is_distributed:
        return model
    if not through_forward:
        broadcast_parameters(model, info)
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def all_reduce_mean(values: Mapping[str, float], weight: float, info: DistInfo) -> dict[str, float]:
    """Weighted mean of scalar metrics over the processes (each weighted by its ``weight``, e.g. its image count).

    Args:
        values: this process's means.
        weight: how many samples they average (> 0).
        info: from :func:`init_distributed`.

    Returns:
        dict[str, float]: the same keys, averaged over all processes' samples.
    """
    if not info.is_distributed:
        return dict(values)
    keys = sorted(values)
    packed = torch.tensor([*(values[k] * weight for k in keys), weight], dtype=torch.float64, device=_comm_device(info))
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    packed = packed.cpu()
    return {k: float(packed[i] / packed[-1]) for i, k in enumerate(keys)}


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` for a single process)."""
    if not info.is_distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def _comm_device(info: DistInfo) -> torch.device:
    """Where small tensors for collectives live: NCCL only moves GPU tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if info.backend == "nccl" else torch.device("cpu")


def barrier(info: DistInfo) -> None:
    """Wait until every process gets here (a no-op for a single process)."""
    if info.is_distributed:
        dist.barrier()


def max_replica_difference(model: nn.Module, info: DistInfo) -> float:
    """Largest absolute difference between this process's parameters and rank 0's (0.0 when in sync)."""
    if not info.is_distributed:
        return 0.0
    worst = torch.zeros((), dtype=torch.float64, device=_comm_device(info))
    with torch.no_grad():
        for param in unwrap(model).parameters():
            reference = param.detach().clone()
            dist.broadcast(reference, src=0)
            worst = torch.maximum(worst, (param.detach() - reference).abs().max().double().to(worst.device))
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)
