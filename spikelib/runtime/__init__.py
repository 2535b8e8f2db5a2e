"""Process-level set-up below everything else: device, seeds, mixed precision, several processes."""

from spikelib.runtime.device import autocast, resolve_device, seed_everything
from spikelib.runtime.distributed import (
    DistInfo,
    all_reduce_mean,
    average_gradients,
    barrier,
    broadcast_parameters,
    gather_objects,
    init_distributed,
    max_replica_difference,
    prepare_model,
    shutdown_distributed,
    unwrap,
)

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
    "seed_everything",
    "resolve_device",
    "autocast",
]
