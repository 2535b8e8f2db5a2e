"""How long and how to train one model, as data (the ``[train]`` table of a run configuration)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from spikelib.checks import check_choice as _choice
from spikelib.checks import check_number as _number
from spikelib.learning.bptt import check_loss_kwargs
from spikelib.learning.rules import RULES

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULES", "AMP_MODES", "DEVICES"]


OPTIMIZERS = ("adamw", "adam", "sgd")


SCHEDULES = ("onecycle", "cosine", "constant")


AMP_MODES = ("none", "bf16")


DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """How long and how to train one model (the ``[train]`` table; ``[ann]`` overrides it).

    Attributes:
        epochs: passes over the training images.
        batch_size: images per step (per process in multi-process runs).
        optimizer: "adamw", "adam" or "sgd" (momentum 0.9, Nesterov).
        lr: peak learning rate.
        weight_decay: decoupled (adamw) or L2 (adam, sgd) weight decay.
        schedule: "onecycle" (linear warm-up over ``warmup`` of the steps, then cosine
            down to lr/1000), "cosine" (cosine from lr, after the same warm-up) or "constant".
        warmup: share of the steps spent warming up, in [0, 0.5].
        grad_clip: clip the global gradient norm to this (0: off). Applied by the
            trainer before every weight update, so it works with any learning rule.
        amp: "none" or "bf16" (autocast the forward pass to bfloat16 on a GPU; ignored on a CPU).
        rule: learning rule of the SNN, "bptt" or "decolle" (the ANN always uses BPTT).
        rule_options: keyword arguments of that rule (see :func:`spikelib.learning.rules.make_rule`).
        loss: keyword arguments of :func:`spikelib.learning.losses.localization_loss`.
        eval_batch_size: images per evaluation batch.
        num_workers: DataLoader worker processes (0: load in the training process).
        device: "auto" (CUDA if available), "cpu" or "cuda".
        num_threads: ``torch.set_num_threads`` for the run (0: leave torch's choice).
    """

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    warmup: float = 0.1
    grad_clip: float = 0.0
    amp: str = "none"
    rule: str = "bptt"
    rule_options: dict = field(default_factory=dict)
    loss: dict = field(default_factory=dict)
    eval_batch_size: int = 128
    num_workers: int = 0
    device: str = "auto"
    num_threads: int = 0

    def __post_init__(self) -> None:
        _number("epochs", self.epochs, 1, integer=True)
        _number("batch_size", self.batch_size, 1, integer=True)
        _number("eval_batch_size", self.eval_batch_size, 1, integer=True)
        _number("num_workers", self.num_workers, 0, integer=True)
        _number("num_threads", self.num_threads, 0, integer=True)
        _number("lr", self.lr, 0.0)
        _number("weight_decay", self.weight_decay, 0.0)
        _number("warmup", self.warmup, 0.0, 0.5)
        _number("grad_clip", self.grad_clip, 0.0)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("amp", self.amp, AMP_MODES)
        _choice("device", self.device, DEVICES)

        _choice("rule", self.rule, RULES)
        for name in ("rule_options", "loss"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"{name} must be a table, got {getattr(self, name)!r}")
        try:
            check_loss_kwargs(dict(self.loss))
        except TypeError as err:
            raise ValueError(f"loss: {err}") from None
