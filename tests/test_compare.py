"""The SNN-vs-ANN study: variants, per-step readout, the table and its files, the study end to end and its CLI."""

import dataclasses
import doctest
import json
import math
import shutil

import pandas as pd
import pytest
import torch

import spikelib.app.study
from spikelib.app.compare_table import comparison_table, load_study, table_markdown, write_study
from spikelib.app.study import (
    MeanBoxBaseline,
    StudyConfig,
    load_study_model,
    run_study,
    study_variants,
    variant_from_name,
)
from spikelib.models.config import preset


def test_doctests_pass():
    assert doctest.testmod(spikelib.app.study).failed == 0


def test_variants_sweep_t_with_the_config_code_and_compare_codes_at_one_t():
    cfg = preset("tiny", num_steps=4, coding="direct")
    study = StudyConfig(num_steps=(1, 2), codings=("rate", "direct", "latency"), coding_steps=2)
    variants = study_variants(cfg, study)
    assert [v.name for v in variants] == [
        "ann",
        "snn-T1-direct",
        "snn-T2-direct",
        "snn-T4-direct",
        "snn-T2-rate",
        "snn-T2-latency",
    ]  # reference T4 added, direct not repeated
    assert variants[0].kind == "ann" and all(v.kind == "snn" for v in variants[1:])
    assert variants[-1].model.num_steps == 2 and variants[-1].model.coding == "latency"
    assert variants[-1].model.encoder_channels == cfg.encoder_channels


def test_variant_names_round_trip():
    cfg = preset("tiny", num_steps=4)
    for variant in study_variants(cfg, StudyConfig(num_steps=(1, 8), codings=("latency",))):
        assert variant_from_name(cfg, variant.name) == variant
    with pytest.raises(ValueError, match="snn-T<steps>-<coding>"):
        variant_from_name(cfg, "snn-4-direct")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_steps": (0,)}, r"num_steps must be a non-empty sequence of ints >= 1, got \(0,\)"),
        ({"codings": ("rate", "morse")}, r"codings\[1\] must be one of \['direct', 'rate', 'latency'\], got 'morse'"),
        ({"robustness": "some"}, "robustness must be one of"),
        ({"severities": (0, 1)}, "severities in 1..5"),
        ({"train_images": -1}, r"train_images must be an int >= 0 \(0: all\), got -1"),
    ],
)
def test_study_config_names_the_bad_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StudyConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown StudyConfig key"):
        StudyConfig.from_dict({"epochs": 3})


def _results() -> dict:
    """A hand-made study: ANN 10 uJ, SNN 2 uJ (5x less), robustness of both."""

    def model(kind, steps, energy_j, macs, synops, miou, extra):
        return {
            "kind": kind,
            "num_steps": steps,
            "coding": "direct" if kind == "snn" else "analog",
            "train": {"source": "trained", "epochs": 1, "train_seconds": 1.0},
            "test": {"miou": miou, "corloc": 0.5, "map50": 0.25, "accuracy": 0.9},
            "energy": {"energy_j": energy_j, "macs": macs, "synops": synops},
            **extra,
        }

    robust = {
        "metric": "miou",
        "clean": 0.6,
        "scores": {"jpeg": [0.54, 0.3]},
        "severities": [1, 5],
        "rad": {"jpeg": [0.1, 0.5]},
        "mrad": 0.3,
        "mean_corrupted": 0.42,
    }
    return {
        "study": {"train_images": 0},
        "reference": "snn-T4-direct",
        "num_test_images": 10,
        "num_energy_images": 5,
        "seconds": 1.0,
        "run_config": {
            "name": "toy",
            "train": {"epochs": 1},
            "model": {"image_size": 32},
            "data": {"train": ["SHAPES:train"], "test": ["SHAPES:test"]},
        },
        "models": {
            "ann": model("ann", 1, 10e-6, 2.0e6, 0.0, 0.6, {"robustness": robust}),
            "snn-T4-direct": model("snn", 4, 2e-6, 0.2e6, 1.2e6, 0.55, {"mean_rate": 0.125, "steps_to_90": 3}),
        },
    }


def test_table_has_one_row_per_model_with_the_energy_ratio_to_the_ann():
    table = comparison_table(_results())
    assert list(table["model"]) == ["ann", "snn-T4-direct"]
    ann, snn = table.iloc[0], table.iloc[1]
    assert snn["ann_over_model"] == pytest.approx(5.0) and ann["ann_over_model"] == pytest.approx(1.0)
    assert snn["energy_uj"] == pytest.approx(2.0) and snn["synops_m"] == pytest.approx(1.2)
    assert snn["T"] == 4 and math.isnan(ann["T"]) and math.isnan(ann["mean_rate"])
    assert ann["mrad"] == pytest.approx(0.3) and math.isnan(snn["mrad"])
    markdown = table_markdown(table)
    row = "| snn-T4-direct | 4 | direct | 55.0 | 50.0 | 25.0 | 0.2 | 1.2 | 2 | 5.00× | 0.125 | 3 | – | – |"
    assert row in markdown
    assert markdown.splitlines()[0].startswith("| model | T | coding | mIoU %")


def test_baseline_is_the_last_row_with_scores_only():
    results = {
        **_results(),
        "baseline": {
            "name": "mean box",
            "box": [0.2, 0.2, 0.8, 0.8],
            "test": {"miou": 0.3, "corloc": 0.1, "map50": 0.05},
        },
    }
    table = comparison_table(results)
    assert list(table["model"]) == ["ann", "snn-T4-direct", "mean box"]
    row = table.iloc[-1]
    assert (row["miou"], row["corloc"], row["map50"]) == (0.3, 0.1, 0.05)
    assert math.isnan(row["energy_uj"]) and math.isnan(row["ann_over_model"])
    assert "| mean box | – | – | 30.0 | 10.0 | 5.0 | – |" in table_markdown(table)


def test_mean_box_baseline_predicts_the_mean_training_box_and_the_most_frequent_class():
    items = [
        (torch.zeros(1, 4, 4), {"box": torch.tensor(box), "label": torch.tensor(label)})
        for box, label in (([0.0, 0.0, 0.5, 0.5], 2), ([0.5, 0.5, 1.0, 1.0], 2), ([0.2, 0.0, 0.6, 0.4], 1))
    ]
    baseline = MeanBoxBaseline.fit(items, num_classes=4)
    pred = baseline(torch.zeros(5, 1, 4, 4))
    torch.testing.assert_close(pred.boxes, torch.tensor([[0.7 / 3, 0.5 / 3, 2.1 / 3, 1.9 / 3]]).expand(5, 4))
    assert pred.logits.shape == (5, 4) and pred.logits.argmax(1).tolist() == [2] * 5


def test_write_and_load_study_round_trip(tmp_path):
    paths = write_study(_results(), tmp_path / "compare")
    assert {p.name for p in paths.values()} == {"comparison.md", "comparison.json", "comparison.csv"}
    assert load_study(tmp_path / "compare") == json.loads(json.dumps(_results()))
    csv_table = pd.read_csv(paths["csv"])
    assert list(csv_table["model"]) == ["ann", "snn-T4-direct"]
    assert csv_table["ann_over_model"].tolist() == pytest.approx([1.0, 5.0])
    text = paths["md"].read_text()
    assert "5.00×" in text and "| ann | jpeg | 60.0 | 54.0 | 30.0 | 30.0 |" in text and "0.9 pJ" in text
    with pytest.raises(FileNotFoundError, match="python -m spikelib compare"):
        load_study(tmp_path / "nothing")


# ------------------------------------------------------------------------------ end to end


def _write_config(tmp_path, synth_root, synth_config) -> str:
    name = synth_config.name
    text = f"""
name = "tiny-compare"
seed = 0
[data]
root = "{synth_root}"
generate = false
train = ["{name}:train"]
val = ["{name}:val"]
test = ["{name}:test"]
image_size = 32
augment = false
[model]
image_size = 32
num_classes = {len(synth_config.classes)}
encoder_channels = [4, 8, 8]
decoder_channels = [8, 4, 4]
head_pool = 4
head_hidden = []
[snn]
num_steps = 2
[train]
epochs = 1
batch_size = 8
eval_batch_size = 16
device = "cpu"
"""
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return str(path)


def test_study_end_to_end_reuses_checkpoints_and_the_main_job(tmp_path, synth_root, synth_config):
    from spikelib.app.config import load_config
    from spikelib.app.job import build_data
    from spikelib.eval.evaluate import evaluate

    cfg = load_config(_write_config(tmp_path, synth_root, synth_config))
    test_set = build_data(cfg.data, progress=False).test
    study = StudyConfig(
        num_steps=(1,),
        codings=("rate",),
        coding_steps=1,
        corruptions=("jpeg", "gaussian_noise"),
        severities=(5,),
        robustness="reference",
        energy_images=4,
        batch_size=16,
    )
    runs = tmp_path / "runs"
    first = run_study(cfg, study, runs, progress=False)
    assert list(first["models"]) == ["ann", "snn-T1-direct", "snn-T2-direct", "snn-T1-rate"]
    assert first["reference"] == "snn-T2-direct" and first["num_test_images"] == 10
    snn = first["models"]["snn-T2-direct"]
    assert {"test", "energy", "spike_rates", "mean_rate", "latency", "steps_to_90", "robustness"} <= set(snn)
    assert list(snn["spike_rates"]) == ["enc1", "enc2", "enc3", "dec1", "dec2", "dec3"]
    assert all(len(r) == 2 for r in snn["spike_rates"].values()) and len(snn["latency"]["miou"]) == 2
    assert snn["latency"]["miou"][-1] == pytest.approx(snn["test"]["miou"])
    assert snn["energy"]["num_images"] == 4 and snn["energy"]["macs"] > 0
    assert set(first["baseline"]["test"]) >= {"miou", "corloc", "map50"} and len(first["baseline"]["box"]) == 4
    assert list(comparison_table(first)["model"])[-1] == "mean box"
    assert "robustness" in first["models"]["ann"] and "robustness" not in first["models"]["snn-T1-rate"]
    assert all(m["train"]["source"] == "trained" for m in first["models"].values())
    again = run_study(cfg, study, runs, progress=False)  # everything reloaded, same numbers
    assert all(m["train"]["source"] == "checkpoint" for m in again["models"].values())
    for name, model in first["models"].items():
        if model["coding"] != "rate":  # rate coding draws new spikes each run
            assert again["models"][name]["test"] == model["test"]
    loaded = load_study_model(cfg, "snn-T2-direct", runs)
    assert evaluate(loaded, test_set)["miou"] == pytest.approx(snn["test"]["miou"])
    with pytest.raises(FileNotFoundError, match="run the study first"):
        load_study_model(cfg, "snn-T8-direct", runs)
    write_study(first, runs / "tiny-compare" / "compare")
    with pytest.raises(ValueError, match="train_images=0, this study asks for 20"):
        run_study(cfg, StudyConfig(**{**study.__dict__, "train_images": 20}), runs, progress=False)
    # a finished model of the main job (runs/<name>/snn) with the same configuration is reused
    (runs / "tiny-compare" / "snn").mkdir()
    shutil.copy(
        runs / "tiny-compare" / "compare" / "snn-T2-direct" / "checkpoint.pt",
        runs / "tiny-compare" / "snn" / "checkpoint.pt",
    )
    reused = run_study(
        cfg,
        StudyConfig(num_steps=(2,), codings=(), robustness="none", energy_images=4),
        runs,
        fresh=True,
        progress=False,
    )
    assert reused["models"]["snn-T2-direct"]["train"]["source"].startswith("main job")
    assert reused["models"]["snn-T2-direct"]["test"] == snn["test"]
    assert reused["models"]["ann"]["train"]["source"] == "trained"
    # the twin does not depend on T: its main-job checkpoint serves a study of another reference T
    (runs / "tiny-compare" / "ann").mkdir()
    shutil.copy(runs / "tiny-compare" / "compare" / "ann" / "checkpoint.pt", runs / "tiny-compare" / "ann")
    other_t = dataclasses.replace(cfg, snn=cfg.snn.replace(num_steps=1))
    study_t1 = StudyConfig(num_steps=(1,), codings=(), robustness="none", energy_images=4)
    moved = run_study(other_t, study_t1, runs, fresh=True, progress=False)
    assert moved["models"]["ann"]["train"]["source"].startswith("main job")
    assert moved["models"]["ann"]["test"] == reused["models"]["ann"]["test"]
    assert moved["models"]["snn-T1-direct"]["train"]["source"] == "trained"


def test_cli_compare_prints_the_table_and_writes_the_files(tmp_path, synth_root, synth_config, capsys):
    from spikelib.app.cli import main

    config = _write_config(tmp_path, synth_root, synth_config)
    status = main(
        [
            "compare",
            "--config",
            config,
            "--runs-dir",
            str(tmp_path),
            "--num-steps",
            "1",
            "--codings",
            "--robustness",
            "none",
            "--energy-images",
            "4",
            "--test-images",
            "6",
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "| snn-T1-direct | 1 | direct |" in out and "| ann | – | analog |" in out
    results = load_study(tmp_path / "tiny-compare" / "compare")
    assert results["num_test_images"] == 6 and list(results["models"]) == ["ann", "snn-T1-direct", "snn-T2-direct"]
    assert (tmp_path / "tiny-compare" / "compare" / "comparison.md").read_text().startswith("# SNN vs ANN")
    assert main(["compare", "--config", config, "--runs-dir", str(tmp_path), "--num-steps", "0", "-q"]) == 1
