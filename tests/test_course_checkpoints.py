"""The course checkpoints in ``checkpoints/``: complete, small, exact, refused when stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from spikelib.app import course
from spikelib.app.config import RunConfig
from spikelib.app.course import (
    CourseCheckpoint,
    evaluate_course_checkpoint,
    load_course_checkpoint,
    load_or_train,
    save_course_checkpoint,
)
from spikelib.app.job import build_data, train_variant
from spikelib.eval.evaluate import evaluate
from spikelib.training.checkpoint import CheckpointError, read_weights_only

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "checkpoints").glob("*.pt.gz"))
MAX_MIB = 30
RETRAIN_TOLERANCE = 0.01  # test mIoU and accuracy of a retrained model; bit for bit on the build that made it


def _name(path: Path) -> str:
    return path.name.removesuffix(".pt.gz")


def _beside(path: Path) -> Path:
    return path.with_name(f"{_name(path)}.json")


def _tools_checkpoints():
    import importlib.util

    spec = importlib.util.spec_from_file_location("checkpoints_tool", REPO / "tools" / "checkpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_notebook_that_trains_ships_its_checkpoint():
    training = _tools_checkpoints().shipping_notebooks()
    assert training, "no notebook has a TRAIN_FROM_SCRATCH parameter"
    assert sorted({path.name.split(".")[0] for path in SHIPPED}) == training
    for path in SHIPPED:
        assert _beside(path).is_file(), f"{path.name} has no metrics file beside it"


def test_the_shipped_checkpoints_are_small():
    total = sum(path.stat().st_size for path in SHIPPED) / 2**20
    assert total <= MAX_MIB, f"checkpoints/ holds {total:.1f} MiB, the course ships at most {MAX_MIB}"


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: _name(p))
def test_a_shipped_checkpoint_scores_exactly_its_stored_metrics(path):
    checkpoint = load_course_checkpoint(_name(path))
    beside = json.loads(_beside(path).read_text())
    assert beside["metrics"] == checkpoint.metrics and beside["recipe"] == checkpoint.recipe
    assert evaluate_course_checkpoint(checkpoint) == checkpoint.metrics


@pytest.mark.slow
def test_a_retrained_model_lands_within_tolerance_of_the_shipped_one(one_thread):
    """Notebook 06's ANN twin, trained again from the recipe stored in its checkpoint (about 40 s)."""
    checkpoint = load_course_checkpoint("06_voc_localization")
    cfg = RunConfig.from_dict(checkpoint.recipe["run_config"])
    splits = build_data(cfg.data, cfg.seed, progress=False)
    train_set = Subset(splits.train, range(checkpoint.recipe["train_images"]))
    model = train_variant("ann", cfg, train_set, splits.val, None, progress=False).model
    again = evaluate(model, splits.test)
    for metric in ("miou", "accuracy"):
        shipped = checkpoint.metrics["ann"][metric]
        assert abs(again[metric] - shipped) <= RETRAIN_TOLERANCE, (metric, again[metric], shipped)


# refusing a stale checkpoint, on a tiny one ---------------------------------------------------------


def _tiny_models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {"net": nn.Linear(3, 2)}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A course checkpoint ``tiny`` in tmp_path, with a trivial evaluation; runs saved in tmp_path/runs."""
    monkeypatch.setitem(course._EVALUATORS, "tiny", lambda ck: {"bias": float(ck.models["net"]["bias"].sum())})
    monkeypatch.setenv("SPIKELIB_RUNS", str(tmp_path / "runs"))
    models = _tiny_models()
    checkpoint = CourseCheckpoint("tiny", {"lr": 0.1, "sizes": (3, 2)}, {"net": models["net"].state_dict()})
    checkpoint.metrics = evaluate_course_checkpoint(checkpoint)
    save_course_checkpoint(checkpoint, tmp_path)
    monkeypatch.setattr(course, "checkpoints_dir", lambda: tmp_path)
    return tmp_path


def test_a_checkpoint_of_another_recipe_is_refused_naming_make_checkpoints(tiny):
    assert load_course_checkpoint("tiny", {"lr": 0.1, "sizes": [3, 2]}).metrics["bias"] == pytest.approx(
        float(_tiny_models()["net"].bias.detach().sum())
    )
    with pytest.raises(CheckpointError, match=r"lr = 0\.1 there, 0\.2 here.*make checkpoints"):
        load_course_checkpoint("tiny", {"lr": 0.2, "sizes": [3, 2]})


def test_weights_that_no_longer_fit_the_code_are_refused_naming_make_checkpoints(tiny):
    checkpoint = load_course_checkpoint("tiny")
    with pytest.raises(CheckpointError, match="do not fit the model this code builds.*make checkpoints"):
        checkpoint.load_into("net", nn.Linear(4, 2))
    with pytest.raises(CheckpointError, match="not 'other'.*make checkpoints"):
        checkpoint.load_into("other", nn.Linear(3, 2))


@pytest.mark.parametrize("damage", ["missing", "garbage", "version"])
def test_a_missing_unreadable_or_old_checkpoint_is_refused_naming_make_checkpoints(tiny, damage):
    path = tiny / "tiny.pt.gz"
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    else:
        state = read_weights_only(path)
        torch.save({**state, "version": 0}, path)
    with pytest.raises(CheckpointError, match="make checkpoints"):
        load_course_checkpoint("tiny")


def test_load_or_train_loads_a_matching_checkpoint_and_trains_otherwise(tiny):
    trained = []

    def train():
        trained.append(True)
        with torch.no_grad():
            models["net"].bias.fill_(1.0)
        return {"note": "trained"}

    models = {"net": nn.Linear(3, 2)}
    lines = []
    assert load_or_train("tiny", {"lr": 0.1, "sizes": (3, 2)}, models, train, say=lines.append) == {}
    assert not trained and torch.equal(models["net"].bias, _tiny_models()["net"].bias)
    assert lines[0].startswith("loaded ") and lines[0].endswith("(TRAIN_FROM_SCRATCH = True trains them here)")

    extra = load_or_train("tiny", {"lr": 0.2, "sizes": (3, 2)}, models, train, say=lines.append)
    assert trained and extra == {"note": "trained"}
    saved = load_course_checkpoint("tiny", {"lr": 0.2, "sizes": [3, 2]}, folder=tiny / "runs" / "course")
    assert saved.metrics == {"bias": 2.0} and saved.extra == {"note": "trained"}

    trained.clear()
    load_or_train("tiny", {"lr": 0.1, "sizes": (3, 2)}, models, train, from_scratch=True, say=lines.append)
    assert trained
