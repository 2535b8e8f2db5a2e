"""The models the course notebooks train, shipped in ``checkpoints/`` so that a notebook loads them in seconds.

A *course checkpoint* is one file per notebook, ``checkpoints/<notebook>.pt.gz`` (or one per part of it,
``<notebook>.<part>.pt.gz``; a gzipped ``torch.save`` file), holding

- ``recipe``: every setting that decides the weights (seeds, budgets, the models' configurations
  as ``to_dict()`` gives them today), as plain values;
- ``models``: ``{name: state_dict}`` of every model the notebook trains;
- ``extra``: what the lesson shows of their training (loss histories, a learning rule's state,
  measured tables), as tensors and plain values;
- ``metrics``: what the models score when :func:`evaluate_course_checkpoint` re-evaluates them,
  also written beside it in ``<notebook>.json`` for a reader (and a test) to compare.

A notebook loads its checkpoint only when the stored recipe is the one it asks for; otherwise,
or with ``TRAIN_FROM_SCRATCH = True``, it trains and saves a new one in ``runs/course/``.
``make checkpoints`` runs the notebooks that way and copies what they saved into ``checkpoints/``.
Files are read with ``torch.load(weights_only=True)`` (no code runs) and written atomically.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Subset

from spikelib.app.config import RunConfig
from spikelib.app.job import build_data, build_model, default_runs_dir, run_data
from spikelib.app.study import StudyConfig, build_study_model
from spikelib.data import SYNTH_NAME, VOCLocalization, ensure_synthetic
from spikelib.data.datasets import dataset_len
from spikelib.data.digits import load_digits_split
from spikelib.eval.evaluate import evaluate
from spikelib.eval.metrics import mean_iou
from spikelib.models.config import LocalizerConfig
from spikelib.models.localizer import build_ann_twin, build_localizer
from spikelib.paths import checkpoints_dir, project_root
from spikelib.snn.encoding import direct_encode
from spikelib.snn.layers import make_resnet_stack
from spikelib.training.checkpoint import CheckpointError, config_differences, read_weights_only, save_checkpoint

__all__ = [
    "CourseCheckpoint",
    "course_runs_dir",
    "save_course_checkpoint",
    "load_course_checkpoint",
    "evaluate_course_checkpoint",
    "load_or_train",
]

FORMAT = "spikelib-course-checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".pt.gz"  # a gzipped torch.save file: weights compress by about 8 %
REGENERATE = "run `make checkpoints` to make it again with this code, or set TRAIN_FROM_SCRATCH = True"


def course_runs_dir() -> Path:
    """Where a notebook saves what it trained: ``<runs>/course`` (``make checkpoints`` collects them there)."""
    return default_runs_dir() / "course"


def _shown(path: Path) -> str:
    """``path`` relative to the project root where it lies below it (no absolute paths in a notebook's output)."""
    try:
        return str(path.relative_to(project_root()))
    except ValueError:
        return str(path)


def plain(value: Any) -> Any:
    """``value`` as JSON would give it back: tuples become lists, dict keys strings."""
    return json.loads(json.dumps(value))


@dataclass
class CourseCheckpoint:
    """The trained models of one notebook (see the module docstring)."""

    notebook: str
    recipe: dict[str, Any]
    models: dict[str, dict[str, Tensor]]
    extra: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def where(self) -> str:
        """Its file, relative to the project root, or the notebook's name while it is not saved."""
        return _shown(self.path) if self.path is not None else self.notebook

    def load_into(self, name: str, model: nn.Module) -> nn.Module:
        """Load the weights of ``name`` into ``model`` (strict) and return it.

        Raises:
            CheckpointError: no such model, or its weights do not fit ``model`` (the code changed).
        """
        if name not in self.models:
            raise CheckpointError(f"{self.where} holds the models {sorted(self.models)}, not {name!r}; {REGENERATE}")
        try:
            model.load_state_dict(self.models[name])
        except RuntimeError as err:
            first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
            raise CheckpointError(
                f"the weights of {name!r} in {self.where} do not fit the model this code builds ({first}); {REGENERATE}"
            ) from None
        return model


def save_course_checkpoint(checkpoint: CourseCheckpoint, folder: str | Path | None = None) -> Path:
    """Write ``<folder>/<notebook>.pt.gz`` (atomically) and ``<notebook>.json`` (recipe and metrics).

    Args:
        checkpoint: what to save; its ``metrics`` should come from :func:`evaluate_course_checkpoint`.
        folder: default :func:`course_runs_dir`.

    Returns:
        Path: the ``.pt.gz`` file.
    """
    folder = Path(folder) if folder is not None else course_runs_dir()
    path = folder / f"{checkpoint.notebook}{SUFFIX}"
    state = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "notebook": checkpoint.notebook,
        "recipe": plain(checkpoint.recipe),
        "models": {name: {k: v.detach().cpu() for k, v in sd.items()} for name, sd in checkpoint.models.items()},
        "extra": checkpoint.extra,
        "metrics": plain(checkpoint.metrics),
    }
    save_checkpoint(path, state, ("format", "version", "notebook", "recipe", "models", "metrics"), compress=True)
    summary = {"notebook": checkpoint.notebook, "recipe": state["recipe"], "metrics": state["metrics"]}
    path.with_name(f"{checkpoint.notebook}.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    checkpoint.path = path
    return path


def load_course_checkpoint(
    notebook: str, recipe: Mapping[str, Any] | None = None, folder: str | Path | None = None
) -> CourseCheckpoint:
    """The checkpoint of ``notebook``, if it was made with ``recipe``.

    Args:
        notebook: the notebook's file name without ``.ipynb``.
        recipe: the settings the notebook asks for; ``None`` takes the stored ones.
        folder: default :func:`checkpoints_dir`.

    Raises:
        CheckpointError: no such file, not a course checkpoint, or made with another recipe
            (the message names the differences and how to make a new one).
    """
    folder = Path(folder) if folder is not None else checkpoints_dir()
    path = folder / f"{notebook}{SUFFIX}"
    if not path.is_file():
        raise CheckpointError(f"no course checkpoint at {_shown(path)}; {REGENERATE}")
    try:
        state = read_weights_only(path)
    except Exception as err:  # torch raises pickle, runtime and zip errors alike
        raise CheckpointError(f"{_shown(path)} is not readable ({type(err).__name__}); {REGENERATE}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{_shown(path)} is not a course checkpoint; {REGENERATE}")
    if state["version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{_shown(path)} has format {state['version']}, this code reads {FORMAT_VERSION}; {REGENERATE}"
        )
    if recipe is not None:
        diffs = config_differences(state["recipe"], plain(dict(recipe)), there="there")
        if diffs:
            more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
            raise CheckpointError(
                f"{path.name} was made with other settings than this run asks for: {'; '.join(diffs[:3])}{more}. "
                f"Put the settings back to load it, or {REGENERATE}"
            )
    return CourseCheckpoint(
        state["notebook"], state["recipe"], state["models"], state.get("extra", {}), state["metrics"], path
    )


@contextlib.contextmanager
def _reproducible() -> Iterator[None]:
    """One thread (the same sums in the same order) and the caller's random state kept aside."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(before)


def _seeded() -> None:
    """Seed torch before scoring one model: a rate code draws its spikes at random."""
    torch.manual_seed(0)


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not math.isnan(float(v))}


def _evaluate_pyramid(checkpoint: CourseCheckpoint) -> dict[str, Any]:
    """05: held-out mIoU of each model on the first ``num_held_out`` validation images."""
    recipe = checkpoint.recipe
    config = LocalizerConfig.from_dict(recipe["model_config"])
    root = ensure_synthetic(progress=False)
    val_set = VOCLocalization(
        root, dataset=SYNTH_NAME, image_set="val", cache=True, progress=False, image_size=config.image_size
    )
    held_out = [val_set[i] for i in range(recipe["num_held_out"])]
    images = torch.stack([image for image, _ in held_out])
    boxes = torch.stack([target["box"] for _, target in held_out])
    builders: dict[str, Callable[[LocalizerConfig], nn.Module]] = {"snn": build_localizer, "ann": build_ann_twin}
    out = {}
    for name, kind in recipe["kinds"].items():
        model = checkpoint.load_into(name, builders[kind](config)).eval()
        _seeded()
        with torch.no_grad():
            out[name] = mean_iou(model(images).boxes, boxes)
    return out


def _evaluate_localization(checkpoint: CourseCheckpoint) -> dict[str, Any]:
    """06: the test metrics of the SNN and its twin (:func:`~spikelib.eval.evaluate.evaluate`)."""
    cfg = RunConfig.from_dict(checkpoint.recipe["run_config"], where=f"the recipe of {checkpoint.where}")
    splits = build_data(cfg.data, cfg.seed, progress=False)
    out = {}
    for kind in checkpoint.models:
        model = checkpoint.load_into(kind, build_model(kind, cfg))
        _seeded()
        out[kind] = _scalars(evaluate(model, splits.test))
    return out


def _evaluate_study(checkpoint: CourseCheckpoint) -> dict[str, Any]:
    """07: the test metrics of every model of the study on its test images."""
    cfg = RunConfig.from_dict(checkpoint.recipe["run_config"], where=f"the recipe of {checkpoint.where}")
    study = StudyConfig.from_dict(checkpoint.recipe["study"])
    test_set = run_data(cfg, progress=False).test
    if 0 < study.test_images < dataset_len(test_set):  # the first N, as run_study measures
        test_set = Subset(test_set, range(study.test_images))
    out = {}
    for name in checkpoint.models:
        model = checkpoint.load_into(name, build_study_model(cfg, name))
        _seeded()
        out[name] = _scalars(evaluate(model, test_set, study.batch_size))
    return out


def _evaluate_resnet_digits(checkpoint: CourseCheckpoint) -> dict[str, Any]:
    """04: test accuracy of every network on the held-out digits."""
    recipe = checkpoint.recipe
    _, test_set = load_digits_split(seed=recipe["split_seed"])
    images, labels = test_set.tensors
    out = {}
    for name, spec in recipe["networks"].items():
        model = checkpoint.load_into(name, make_resnet_stack(**spec)).eval()
        _seeded()
        with torch.no_grad():  # the whole test set in one batch, as the notebook scores it
            logits = model(direct_encode(images, recipe["num_steps"])).mean(0) if spec["spiking"] else model(images)
        out[name] = float((logits.argmax(1) == labels).float().mean())
    return out


_EVALUATORS: dict[str, Callable[[CourseCheckpoint], dict[str, Any]]] = {
    "04_resnet_blocks.ann": _evaluate_resnet_digits,
    "04_resnet_blocks.snn": _evaluate_resnet_digits,
    "05_pyramid_encoder_decoder": _evaluate_pyramid,
    "06_voc_localization": _evaluate_localization,
    "07_snn_vs_ann": _evaluate_study,
}


def evaluate_course_checkpoint(checkpoint: CourseCheckpoint) -> dict[str, Any]:
    """Re-evaluate the models of a course checkpoint (one thread, torch seeded before each model); equal to
    ``checkpoint.metrics`` when sound. The caller's random state is left as it was.

    Raises:
        ValueError: a notebook this module cannot evaluate.
        CheckpointError: the weights do not fit the models this code builds.
    """
    if checkpoint.notebook not in _EVALUATORS:
        raise ValueError(f"no evaluation for notebook {checkpoint.notebook!r}; known: {sorted(_EVALUATORS)}")
    with _reproducible():
        return plain(_EVALUATORS[checkpoint.notebook](checkpoint))


def load_or_train(
    notebook: str,
    recipe: Mapping[str, Any],
    models: dict[str, nn.Module],
    train: Callable[[], dict[str, Any]],
    *,
    from_scratch: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Load the weights of ``models`` from the notebook's shipped checkpoint, or train them and save one.

    Loads ``checkpoints/<notebook>.pt.gz`` when its recipe is ``recipe``; otherwise (or with
    ``from_scratch``) calls ``train()``, which trains ``models`` in place (or puts the trained
    ones into the dict) and returns the extra the lesson needs, then re-evaluates them
    (:func:`evaluate_course_checkpoint`) and saves the lot in :func:`course_runs_dir`.

    Returns:
        dict: the checkpoint's ``extra`` (the one ``train()`` returned, when it trained).
    """
    if not from_scratch:
        try:
            checkpoint = load_course_checkpoint(notebook, recipe)
            for name, model in models.items():
                checkpoint.load_into(name, model)
        except CheckpointError as err:
            say(f"{err}\n=> training here")
        else:
            say(f"loaded {checkpoint.where} (TRAIN_FROM_SCRATCH = True trains them here)")
            return checkpoint.extra
    extra = train()
    checkpoint = CourseCheckpoint(notebook, dict(recipe), {name: m.state_dict() for name, m in models.items()}, extra)
    checkpoint.metrics = evaluate_course_checkpoint(checkpoint)
    save_course_checkpoint(checkpoint)
    say(f"trained here; saved to {checkpoint.where}")
    return extra
