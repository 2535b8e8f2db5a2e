"""Checkpoints: atomic writes, safe loading, random states, refusal of a foreign model."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from spikelib.models.config import LocalizerConfig, preset
from spikelib.training.checkpoint import (
    CHECKPOINT_VERSION,
    CheckpointError,
    capture_rng_state,
    check_compatible,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _checkpoint(epoch=1, kind="snn", model_config=None, config=None):
    model = torch.nn.Linear(3, 2)
    return {
        "version": CHECKPOINT_VERSION,
        "kind": kind,
        "epoch": epoch,
        "global_step": 10 * epoch,
        "model": model.state_dict(),
        "optimizer": {},
        "scheduler": {"last_epoch": 10 * epoch},
        "rule": {},
        "rng": capture_rng_state(),
        "data_epoch": epoch,
        "model_config": model_config or preset("tiny").to_dict(),
        "config": config or {"seed": 0, "data": {"policy": "largest"}, "train": {"lr": 0.01}, "ann": {}},
        "history": [{"epoch": e + 1, "val_miou": 0.1 * e} for e in range(epoch)],
    }


def test_save_then_load_round_trips_with_weights_only(tmp_path):
    saved = _checkpoint(epoch=2)
    path = save_checkpoint(tmp_path / "run" / "checkpoint.pt", saved)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 2 and loaded["history"] == saved["history"]
    assert torch.equal(loaded["model"]["weight"], saved["model"]["weight"])
    assert list(tmp_path.joinpath("run").iterdir()) == [path]  # no temporary file left


def test_a_failed_save_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path):
    path = save_checkpoint(tmp_path / "checkpoint.pt", _checkpoint(epoch=1))
    broken = {**_checkpoint(epoch=2), "history": [lambda: None]}  # a lambda cannot be pickled
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        save_checkpoint(path, broken)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_save_refuses_an_incomplete_checkpoint(tmp_path):
    incomplete = {k: v for k, v in _checkpoint().items() if k not in ("rng", "model_config")}
    with pytest.raises(CheckpointError, match=r"needs the keys \['rng', 'model_config'\]"):
        save_checkpoint(tmp_path / "c.pt", incomplete)


def test_load_names_what_is_wrong_with_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="is not a spikelib training checkpoint"):
        load_checkpoint(tmp_path / "weights.pt")
    torch.save({**_checkpoint(), "version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(tmp_path / "future.pt")


def test_restoring_the_rng_state_repeats_every_generator(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    path = save_checkpoint(tmp_path / "c.pt", {**_checkpoint(), "rng": capture_rng_state()})
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng_state(load_checkpoint(path)["rng"])
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def test_a_checkpoint_of_another_model_configuration_is_refused_in_one_line():
    checkpoint = _checkpoint(model_config=preset("tiny").to_dict())
    check_compatible(checkpoint, "snn", preset("tiny").to_dict())  # same: fine
    other = preset("tiny", num_steps=8, beta=0.9).to_dict()
    with pytest.raises(CheckpointError) as caught:
        check_compatible(checkpoint, "snn", other, "runs/x/snn/checkpoint.pt")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("runs/x/snn/checkpoint.pt was trained with a different SNN")
    assert "beta = 0.5 in the checkpoint, 0.9 here" in message and "num_steps = 4 in the checkpoint, 8 here" in message
    with pytest.raises(CheckpointError, match="holds an SNN, not an ANN"):
        check_compatible(checkpoint, "ann", preset("tiny").to_dict())
    with pytest.raises(CheckpointError, match="different SNN configuration"):
        check_compatible(checkpoint, "snn", LocalizerConfig().to_dict())


def test_a_twin_checkpoint_depends_on_the_architecture_only():
    tiny = preset("tiny")
    twin = _checkpoint(kind="ann", model_config=tiny.arch.to_dict())
    check_compatible(twin, "ann", preset("tiny", num_steps=8, coding="rate").arch.to_dict())  # T, code: fine
    with pytest.raises(CheckpointError, match=r"different ANN configuration: head_pool = 8 in the checkpoint, 4 here"):
        check_compatible(twin, "ann", tiny.arch.replace(head_pool=4).to_dict())
    # a twin's checkpoint written when it stored the SNN's fields too is still read
    check_compatible(
        _checkpoint(kind="ann", model_config=tiny.to_dict()), "ann", tiny.replace(num_steps=8).arch.to_dict()
    )


def test_resuming_needs_the_same_run_but_not_the_same_name():
    stored = {
        "name": "a",
        "models": ["snn"],
        "seed": 0,
        "data": {"policy": "largest"},
        "train": {"lr": 0.01},
        "ann": {},
    }
    checkpoint = _checkpoint(config=stored)
    tiny = preset("tiny").to_dict()
    check_compatible(checkpoint, "snn", tiny, run_config={**stored, "name": "b", "models": ["snn", "ann"]})
    with pytest.raises(CheckpointError, match=r"cannot resume .*train\.lr = 0\.01 in the checkpoint, 0\.02 here"):
        check_compatible(checkpoint, "snn", tiny, run_config={**stored, "train": {"lr": 0.02}})
