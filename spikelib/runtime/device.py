"""Where and how a process computes: its device, its seeds, mixed precision."""

from __future__ import annotations

import random
from contextlib import nullcontext

import numpy as np
import torch

from spikelib.runtime.distributed import DistInfo

__all__ = ["seed_everything", "resolve_device", "autocast"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (the job calls it; the library never does by itself)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str = "auto", info: DistInfo = DistInfo()) -> torch.device:
    """``"auto"`` -> this process's GPU if CUDA is available, else the CPU.

    Raises:
        RuntimeError: ``"cuda"`` requested on a machine without CUDA.
    """
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device = 'cuda' but torch sees no CUDA GPU here; use device = 'auto' or 'cpu'")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", info.local_rank)


def autocast(device: torch.device, amp: str) -> torch.autocast | nullcontext[None]:
    if amp == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()
