r"""The training engine: one loop for every model and learning rule.

Small functions, each usable alone (torchvision's ``references/detection/engine.py``,
minGPT's ``Trainer``):

* :func:`train_one_epoch` runs a learning rule (a :class:`~spikelib.learning.base.LearningRule`:
  :class:`~spikelib.learning.bptt.BPTT` or :class:`~spikelib.learning.decolle.DECOLLE` for the
  localizer, :class:`~spikelib.learning.bptt.ClassifierBPTT` for the digits MLP) over one pass
  of a loader and returns the epoch's mean of every metric the rule reports;
* it hands the rule a :class:`~spikelib.training.update.OptimizerUpdater` for each batch
  (:class:`~spikelib.learning.base.Updater`): ``autocast()`` for its forward passes (mixed
  precision never covers a backward pass or an update) and ``step()``, one weight update;
* :func:`fit`: epochs of both, a validation function (by default the localization
  metrics of :func:`spikelib.eval.evaluate.evaluate`), a learning-rate schedule sized to the
  rule's updates, a checkpoint and a line of the metrics log (``metrics.jsonl``) after
  every epoch, callbacks so that a notebook can plot while it trains, and ``resume`` to
  continue a killed run exactly.

Reproducible on a CPU: the data order comes from a ``DistributedSampler`` seeded with
``(seed, epoch)``, the augmentation draws from ``(seed, epoch, index)``, and the global
random generators (which rate coding draws from) are saved in every checkpoint, so the
same seed and data give the same metrics, and a resumed run the same metrics as one that
never stopped. A NaN or infinite loss or weight raises
:class:`~spikelib.learning.base.TrainingDiverged` naming the epoch and step; the checkpoint
on disk stays the last good one.

The optimizer, its learning-rate schedule (one step per weight update) and the updater
live in :mod:`spikelib.training.update`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from spikelib.data.datasets import leaves
from spikelib.eval.evaluate import evaluate
from spikelib.learning.base import LearningRule, LocalizationTargets, TrainingDiverged
from spikelib.runtime.device import resolve_device
from spikelib.runtime.distributed import DistInfo, all_reduce_mean, prepare_model, unwrap
from spikelib.training.checkpoint import (
    CHECKPOINT_VERSION,
    capture_rng_state,
    check_compatible,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from spikelib.training.config import TrainConfig
from spikelib.training.update import OptimizerUpdater, build_optimizer, build_scheduler, gradient_sync

__all__ = [
    "TrainingDiverged",
    "make_train_loader",
    "set_epoch",
    "train_one_epoch",
    "validate_localization",
    "fit",
    "METRICS_LOG",
    "CHECKPOINT",
]

log = logging.getLogger(__name__)

METRICS_LOG = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"

#: The targets of a batch: localization targets, or a ``Tensor[B]`` of class labels.
TargetsT = TypeVar("TargetsT", Tensor, LocalizationTargets)
#: Validation data: a dataset, a loader, whatever the validation function reads.
ValDataT = TypeVar("ValDataT")
#: Called with every epoch's record.
Callback = Callable[[dict[str, Any]], None]
#: Called with every batch's metrics (as the rule returns them).
BatchCallback = Callable[[dict[str, float]], None]
#: ``(model, validation data) -> metrics``: what :func:`fit` reports as ``val_<key>``.
Validate = Callable[[nn.Module, ValDataT], Mapping[str, Any]]


# ------------------------------------------------------------------------------ data helpers


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Choose epoch ``epoch``'s data order (sampler) and augmentation draws (datasets)."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    for leaf in leaves(loader.dataset):
        if hasattr(leaf, "set_epoch"):
            leaf.set_epoch(epoch)


def make_train_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    info: DistInfo = DistInfo(),
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A shuffling loader whose order depends only on ``(seed, epoch)`` and this process's rank.

    Uses ``DistributedSampler`` for one process too (``num_replicas=1``), so the order is
    the same code path everywhere; the last incomplete batch is dropped, so every process
    takes the same number of equal steps. Call :func:`set_epoch` before each epoch.

    Raises:
        ValueError: fewer images per process than ``batch_size``.
    """
    sampler: DistributedSampler[int] = DistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed, drop_last=False
    )
    if sampler.num_samples < batch_size:
        raise ValueError(
            f"batch_size = {batch_size} is larger than the {sampler.num_samples} training images "
            f"each of the {info.world_size} process(es) sees; lower train.batch_size"
        )
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=True, pin_memory=pin_memory
    )


def _to_device(targets: TargetsT, device: torch.device) -> TargetsT:
    """A batch's targets on ``device``: a label tensor, or every tensor of a targets dict."""
    if isinstance(targets, Tensor):
        return targets.to(device, non_blocking=True)
    moved = LocalizationTargets(
        box=targets["box"].to(device, non_blocking=True), label=targets["label"].to(device, non_blocking=True)
    )
    if "index" in targets:
        moved["index"] = targets["index"].to(device, non_blocking=True)
    return moved


# ------------------------------------------------------------------------------ one epoch


def train_one_epoch(
    model: nn.Module,
    rule: LearningRule[TargetsT],
    loader: Iterable[tuple[Tensor, TargetsT]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    *,
    epoch: int = 0,
    device: torch.device | str = "cpu",
    amp: str = "none",
    grad_clip: float = 0.0,
    info: DistInfo = DistInfo(),
    progress: bool = True,
    desc: str = "train",
    on_batch: BatchCallback | None = None,
) -> dict[str, float]:
    """One pass over ``loader``: ``rule.train_step`` on every batch.

    Args:
        model: the model to train (possibly DDP-wrapped, see :func:`gradient_sync`).
        rule: the learning rule; it calls ``update.step()`` ``rule.updates_per_batch(model)``
            times per batch.
        loader: yields ``(images, targets)`` batches: ``targets`` is a
            :class:`~spikelib.learning.base.LocalizationTargets` dict for the localizer, a
            ``Tensor[B]`` of labels for a classifier; both go to ``device``.
        optimizer: over ``model``'s parameters.
        scheduler: stepped after every weight update (optional).
        epoch: 0-based, for messages.
        device: where the batches go.
        amp: "bf16" autocasts the rule's forward passes on a GPU (never backward or the update).
        grad_clip: clip the global gradient norm before every update (0: off).
        info: the process's place in a multi-process run (metrics are averaged over all;
            a rule with ``through_forward = False`` gets its gradients averaged).
        progress: show a progress bar (``tqdm.auto``: a widget in a notebook).
        desc: the bar's label.
        on_batch: called with every batch's metrics (e.g. to keep the loss of every batch).

    Returns:
        dict[str, float]: ``train_<key>`` for every key the rule returns (mean over the
        epoch's images, e.g. ``train_loss``, ``train_iou``), ``lr`` (at the epoch's end),
        ``train_seconds``.

    Raises:
        TrainingDiverged: a NaN or infinite loss (naming the epoch and step).
    """
    device = torch.device(device)
    update = OptimizerUpdater(
        optimizer, scheduler, device, amp, grad_clip, info, average=gradient_sync(rule, info) == "average"
    )
    totals: dict[str, float] = {}
    start, seen = time.perf_counter(), 0
    # the bar is told the length, not given the loader: tqdm.auto would call iter(loader) once more
    # (its asyncio part does), which draws a DataLoader's base seed and so shifts the shuffle
    total = len(loader) if isinstance(loader, Sized) else None
    bar = tqdm(total=total, desc=desc, leave=False, disable=not progress, unit="batch", dynamic_ncols=True)
    for step, (images, targets) in enumerate(loader):
        images, targets = images.to(device, non_blocking=True), _to_device(targets, device)
        optimizer.zero_grad(set_to_none=True)
        try:
            stats = rule.train_step(model, images, targets, update)
        except FloatingPointError as err:
            raise TrainingDiverged(f"training diverged in epoch {epoch + 1}, step {step + 1}: {err}") from err
        if not math.isfinite(stats["loss"]):
            raise TrainingDiverged(f"training diverged in epoch {epoch + 1}, step {step + 1}: loss = {stats['loss']}")
        if on_batch is not None:
            on_batch(stats)
        batch = images.shape[0]
        for key, value in stats.items():
            totals[key] = totals.get(key, 0.0) + float(value) * batch
        seen += batch
        bar.set_postfix({k: f"{totals[k] / seen:.3f}" for k in ("loss", "iou") if k in totals}, refresh=False)
        bar.update()
    bar.close()
    if seen == 0:
        raise ValueError("the loader yielded no batch: fewer images than one batch")
    means = all_reduce_mean({f"train_{k}": v / seen for k, v in totals.items()}, seen, info)
    return {**means, "lr": optimizer.param_groups[0]["lr"], "train_seconds": time.perf_counter() - start}


# ------------------------------------------------------------------------------ fit


def validate_localization(cfg: TrainConfig, device: torch.device, info: DistInfo = DistInfo()) -> Validate[Dataset]:
    """The default validation of :func:`fit`: :func:`spikelib.eval.evaluate.evaluate` with ``cfg``'s
    batch size and mixed precision (mean IoU, CorLoc, mAP@0.5, ...)."""
    return functools.partial(evaluate, batch_size=cfg.eval_batch_size, device=device, amp=cfg.amp, info=info)


def _epoch_validation(
    validate: Validate[ValDataT] | None,
    val_data: ValDataT | None,
    cfg: TrainConfig,
    device: torch.device,
    info: DistInfo,
) -> Callable[[nn.Module], Mapping[str, Any]] | None:
    """What :func:`fit` calls after every epoch: ``model -> metrics`` on ``val_data`` (``None``: no validation).

    Raises:
        TypeError: no ``validate`` and a ``val_data`` that is not a ``Dataset`` (the default,
            :func:`validate_localization`, evaluates a dataset).
    """
    if val_data is None:
        return None
    if validate is not None:
        given = validate
        return lambda model: given(model, val_data)
    if not isinstance(val_data, Dataset):
        raise TypeError(
            f"val_data is a {type(val_data).__name__}: fit's default validation (validate_localization) "
            "evaluates a Dataset; pass validate=(model, val_data) -> metrics for other data"
        )
    dataset: Dataset = val_data
    localization = validate_localization(cfg, device, info)
    return lambda model: localization(model, dataset)


@runtime_checkable
class _Configured(Protocol):
    """A model that carries its configuration (the localizers): stored in the checkpoint."""

    @property
    def config(self) -> _ConfigTable: ...


class _ConfigTable(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(record, sort_keys=True) + "\n")


def _rewrite_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)


def fit(
    model: nn.Module,
    rule: LearningRule[TargetsT],
    train_data: Dataset | DataLoader,
    val_data: ValDataT | None,
    cfg: TrainConfig,
    *,
    validate: Validate[ValDataT] | None = None,
    kind: str = "snn",
    seed: int = 0,
    run_dir: str | Path | None = None,
    resume: bool = False,
    run_config: dict[str, Any] | None = None,
    callbacks: Iterable[Callback] = (),
    on_batch: BatchCallback | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
    info: DistInfo = DistInfo(),
    optimizer: torch.optim.Optimizer | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` for ``cfg.epochs`` epochs, validating and checkpointing after each.

    Args:
        model: the model (built, not yet wrapped; moved to ``device`` here).
        rule: the learning rule (:class:`~spikelib.learning.base.LearningRule`); with several
            processes the model is wrapped in DDP or its gradients averaged, per
            :func:`gradient_sync`.
        train_data: a dataset of ``(image, target)`` items, batched by
            :func:`make_train_loader` (``cfg.batch_size``, order from ``seed``; ``set_epoch``
            is called on it), or a ready ``DataLoader`` used as it is (its own batch size
            and order).
        val_data: what ``validate`` reads after every epoch (``None``: skip).
        cfg: epochs, batch size, optimizer, schedule, clipping, amp.
        validate: ``(model, val_data) -> metrics``, recorded as ``val_<key>``. Default:
            the localization metrics (:func:`validate_localization`).
        kind: "snn" or "ann", recorded in the checkpoint.
        seed: seeds the data order.
        run_dir: where ``checkpoint.pt`` and ``metrics.jsonl`` go (``None``: keep nothing).
        resume: continue from ``run_dir/checkpoint.pt`` if it exists; it must come from the
            same model configuration (and, given ``run_config``, the same run).
        run_config: ``RunConfig.to_dict()``, stored in the checkpoint.
        callbacks: each called with every epoch's record (to plot live).
        on_batch: called with every batch's metrics (see :func:`train_one_epoch`).
        progress: progress bars (``tqdm.auto``).
        device: default: ``cfg.device`` resolved.
        info: this process's place in a multi-process run; only rank 0 writes files.
        optimizer: over ``model``'s parameters, already on ``device``. Default: built from
            ``cfg`` (:func:`build_optimizer`); given, it replaces ``cfg.optimizer``, ``cfg.lr``
            and ``cfg.weight_decay``, and the schedule scales its learning rates.

    Returns:
        list[dict]: one record per epoch (restored ones included): ``epoch``, ``train_*``,
        ``lr``, ``val_*`` (what ``validate`` returns), ``train_seconds``, ``seconds``.

    Raises:
        TrainingDiverged: NaN or infinite loss or weights; ``run_dir/checkpoint.pt`` is the
            last finished epoch's.
        CheckpointError: ``resume`` with a checkpoint of another model or run.
    """
    device = torch.device(device) if device is not None else resolve_device(cfg.device, info)
    model.to(device)
    run_dir = Path(run_dir) if run_dir is not None else None
    checkpoint_path = run_dir / CHECKPOINT if run_dir is not None else None
    train_model = prepare_model(model, info, device, gradient_sync(rule, info) == "ddp")
    optimizer = optimizer if optimizer is not None else build_optimizer(model, cfg)
    if isinstance(train_data, DataLoader):
        loader = train_data
    else:
        loader = make_train_loader(train_data, cfg.batch_size, seed, info, cfg.num_workers, device.type == "cuda")
    updates_per_epoch = len(loader) * rule.updates_per_batch(model)
    scheduler = build_scheduler(optimizer, cfg, updates_per_epoch)
    validation = _epoch_validation(validate, val_data, cfg, device, info)
    model_config = model.config.to_dict() if isinstance(model, _Configured) else {}
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume and checkpoint_path is not None and checkpoint_path.is_file():
        checkpoint = load_checkpoint(checkpoint_path, map_location=device)
        check_compatible(checkpoint, kind, model_config, checkpoint_path, run_config)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        rule.load_state_dict(checkpoint.get("rule", {}))
        restore_rng_state(checkpoint["rng"])
        history, start_epoch = list(checkpoint["history"]), int(checkpoint["epoch"])
        log.info("resumed %s from %s after epoch %d", kind, checkpoint_path, start_epoch)
    if info.is_main and run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        _rewrite_jsonl(run_dir / METRICS_LOG, history)
    callbacks = list(callbacks)
    epochs = tqdm(
        range(start_epoch, cfg.epochs),
        desc=f"{kind} epochs",
        disable=not progress,
        unit="epoch",
        initial=start_epoch,
        total=cfg.epochs,
        dynamic_ncols=True,
    )
    for epoch in epochs:
        started = time.perf_counter()
        set_epoch(loader, epoch)
        try:
            record: dict[str, Any] = {"epoch": epoch + 1}
            record.update(
                train_one_epoch(
                    train_model,
                    rule,
                    loader,
                    optimizer,
                    scheduler,
                    epoch=epoch,
                    device=device,
                    amp=cfg.amp,
                    grad_clip=cfg.grad_clip,
                    info=info,
                    progress=progress,
                    desc=f"{kind} epoch {epoch + 1}/{cfg.epochs}",
                    on_batch=on_batch,
                )
            )
            _check_finite_weights(model, epoch)
        except TrainingDiverged as err:
            kept = (
                f"the last good checkpoint is {checkpoint_path} (epoch {epoch})"
                if checkpoint_path is not None and epoch > 0
                else "no checkpoint was written"
            )
            raise TrainingDiverged(f"{err} ({kept})") from err
        if validation is not None:
            record.update({f"val_{k}": v for k, v in validation(model).items()})
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        if info.is_main and run_dir is not None and checkpoint_path is not None:
            save_checkpoint(
                checkpoint_path,
                {
                    "version": CHECKPOINT_VERSION,
                    "kind": kind,
                    "epoch": epoch + 1,
                    "global_step": (epoch + 1) * updates_per_epoch,
                    "model": unwrap(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rule": rule.state_dict(),
                    "rng": capture_rng_state(),
                    "data_epoch": epoch + 1,
                    "model_config": model_config,
                    "config": run_config or {},
                    "history": history,
                },
            )
            _append_jsonl(run_dir / METRICS_LOG, record)
        epochs.set_postfix({k: f"{record[k]:.3f}" for k in ("train_loss", "val_miou") if k in record})
        for callback in callbacks:
            callback(record)
    epochs.close()
    return history


def _check_finite_weights(model: nn.Module, epoch: int) -> None:
    for name, param in unwrap(model).named_parameters():
        if not torch.isfinite(param).all():
            raise TrainingDiverged(f"training diverged in epoch {epoch + 1}: parameter {name} holds NaN or inf")
