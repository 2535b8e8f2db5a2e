"""The command line: ``python -m spikelib data synth``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spikelib.app.cli import main

SMALL = ["--num-train", "3", "--num-val", "1", "--num-test", "2", "--image-size", "32", "-q"]


def test_data_synth_writes_the_tree_with_the_requested_sizes(tmp_path, capsys):
    status = main(
        [
            "data",
            "synth",
            "--out",
            str(tmp_path),
            "--name",
            "CLI",
            "--seed",
            "5",
            *SMALL,
            "--set",
            "p_multi=0.5",
            "--set",
            'classes=["star", "ring"]',
        ]
    )
    assert status == 0
    voc = tmp_path / "VOCdevkit" / "CLI"
    assert [len((voc / f"ImageSets/Main/{s}.txt").read_text().split()) for s in ("train", "val", "test")] == [3, 1, 2]
    config = json.loads((voc / "manifest.json").read_text())["config"]
    assert (config["seed"], config["image_size"], config["p_multi"], config["classes"]) == (
        5,
        32,
        0.5,
        ["star", "ring"],
    )
    assert f"wrote 6 images to {voc}" in capsys.readouterr().out


def test_existing_dataset_is_a_one_line_error_unless_overwrite(tmp_path, capsys):
    args = ["data", "synth", "--out", str(tmp_path), *SMALL]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert main([*args, "--overwrite"]) == 0


def test_bad_config_key_is_a_one_line_error(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), *SMALL, "--set", "p_mutli=0.3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown SynthConfig keys ['p_mutli']" in err
    assert not (tmp_path / "VOCdevkit").exists()


def test_usage_errors_return_argparse_status_without_raising(capsys):
    assert main([]) == 2
    assert main(["data", "synth", "--num-train", "many"]) == 2
    assert "invalid int value" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_entry_point_runs(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "spikelib", "data", "synth", "--out", str(tmp_path), *SMALL],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "VOCdevkit" / "SHAPES" / "JPEGImages" / "test_000001.jpg").is_file()
