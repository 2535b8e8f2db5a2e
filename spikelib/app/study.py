r"""The SNN-versus-ANN study: accuracy against T and coding, spikes, energy, robustness, latency.

One function runs it, :func:`run_study`: from a run configuration (``configs/*.toml``) it
trains (or reloads) the ANN twin and one spiking localizer per time-step count ``T`` and
per input code, measures each on the same held-out images, and returns one results dict
that :func:`~spikelib.app.compare_table.comparison_table` turns into the side-by-side table
and :func:`~spikelib.app.compare_table.write_study` writes to ``runs/<name>/compare/`` as
``comparison.md``, ``comparison.json`` and ``comparison.csv``. ``python -m spikelib compare
--config ...`` is this function.

What is measured, per model:

* **accuracy**: mIoU, CorLoc and VOC mAP@0.5 on the test split
  (:func:`spikelib.eval.evaluate.evaluate`);
* **energy** per image (:func:`spikelib.eval.energy.energy_per_image`): MACs x 4.6 pJ for the
  ANN; the SNN's synaptic operations (its spikes times their fan-out, counted) x 0.9 pJ
  plus the MACs of its analog-input layers (the first layer under direct coding, the
  head on the spike rate) x 4.6 pJ. Memory access is ignored;
* **spikes**: firing rate of every LIF layer at every step
  (:func:`spikelib.eval.energy.spike_rates_per_step`);
* **latency**: mIoU of the prediction the SNN would give if stopped after step
  :math:`t` (:func:`spikelib.eval.latency.latency_curve`), and the first step that reaches
  90 % of the final mIoU;
* **robustness**: mIoU under four corruptions at five severities and the mean relative
  accuracy drop, mRAD (:mod:`spikelib.eval.robustness`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from spikelib.app.compare_table import (
    COLUMNS,
    STUDY_FILE,
    comparison_table,
    load_study,
    study_markdown,
    table_markdown,
    write_study,
)
from spikelib.app.config import RunConfig
from spikelib.app.job import build_model, default_runs_dir, load_trained, prepare_runtime, run_data, train_variant
from spikelib.checks import check_choice, check_int_tuple, check_number
from spikelib.data.datasets import dataset_len
from spikelib.eval.energy import energy_per_image, spike_rates_per_step
from spikelib.eval.evaluate import evaluate
from spikelib.eval.latency import first_good_step, latency_curve, predictions_per_step
from spikelib.eval.robustness import CORRUPTIONS, NUM_SEVERITIES, _check_corruption, robustness_sweep
from spikelib.models.config import ArchConfig, LocalizerConfig
from spikelib.models.localizer import Prediction, SpikingLocalizer
from spikelib.snn.encoding import CODINGS
from spikelib.snn.neurons import LIF
from spikelib.training.checkpoint import CheckpointError, check_compatible, load_checkpoint
from spikelib.training.trainer import CHECKPOINT

__all__ = [
    "StudyConfig",
    "Variant",
    "MeanBoxBaseline",
    "study_variants",
    "variant_from_name",
    "variant_config",
    "build_study_model",
    "load_study_model",
    "predictions_per_step",
    "latency_curve",
    "first_good_step",
    "measure_model",
    "run_study",
    "ROBUSTNESS_CHOICES",  # latency: from spikelib.eval.latency
    # the table, from spikelib.app.compare_table
    "COLUMNS",
    "STUDY_FILE",
    "comparison_table",
    "table_markdown",
    "study_markdown",
    "write_study",
    "load_study",
]

log = logging.getLogger(__name__)

ROBUSTNESS_CHOICES = ("all", "reference", "none")


@dataclass(frozen=True)
class StudyConfig:
    """What the study trains and measures (the run configuration says how to train).

    Attributes:
        num_steps (tuple[int, ...]): the T values of the SNN, trained with the run
            config's input code.
        codings (tuple[str, ...]): other input codes, each trained at ``coding_steps``.
        coding_steps (int): T of the coding comparison.
        corruptions (tuple[str, ...]): from :data:`spikelib.eval.robustness.CORRUPTIONS`.
        severities (tuple[int, ...]): from 1..5.
        robustness (str): whose robustness to measure: "all" models, the "reference"
            SNN (the run config's T and code) and the ANN, or "none".
        train_images (int): train on the first N training images (0: all). Small runs
            for a notebook; the checkpoints remember N and refuse to mix.
        test_images (int): measure on the first N test images (0: all).
        energy_images (int): count spikes and operations on the first N of those.
        batch_size (int): evaluation batch size.
    """

    num_steps: tuple[int, ...] = (1, 2, 4, 8, 16)
    codings: tuple[str, ...] = ("rate", "latency")
    coding_steps: int = 4
    corruptions: tuple[str, ...] = CORRUPTIONS
    severities: tuple[int, ...] = tuple(range(1, NUM_SEVERITIES + 1))
    robustness: str = "all"
    train_images: int = 0
    test_images: int = 0
    energy_images: int = 200
    batch_size: int = 100

    def __post_init__(self) -> None:

        for name in ("num_steps", "codings", "corruptions", "severities"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_int_tuple("num_steps", self.num_steps)
        for i, coding in enumerate(self.codings):
            check_choice(f"codings[{i}]", coding, CODINGS)
        for corruption in self.corruptions:
            for severity in self.severities:
                _check_corruption(corruption, severity)
        if not self.num_steps or not self.severities or 0 in self.severities:
            raise ValueError(
                f"num_steps and severities must be non-empty, severities in 1..5; got num_steps="
                f"{self.num_steps}, severities={self.severities}"
            )
        check_choice("robustness", self.robustness, ROBUSTNESS_CHOICES)
        for name in ("coding_steps", "energy_images", "batch_size"):
            check_number(name, getattr(self, name), 1, integer=True)
        for name in ("train_images", "test_images"):
            check_number(name, getattr(self, name), 0, integer=True, note="(0: all)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StudyConfig:
        """Build from a dict; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown StudyConfig key(s) {unknown}; allowed: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), as :meth:`from_dict` takes them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class Variant(NamedTuple):
    """One model of the study: its folder name, kind ("snn"/"ann") and what it is built from.

    ``model`` is the SNN's :class:`~spikelib.models.config.LocalizerConfig` or the
    twin's :class:`~spikelib.models.config.ArchConfig`.
    """

    name: str
    kind: str
    model: ArchConfig


def study_variants(model_cfg: LocalizerConfig, study: StudyConfig) -> list[Variant]:
    """The models to compare: the ANN twin, the SNN at every T, the SNN with every other code.

    The reference SNN (``model_cfg``'s own T and code) is always included. Names read
    ``ann`` and ``snn-T<T>-<coding>``.
    """
    base = model_cfg.coding
    wanted = [(t, base) for t in sorted({*study.num_steps, model_cfg.num_steps})]
    wanted += [(study.coding_steps, c) for c in study.codings if c != base]
    variants = [Variant("ann", "ann", model_cfg.arch)]
    for steps, coding in dict.fromkeys(wanted):
        variants.append(Variant(f"snn-T{steps}-{coding}", "snn", model_cfg.replace(num_steps=steps, coding=coding)))
    return variants


def variant_from_name(model_cfg: LocalizerConfig, name: str) -> Variant:
    """The :class:`Variant` a study name stands for: ``"ann"`` or ``"snn-T<T>-<coding>"``.

    Raises:
        ValueError: a name of another form.

    Example:
        >>> from spikelib.models.config import preset
        >>> variant_from_name(preset("tiny"), "snn-T8-rate").model.num_steps
        8
    """
    if name == "ann":
        return Variant("ann", "ann", model_cfg.arch)
    kind, steps, coding = (name.split("-", 2) + ["", ""])[:3]
    if kind != "snn" or not steps.startswith("T") or not steps[1:].isdigit() or not coding:
        raise ValueError(
            f"a study model is named 'ann' or 'snn-T<steps>-<coding>' (e.g. 'snn-T4-direct'), got {name!r}"
        )
    return Variant(name, "snn", model_cfg.replace(num_steps=int(steps[1:]), coding=coding))


def variant_config(cfg: RunConfig, variant: Variant) -> RunConfig:
    """The run configuration of one model of the study: ``cfg`` with the variant's ``[snn]``."""
    if not isinstance(variant.model, LocalizerConfig):
        return cfg
    return dataclasses.replace(cfg, snn=variant.model.spiking)


def build_study_model(cfg: RunConfig, name: str) -> nn.Module:
    """The untrained model of a study variant (``"ann"``, ``"snn-T4-direct"``), built as the study builds it."""
    variant = variant_from_name(cfg.model_config("snn"), name)
    return build_model(variant.kind, variant_config(cfg, variant))


def load_study_model(cfg: RunConfig, name: str, runs_dir: str | Path | None = None) -> nn.Module:
    """A trained model of a study, on the CPU, in eval mode: its checkpoint, or the main job's.

    Args:
        cfg: the study's run configuration.
        name: the model's name in the study (``"ann"``, ``"snn-T4-direct"``).
        runs_dir: parent of the run folders (default ``<repository>/runs``).

    Raises:
        FileNotFoundError: no checkpoint for it (run the study first).
        CheckpointError: a checkpoint of the study of another model configuration.
    """

    variant = variant_from_name(cfg.model_config("snn"), name)
    variant_cfg = variant_config(cfg, variant)
    run_root = Path(runs_dir or default_runs_dir()) / cfg.name
    own = run_root / "compare" / name / CHECKPOINT
    if own.is_file():
        return load_trained(own, variant_cfg, variant.kind)[0].eval()
    main = run_root / variant.kind / CHECKPOINT
    if main.is_file():
        try:
            return load_trained(main, variant_cfg, variant.kind)[0].eval()
        except CheckpointError:  # the main job trained another T or code
            pass
    raise FileNotFoundError(
        f"no checkpoint of {name!r} under {run_root}; run the study first "
        f"(spikelib.app.study.run_study or `python -m spikelib compare`)"
    )


# ------------------------------------------------------------------------------ one model


class MeanBoxBaseline(nn.Module):
    """The floor every model must beat: the mean training box and the most frequent class, for every image.

    Args:
        box (Tensor[4]): normalized xyxy box.
        label (int): class index.
        num_classes (int): length of the logits.
    """

    box: Tensor
    logits: Tensor

    def __init__(self, box: Tensor, label: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("box", box.detach().float().reshape(4))
        logits = torch.zeros(num_classes)
        logits[label] = 1.0
        self.register_buffer("logits", logits)

    @classmethod
    def fit(cls, dataset: Dataset, num_classes: int, max_images: int = 1000) -> MeanBoxBaseline:
        """From (a strided sample of at most ``max_images`` of) the training images' targets."""
        size = dataset_len(dataset)
        indices = range(0, size, max(1, size // max_images))
        targets = [dataset[i][1] for i in indices]
        boxes = torch.stack([t["box"].float() for t in targets])
        labels = torch.as_tensor([int(t["label"]) for t in targets])
        return cls(boxes.mean(0), int(torch.bincount(labels, minlength=num_classes).argmax()), num_classes)

    def forward(self, images: Tensor) -> Any:

        batch = images.shape[0]
        return Prediction(self.logits.expand(batch, -1), self.box.expand(batch, -1))


def _layer_names(model: nn.Module) -> dict[str, str]:
    """``encoder.0.lif -> enc1`` etc. for a localizer (LIF layers in the order of ``layer_names``)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "layer_names"):
        return {}

    lifs = [name for name, module in model.named_modules() if isinstance(module, LIF)]
    names = config.layer_names()
    return dict(zip(lifs, names)) if len(lifs) == len(names) else {}


def measure_model(
    model: nn.Module, kind: str, test_set: Dataset, energy_set: Dataset, batch_size: int = 100
) -> dict[str, Any]:
    """Accuracy, energy, spikes and latency of one trained model (robustness is measured jointly).

    Args:
        model: a localizer (SNN or ANN twin), on the CPU or a GPU.
        kind: "snn" or "ann".
        test_set: the held-out images for accuracy and latency.
        energy_set: the images whose operations and spikes are counted.
        batch_size: evaluation batch size.

    Returns:
        dict: ``test`` (see :func:`spikelib.eval.evaluate.evaluate`), ``energy`` (an
        :meth:`~spikelib.eval.energy.EnergyReport.to_dict`), and for an SNN ``spike_rates``
        ({layer: [rate at each step]}), ``mean_rate`` (spikes per neuron per step over all
        layers), ``latency`` (:func:`latency_curve`) and ``steps_to_90`` (first step at 90 %
        of the final mIoU).
    """

    device = next(model.parameters()).device
    model.eval()
    test = evaluate(model, test_set, batch_size)
    batches = [images.to(device) for images, _ in DataLoader(energy_set, batch_size=batch_size)]
    energy = energy_per_image(model, batches, spiking=kind == "snn")
    out: dict[str, Any] = {
        "test": {k: v for k, v in test.items() if k != "ap"},
        "ap": test["ap"],
        "energy": energy.to_dict(),
    }
    if kind == "snn":
        if not isinstance(model, SpikingLocalizer):
            raise TypeError(f"kind='snn' measures a SpikingLocalizer, got {type(model).__name__}")
        rates = spike_rates_per_step(model, batches, names=_layer_names(model))
        shapes = model.config.feature_shapes()
        sizes = {name: math.prod(shapes[name]) if name in shapes else 1 for name in rates}
        out["spike_rates"] = {name: r.tolist() for name, r in rates.items()}
        out["mean_rate"] = sum(float(r.mean()) * sizes[n] for n, r in rates.items()) / sum(sizes.values())
        out["latency"] = latency_curve(model, test_set, batch_size)
        out["steps_to_90"] = first_good_step(out["latency"]["miou"])
    return out


# ------------------------------------------------------------------------------ the study


def _first(dataset: Dataset, count: int) -> Dataset:
    return dataset if count <= 0 or count >= dataset_len(dataset) else Subset(dataset, range(count))


def _main_job_checkpoint(run_root: Path, variant: Variant, variant_cfg: RunConfig, study: StudyConfig) -> Path | None:
    """``runs/<name>/<kind>/checkpoint.pt`` of the main job if it is this variant, finished, on all data."""

    path = run_root / variant.kind / CHECKPOINT
    if study.train_images or not path.is_file():
        return None
    try:
        state = load_checkpoint(path)
        check_compatible(state, variant.kind, variant.model.to_dict(), path, variant_cfg.to_dict())
    except CheckpointError:
        return None
    return path if int(state["epoch"]) >= variant_cfg.train_config(variant.kind).epochs else None


def _check_study_folder(folder: Path, study: StudyConfig) -> None:
    stored = folder / STUDY_FILE
    if stored.is_file():
        before = json.loads(stored.read_text(encoding="utf-8")).get("study", {}).get("train_images")
        if before is not None and before != study.train_images:
            raise CheckpointError(
                f"{folder} holds models trained on train_images={before}, this study asks for "
                f"{study.train_images}; use fresh=True (--fresh) or another run name"
            )


def _train_or_load(
    variant: Variant,
    cfg: RunConfig,
    study: StudyConfig,
    train_set: Dataset,
    folder: Path,
    run_root: Path,
    device: torch.device,
    progress: bool,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train one model of the study as the main job trains its models (:func:`~spikelib.app.job.train_variant`)."""

    variant_cfg = variant_config(cfg, variant)
    main = _main_job_checkpoint(run_root, variant, variant_cfg, study)
    trained = train_variant(
        variant.kind, variant_cfg, train_set, None, folder, resume=True, device=device, reuse=main, progress=progress
    )
    return trained.model, {
        "source": f"main job ({main})" if trained.source == "reused" else trained.source,
        "epochs": len(trained.history),
        "train_seconds": sum(r.get("seconds", 0.0) for r in trained.history),
    }


def run_study(
    cfg: RunConfig,
    study: StudyConfig = StudyConfig(),
    runs_dir: str | Path | None = None,
    *,
    fresh: bool = False,
    progress: bool = True,
    log_fn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train (or reload) every model of the study and measure them on the same test images.

    Checkpoints go to ``runs/<name>/compare/<variant>/checkpoint.pt`` and are reused when
    present (a finished one is only loaded, a killed one resumed). With ``train_images =
    0``, a finished model of the main job (``runs/<name>/snn`` or ``ann``, from ``python
    -m spikelib train``) with the same configuration is reused too.

    Args:
        cfg: the run configuration (:class:`spikelib.app.config.RunConfig`): data, model (the
            reference SNN and the twin), training budget (the same for every model).
        study: what to vary and measure.
        runs_dir: parent of the run folders (default ``<repository>/runs``).
        fresh: delete this study's checkpoints first.

    Raises:
        CheckpointError: the study folder holds models of another model configuration, run
            configuration or ``train_images`` (``fresh=True`` starts over).
        progress: progress bars while training.
        log_fn: called with one line per step of the study (e.g. ``print``).

    Returns:
        dict: ``study``, ``run_config``, ``num_train_images``, ``num_test_images``, ``num_energy_images``,
        ``reference`` (name of the reference SNN), ``seconds`` (wall time of the whole
        study), ``robustness_seconds``, ``baseline`` (the
        :class:`MeanBoxBaseline` fitted on the training images: ``box`` and ``test``
        scores), and ``models``: {variant
        name: ``kind``, ``num_steps``, ``coding``, ``train`` ({``source``, ``epochs``,
        ``train_seconds``}), ``num_params``, ``measure_seconds`` (wall time of
        :func:`measure_model`) and :func:`measure_model`'s keys, plus
        ``robustness`` (a :meth:`~spikelib.eval.robustness.RobustnessReport.to_dict`) where
        measured}.
    """

    say = log_fn or (lambda line: log.info(line))
    start = time.perf_counter()
    run_root = Path(runs_dir or default_runs_dir()) / cfg.name
    folder = run_root / "compare"
    if fresh and folder.is_dir():
        shutil.rmtree(folder)
    _check_study_folder(folder, study)
    device = prepare_runtime(cfg)
    splits = run_data(cfg, progress=progress)
    train_set = _first(splits.train, study.train_images)
    test_set = _first(splits.test, study.test_images)
    energy_set = _first(test_set, study.energy_images)
    variants = study_variants(cfg.model_config("snn"), study)
    reference = f"snn-T{cfg.snn.num_steps}-{cfg.snn.coding}"
    say(
        f"study {cfg.name}: {len(variants)} models, {dataset_len(train_set)} training / "
        f"{dataset_len(test_set)} test images"
    )
    models: dict[str, nn.Module] = {}
    results: dict[str, dict[str, Any]] = {}
    for variant in variants:
        started = time.perf_counter()
        model, train_info = _train_or_load(
            variant, cfg, study, train_set, folder / variant.name, run_root, device, progress
        )
        models[variant.name] = model
        trained = time.perf_counter()
        results[variant.name] = {
            "kind": variant.kind,
            "num_steps": variant.model.num_steps if isinstance(variant.model, LocalizerConfig) else 1,
            "coding": variant.model.coding if isinstance(variant.model, LocalizerConfig) else "analog",
            "train": train_info,
            "num_params": sum(p.numel() for p in model.parameters()),
            **measure_model(model, variant.kind, test_set, energy_set, study.batch_size),
        }
        results[variant.name]["measure_seconds"] = time.perf_counter() - trained
        say(
            f"  {variant.name}: {train_info['source']}, test mIoU {results[variant.name]['test']['miou']:.3f} "
            f"({time.perf_counter() - started:.0f} s)"
        )

    baseline = MeanBoxBaseline.fit(splits.train, cfg.model.num_classes)
    baseline_test = evaluate(baseline, test_set, study.batch_size, device="cpu")
    say(f"  mean-box baseline: test mIoU {baseline_test['miou']:.3f}")
    robustness_seconds = 0.0
    if study.robustness != "none":
        chosen = models if study.robustness == "all" else {k: models[k] for k in ("ann", reference)}
        say(
            f"  robustness of {', '.join(chosen)}: {len(study.corruptions)} corruptions x "
            f"{len(study.severities)} severities"
        )
        robust_start = time.perf_counter()
        reports = robustness_sweep(
            chosen, test_set, study.corruptions, study.severities, "miou", study.batch_size, cfg.seed
        )
        for name, report in reports.items():
            results[name]["robustness"] = report.to_dict()
        robustness_seconds = time.perf_counter() - robust_start
        say(f"  robustness done ({time.perf_counter() - start:.0f} s in all)")
    return {
        "study": study.to_dict(),
        "run_config": cfg.to_dict(),
        "reference": reference,
        "num_train_images": dataset_len(train_set),
        "num_test_images": dataset_len(test_set),
        "num_energy_images": dataset_len(energy_set),
        "seconds": time.perf_counter() - start,
        "robustness_seconds": robustness_seconds,
        "models": results,
        "baseline": {
            "name": "mean box",
            "box": baseline.box.tolist(),
            "test": {k: v for k, v in baseline_test.items() if k != "ap"},
        },
    }
