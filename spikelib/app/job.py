"""The main job: a run configuration in, trained models and a report out.

:func:`run_job` is what ``python -m spikelib train --config configs/<name>.toml`` (and
``make train``) runs: prepare the data (generate it if missing), train the spiking
localizer and its ANN twin with the same budget, evaluate both on the held-out test
split, and write ``runs/<name>/``::

    runs/<name>/
      config.json          the resolved run configuration
      snn/checkpoint.pt    last finished epoch (model, optimizer, schedule, RNG, history)
      snn/metrics.jsonl    one line of metrics per epoch
      ann/...              the same for the twin
      results.json         test metrics of both models
      report.md            metrics table, per-class AP, IoU by object size, figures
      curves.png, gallery.png

:func:`build_data` turns the ``[data]`` table into datasets; :func:`evaluate_checkpoint`
is ``python -m spikelib eval``.

Real Pascal VOC (``configs/voc-gpu.toml``) trains on VOC2007 trainval + VOC2012 trainval
and tests on VOC2007 test. VOC2012's folder also holds some VOC2007 photos under another
name (VOC2007 ``000032`` is VOC2012 ``2007_000032``); :func:`build_data` matches them by
that name and drops from the training set every image that repeats another training
image or appears in the test split, and logs how many.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from spikelib.app import report
from spikelib.app.config import ConfigError, DataConfig, RunConfig, parse_split, upgrade_stored_config
from spikelib.data import VOCLocalization, ensure_synthetic
from spikelib.data.datasets import dataset_classes, dataset_len
from spikelib.data.voc import VOC_YEARS
from spikelib.eval.activity import spike_activity
from spikelib.eval.evaluate import evaluate, predict
from spikelib.learning.base import LearningRule, LocalizationTargets
from spikelib.learning.rules import make_rule
from spikelib.models.localizer import SpikingLocalizer, build_ann_twin, build_localizer
from spikelib.paths import runs_root
from spikelib.runtime.allocator import configure_cpu_allocator
from spikelib.runtime.device import resolve_device, seed_everything
from spikelib.runtime.distributed import (
    DistInfo,
    barrier,
    init_distributed,
    max_replica_difference,
    shutdown_distributed,
)
from spikelib.training.checkpoint import check_compatible, load_checkpoint
from spikelib.training.trainer import CHECKPOINT, fit

__all__ = [
    "Splits",
    "build_data",
    "canonical_image_key",
    "default_runs_dir",
    "build_model",
    "build_rule",
    "prepare_runtime",
    "run_data",
    "TrainedModel",
    "train_variant",
    "run_job",
    "load_trained",
    "evaluate_checkpoint",
]

log = logging.getLogger(__name__)


class Splits(NamedTuple):
    """The datasets of a run and their class names."""

    train: Dataset
    val: Dataset
    test: Dataset
    classes: tuple[str, ...]


def default_runs_dir() -> Path:
    """``$SPIKELIB_RUNS``, else ``runs/`` of the project root (:func:`spikelib.paths.runs_root`)."""
    return runs_root()


def canonical_image_key(dataset: str, image_id: str) -> str:
    """One name per photo across VOC years: ``("2012", "2007_000032")`` and ``("2007", "000032")``
    are both ``"2007/000032"``; other datasets keep ``"<dataset>/<id>"``."""

    if dataset in VOC_YEARS:
        year, sep, number = image_id.partition("_")
        return f"{year}/{number}" if sep and year in VOC_YEARS else f"{dataset}/{image_id}"
    return f"{dataset}/{image_id}"


def _load_parts(
    cfg: DataConfig, specs: Sequence[str], root: Path, augment: bool, seed: int, progress: bool
) -> list[Any]:

    return [
        VOCLocalization(
            root,
            dataset=name,
            image_set=image_set,
            policy=cfg.policy,
            image_size=cfg.image_size,
            grayscale=cfg.grayscale,
            augment=augment,
            cache=cfg.cache,
            bad_samples=cfg.bad_samples,
            jitter=cfg.jitter,
            seed=seed,
            progress=progress,
        )
        for name, image_set in map(parse_split, specs)
    ]


def _keys(part: Any) -> list[str]:
    return [canonical_image_key(part.dataset, ann.image_id) for ann in part.annotations]


def _concat(parts: Sequence[Dataset]) -> Dataset:
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def build_data(cfg: DataConfig, seed: int = 0, progress: bool = True) -> Splits:
    """Datasets of the ``[data]`` table: generated if missing, duplicates dropped, validation held out if asked.

    Args:
        cfg: the data configuration.
        seed: seeds the augmentation and the validation hold-out.
        progress: progress bars while generating data and decoding images.

    Returns:
        Splits: ``train`` (augmented if ``cfg.augment``), ``val``, ``test`` and the class names.

    Raises:
        FileNotFoundError: missing data root, year or split (the message says what is there).
        ValueError: the splits have different class lists, or nothing is left to train on.
    """

    root = cfg.root_path()
    names = {parse_split(spec)[0] for spec in (*cfg.train, *cfg.val, *cfg.test)}
    for name in sorted(names - set(VOC_YEARS)):
        if cfg.generate:
            ensure_synthetic(root, progress=progress, **{**cfg.synth, "name": name})
    train_parts = _load_parts(cfg, cfg.train, root, cfg.augment, seed, progress)
    test_parts = _load_parts(cfg, cfg.test, root, False, seed, progress)
    val_parts = _load_parts(cfg, cfg.val, root, False, seed, progress) if cfg.val else []
    held_out = {key for part in (*test_parts, *val_parts) for key in _keys(part)}
    seen: set[str] = set()
    kept_parts, dropped = [], 0
    for part in train_parts:
        keep = []
        for i, key in enumerate(_keys(part)):
            if key not in held_out and key not in seen:
                keep.append(i)
            seen.add(key)
        dropped += len(part) - len(keep)
        kept_parts.append(part if len(keep) == len(part) else Subset(part, keep))
    if dropped:
        log.warning("dropped %d training images that repeat another training image or a test/val image", dropped)
    train = _concat(kept_parts)
    val: Dataset
    if not cfg.val:
        order = torch.randperm(dataset_len(train), generator=torch.Generator().manual_seed(seed)).tolist()
        count = max(1, round(cfg.val_fraction * dataset_len(train)))
        plain = _concat([_without_augmentation(p) for p in kept_parts])
        val, train = Subset(plain, sorted(order[:count])), Subset(train, sorted(order[count:]))
    else:
        val = _concat(val_parts)
    if dataset_len(train) == 0:
        raise ValueError(f"no training image left in {list(cfg.train)} after removing test/val duplicates")
    classes = dataset_classes(ConcatDataset([train, val, _concat(test_parts)]))
    return Splits(train, val, _concat(test_parts), classes)


def _without_augmentation(part: Any) -> Any:
    """A shallow copy that shares the decoded images but does not augment."""
    if isinstance(part, Subset):
        return Subset(_without_augmentation(part.dataset), part.indices)
    plain = copy.copy(part)
    plain.augment = False
    return plain


def build_model(kind: str, cfg: RunConfig) -> torch.nn.Module:
    """The spiking localizer (``"snn"``: ``[model]`` and ``[snn]``) or its ANN twin (``"ann"``: ``[model]``)."""

    if kind == "snn":
        return build_localizer(cfg.model_config("snn"))
    return build_ann_twin(cfg.model_config(kind))  # raises on another kind


def build_rule(kind: str, cfg: RunConfig) -> LearningRule[LocalizationTargets]:
    """The learning rule of ``kind``: ``train.rule`` for the SNN, BPTT for the ANN (with the loss options)."""

    tcfg = cfg.train_config(kind)
    if kind == "ann":
        return make_rule("bptt", **tcfg.loss)
    return make_rule(tcfg.rule, **tcfg.loss, **tcfg.rule_options)


def _check_run_dir(run_dir: Path, kinds: Sequence[str], resume: bool, fresh: bool, info: DistInfo) -> None:
    existing = [run_dir / kind / CHECKPOINT for kind in kinds if (run_dir / kind / CHECKPOINT).is_file()]
    if existing and not (resume or fresh):
        raise FileExistsError(
            f"{run_dir} already holds {', '.join(str(p.relative_to(run_dir)) for p in existing)}; "
            "pass --resume to continue (or reuse) it, or --fresh to start over"
        )
    if fresh and info.is_main:
        for kind in kinds:
            shutil.rmtree(run_dir / kind, ignore_errors=True)
    barrier(info)


def prepare_runtime(cfg: RunConfig, info: DistInfo = DistInfo()) -> torch.device:
    """Set torch's thread count (``train.num_threads``) and, on a CPU, the allocator; return the device."""
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    device = resolve_device(cfg.train.device, info)
    if device.type == "cpu":  # keep freed activations in the process between steps
        configure_cpu_allocator()
    return device


def run_data(cfg: RunConfig, progress: bool = True) -> Splits:
    """:func:`build_data` of ``cfg.data``, checked against ``model.num_classes``.

    Raises:
        ConfigError: the model's ``num_classes`` does not match the data.
    """
    splits = build_data(cfg.data, cfg.seed, progress=progress)
    if len(splits.classes) != cfg.model.num_classes:
        raise ConfigError(
            f"model.num_classes = {cfg.model.num_classes} but the data has {len(splits.classes)} "
            f"classes ({', '.join(splits.classes)}); set model.num_classes = {len(splits.classes)}"
        )
    return splits


class TrainedModel(NamedTuple):
    """A model of a run after :func:`train_variant`.

    Attributes:
        model: the trained network, on the training device.
        history: one metrics record per epoch (restored ones included).
        source: "trained", "resumed after epoch N", "checkpoint" (finished, only loaded)
            or "reused" (another run's finished checkpoint, see :func:`train_variant`'s ``reuse``).
    """

    model: torch.nn.Module
    history: list[dict[str, Any]]
    source: str


def train_variant(
    kind: str,
    cfg: RunConfig,
    train_set: Dataset,
    val_set: Dataset | None,
    run_dir: Path | None,
    *,
    resume: bool = False,
    device: torch.device | None = None,
    reuse: Path | None = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[dict], None]] = (),
    info: DistInfo = DistInfo(),
) -> TrainedModel:
    """Build the model of ``kind`` from ``cfg`` (after seeding) and train it, or load it.

    The one place the job and the study train a model: seed with ``cfg.seed``, build
    (:func:`build_model`), then either load ``reuse`` (a finished checkpoint of another
    run, when ``run_dir`` has none) or :func:`~spikelib.training.trainer.fit` with
    ``cfg``'s learning rule and budget, saving to ``run_dir``.

    Args:
        kind: "snn" or "ann".
        cfg: the run configuration of this model.
        train_set, val_set: the data (``val_set`` ``None``: no per-epoch validation).
        run_dir: where its ``checkpoint.pt`` and ``metrics.jsonl`` go (``None``: keep nothing).
        resume: continue (or only load, if finished) ``run_dir``'s checkpoint.
        device: where to train (default: ``train.device`` resolved).
        reuse: a checkpoint to load instead of training, already checked by the caller
            (see :func:`load_trained` for the checks).
        progress: progress bars.
        callbacks: each called with every epoch's record.
        info: this process's place in a multi-process run.

    Returns:
        TrainedModel: the model, its history and where it came from.

    Raises:
        TrainingDiverged, CheckpointError: see :func:`spikelib.training.trainer.fit`.
    """
    seed_everything(cfg.seed)
    model = build_model(kind, cfg)
    checkpoint = run_dir / CHECKPOINT if run_dir is not None else None
    found = checkpoint if checkpoint is not None and checkpoint.is_file() else None
    if reuse is not None and found is None:
        state = load_checkpoint(reuse)
        model.load_state_dict(state["model"])
        return TrainedModel(
            model.to(device or resolve_device(cfg.train.device, info)), list(state["history"]), "reused"
        )
    done = int(load_checkpoint(found)["epoch"]) if resume and found is not None else 0
    history = fit(
        model,
        build_rule(kind, cfg),
        train_set,
        val_set,
        cfg.train_config(kind),
        kind=kind,
        seed=cfg.seed,
        run_dir=run_dir,
        resume=resume,
        run_config=cfg.to_dict(),
        callbacks=callbacks,
        progress=progress,
        device=device,
        info=info,
    )
    epochs = cfg.train_config(kind).epochs
    source = "checkpoint" if done >= epochs else f"resumed after epoch {done}" if done else "trained"
    return TrainedModel(model, history, source)


def _call_with_kind(callbacks: Sequence[Callable[[str, dict], None]], kind: str, record: dict) -> None:
    """``callback(kind, record)`` for each of ``callbacks`` (train_variant's callbacks take the record alone)."""
    for callback in callbacks:
        callback(kind, record)


def run_job(
    cfg: RunConfig,
    runs_dir: str | Path | None = None,
    *,
    resume: bool = False,
    fresh: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callable[[str, dict], None]] = (),
    print_fn: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train every model of ``cfg``, evaluate on the test split, write the report.

    Run under ``torchrun`` it trains on all processes (see :mod:`spikelib.runtime.distributed`);
    rank 0 writes the files and prints.

    Args:
        cfg: the run configuration.
        runs_dir: parent of the run folder (default :func:`default_runs_dir`).
        resume: continue from existing checkpoints (a finished model is only evaluated).
        fresh: delete this run's checkpoints first.
        progress: progress bars.
        callbacks: ``callback(kind, epoch_record)`` after every epoch.
        print_fn: where the final table goes (``None``: nowhere).

    Returns:
        dict: ``{kind: {"history", "test", "predictions", "num_params", "train_seconds"}}``.

    Raises:
        FileExistsError: the run has checkpoints and neither ``resume`` nor ``fresh``.
        ConfigError: the model's ``num_classes`` does not match the data.
        TrainingDiverged, CheckpointError, FileNotFoundError: see :func:`spikelib.training.trainer.fit`
            and :func:`build_data`.
    """

    run_dir = Path(runs_dir or default_runs_dir()) / cfg.name
    started, cpu_started, load_start = time.perf_counter(), time.process_time(), _load_average()
    want_cuda = cfg.train.device == "cuda" or (cfg.train.device == "auto" and torch.cuda.is_available())
    info = init_distributed("cuda" if want_cuda else "cpu")
    try:
        _check_run_dir(run_dir, cfg.models, resume, fresh, info)
        device = prepare_runtime(cfg, info)
        splits = run_data(cfg, progress=progress and info.is_main)
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
        results: dict[str, Any] = {}
        for kind in cfg.models:
            hooks = [functools.partial(_call_with_kind, callbacks, kind)]
            model, history, _ = train_variant(
                kind,
                cfg,
                splits.train,
                splits.val,
                run_dir / kind,
                resume=resume,
                device=device,
                progress=progress and info.is_main,
                callbacks=hooks,
                info=info,
            )
            tcfg = cfg.train_config(kind)
            drift = max_replica_difference(model, info)
            if drift > 0:
                raise RuntimeError(f"the {kind} replicas differ after training (max |difference| = {drift:.3g})")
            start = time.perf_counter()
            predictions = predict(model, splits.test, tcfg.eval_batch_size, device, tcfg.amp, info)
            test = evaluate(model, splits.test, predictions=predictions)
            test["seconds"] = time.perf_counter() - start
            results[kind] = {
                "history": history,
                "test": test,
                "predictions": predictions,
                "num_params": sum(p.numel() for p in model.parameters()),
                "train_seconds": sum(r["seconds"] for r in history),
            }
            if isinstance(model, SpikingLocalizer) and info.is_main:  # the "snn" kind
                images = torch.stack([splits.test[i][0] for i in range(min(256, dataset_len(splits.test)))])
                results[kind]["activity"] = spike_activity(model.cpu(), images)
                model.to(device)
        if info.is_main:
            meta = {
                "wall_seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu_started,
                "threads": torch.get_num_threads(),
                "device": str(device),
                "load_start": load_start,
                "load_end": _load_average(),
            }
            report.write_report(run_dir, cfg, results, splits.test, meta=meta)
            if print_fn is not None:
                print_fn(report.format_summary(cfg, results, run_dir, meta))
        barrier(info)
        return results
    finally:
        shutdown_distributed(info)


def load_trained(
    checkpoint: str | Path, cfg: RunConfig | None = None, kind: str | None = None
) -> tuple[torch.nn.Module, dict[str, Any], RunConfig]:
    """The model saved in a checkpoint, built from its configuration, with its weights loaded (on the CPU).

    Args:
        checkpoint: a ``checkpoint.pt`` written by :func:`spikelib.training.trainer.fit`.
        cfg: if given, what its model of the checkpoint's kind is built from (``[model]``
            for the twin, ``[model]`` and ``[snn]`` for the SNN) must be the checkpoint's,
            and the returned config is ``cfg``; default: the run configuration stored in
            the checkpoint (one written before ``[snn]`` was split from ``[model]`` too).
        kind: if given, the checkpoint must hold this kind of model ("snn" or "ann").

    Returns:
        tuple: ``(model, checkpoint dict, run config)``.

    Raises:
        FileNotFoundError: no checkpoint there.
        CheckpointError: not a checkpoint, another kind, or another model configuration.
    """

    state = load_checkpoint(checkpoint)
    if cfg is None:
        stored = upgrade_stored_config(state["config"])
        cfg = RunConfig.from_dict(stored, where=f"the config stored in {checkpoint}")
    check_compatible(state, kind or state["kind"], cfg.model_config(state["kind"]).to_dict(), checkpoint)
    model = build_model(state["kind"], cfg)
    model.load_state_dict(state["model"])
    return model, state, cfg


def _load_average() -> float:
    """The 1-minute load average of the machine (NaN where the OS does not report one)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return float("nan")


def evaluate_checkpoint(
    checkpoint: str | Path,
    cfg: RunConfig | None = None,
    split: str = "test",
    batch_size: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a saved model on one split of its run's data (or of ``cfg``'s).

    Args:
        checkpoint: a ``checkpoint.pt`` written by :func:`spikelib.training.trainer.fit`.
        cfg: a run configuration whose ``[data]`` to use; its ``[model]`` must be the
            checkpoint's. Default: the configuration stored in the checkpoint.
        split: "test" or "val".
        batch_size: default ``train.eval_batch_size``.
        progress: progress bar.

    Returns:
        dict: :func:`spikelib.eval.evaluate.evaluate`'s metrics plus ``kind`` and ``epoch``.

    Raises:
        CheckpointError: ``cfg``'s model differs from the checkpoint's, or the file is not a checkpoint.
    """
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    model, state, cfg = load_trained(checkpoint, cfg)
    device = resolve_device(cfg.train.device)
    model.to(device)
    splits = build_data(cfg.data, cfg.seed, progress=progress)
    dataset = splits.test if split == "test" else splits.val
    metrics = evaluate(
        model, dataset, batch_size or cfg.train.eval_batch_size, device, cfg.train.amp, progress=progress
    )
    return {"kind": state["kind"], "epoch": state["epoch"], **metrics}
