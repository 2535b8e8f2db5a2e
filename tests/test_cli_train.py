"""The main job from the command line: configs, one-line errors, the report, kill -9 and --resume."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from spikelib.app.cli import main
from spikelib.app.config import ConfigError, RunConfig, Targets, load_config
from spikelib.app.job import build_model, build_rule, load_trained
from spikelib.app.report import check_targets
from spikelib.data.synth import SynthConfig, write_synthetic_voc
from spikelib.training.trainer import train_one_epoch
from spikelib.training.update import build_optimizer

REPO = Path(__file__).resolve().parents[1]
DATA = SynthConfig(name="CLIDATA", num_train=48, num_val=12, num_test=16, image_size=64, seed=1)

TINY = """
name = "{name}"
seed = 0
models = {models}

[data]
root = "{root}"
generate = false
train = ["CLIDATA:train"]
val = ["CLIDATA:val"]
test = ["CLIDATA:test"]
image_size = 32

[model]
image_size = 32
encoder_channels = [4, 8, 8]
decoder_channels = [8, 4, 4]
head_pool = 8

[snn]
num_steps = {num_steps}

[train]
epochs = {epochs}
batch_size = {batch_size}
lr = 0.005
eval_batch_size = 16
device = "cpu"
num_threads = 1
"""


@pytest.fixture(autouse=True)
def restore_threads():
    """``train.num_threads`` sets torch's thread count in this process; put it back afterwards."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clidata")
    write_synthetic_voc(root, DATA, progress=False)
    return root


def write_config(
    folder: Path,
    root: Path,
    name: str = "tiny",
    models=("snn",),
    num_steps: int = 2,
    epochs: int = 3,
    batch_size: int = 4,
    extra: str = "",
) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        TINY.format(
            name=name,
            models=json.dumps(list(models)),
            root=root,
            num_steps=num_steps,
            epochs=epochs,
            batch_size=batch_size,
        )
        + extra
    )
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "spikelib", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def history_of(run_dir: Path) -> list[dict]:
    """Metrics per epoch without wall-clock fields (NaN as None), from the checkpoint."""
    checkpoint = torch.load(run_dir / "snn" / "checkpoint.pt", weights_only=True)

    def plain(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    return [{k: plain(v) for k, v in r.items() if "seconds" not in k} for r in checkpoint["history"]]


# ----------------------------------------------------------------------------- configs


SHIPPED_CONFIGS = sorted(path.stem for path in (REPO / "configs").glob("*.toml"))


def test_every_config_is_tested():
    assert {"synthetic-cpu", "synthetic-decolle", "voc-gpu"} <= set(SHIPPED_CONFIGS)


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_the_shipped_configs_load(name):
    cfg = load_config(REPO / "configs" / f"{name}.toml")
    assert cfg.name == name and set(cfg.models) <= {"snn", "ann"} and cfg.models
    assert cfg.snn.num_steps <= 8


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_every_model_of_a_shipped_config_trains_one_batch(name, one_thread):
    """Each model of the config, with its learning rule and optimizer settings, takes one step on a
    batch of two images of the config's size and channels (no data needed: VOC is not here)."""
    cfg = load_config(REPO / "configs" / f"{name}.toml")
    channels, size = (1 if cfg.data.grayscale else 3), cfg.data.image_size
    images = torch.rand(2, channels, size, size, generator=torch.Generator().manual_seed(0))
    targets = {
        "box": torch.tensor([[0.1, 0.2, 0.6, 0.7], [0.3, 0.3, 0.9, 0.8]]),
        "label": torch.tensor([0, cfg.model.num_classes - 1]),
        "index": torch.tensor([0, 1]),
    }
    for kind in cfg.models:
        torch.manual_seed(0)
        model = build_model(kind, cfg)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        optimizer = build_optimizer(model, cfg.train_config(kind))
        stats = train_one_epoch(model, build_rule(kind, cfg), [(images, targets)], optimizer, progress=False)
        assert math.isfinite(stats["train_loss"]), (name, kind, stats)
        changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
        assert changed, f"{name}: the {kind} did not change in one step"


def test_voc_gpu_trains_on_07_and_12_trainval_and_tests_on_07_test():
    cfg = load_config(REPO / "configs" / "voc-gpu.toml")
    assert cfg.data.train == ("2007:trainval", "2012:trainval") and cfg.data.test == ("2007:test",)
    assert cfg.model.num_classes == 20 and cfg.train.amp == "bf16" and cfg.data.image_size >= 128


@pytest.mark.parametrize(
    "table, key",
    [
        ("", "sed"),
        ("[train]", "lrr"),
        ("[model]", "num_step"),
        ("[snn]", "betta"),
        ("[data]", "imagesize"),
        ("[ann]", "epoch"),
        ("[targets]", "snn_iou"),
    ],
)
def test_an_unknown_key_is_named_with_the_allowed_ones(tmp_path, data_root, table, key):
    path = write_config(tmp_path, data_root)
    text = path.read_text()
    text = (
        f"{key} = 1\n" + text
        if not table
        else text.replace(f"{table}\n", f"{table}\n{key} = 1\n")
        if (table in text)
        else text + f"\n{table}\n{key} = 1\n"
    )
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"unknown key '{key}'" in message and "allowed:" in message and str(path) in message


def test_overrides_use_dotted_keys_and_are_validated(tmp_path, data_root):
    path = write_config(tmp_path, data_root)
    cfg = load_config(path, {"train.epochs": 7, "snn.num_steps": 5, "ann.lr": 0.1})
    assert (cfg.train.epochs, cfg.snn.num_steps) == (7, 5)
    assert cfg.train_config("ann").lr == 0.1 and cfg.train_config("snn").lr == 0.005
    with pytest.raises(ConfigError, match="epochs must be an int >= 1, got 0"):
        load_config(path, {"train.epochs": 0})
    with pytest.raises(ConfigError, match="model.in_channels = 1 but data.grayscale = false"):
        load_config(path, {"data.grayscale": False})


def test_the_snn_only_keys_live_in_their_own_table(tmp_path, data_root):
    path = write_config(tmp_path, data_root)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"model.num_steps": 5})
    message = str(caught.value)
    assert "unknown key 'num_steps' in [model]" in message and "(num_steps belongs in [snn])" in message
    assert "allowed: in_channels, image_size" in message
    with pytest.raises(
        ConfigError, match=r"unknown key 'head_pool' in \[snn\].*allowed: num_steps, beta.*belongs in \[model\]"
    ):
        load_config(path, {"snn.head_pool": 4})
    cfg = load_config(path, {"snn.num_steps": 5})
    assert cfg.model_config("snn").num_steps == 5 and not hasattr(cfg.model_config("ann"), "num_steps")


def test_targets_are_parsed_strictly(tmp_path, data_root):
    assert load_config(write_config(tmp_path, data_root)).targets is None
    path = write_config(tmp_path, data_root, extra="\n[targets]\nsnn_miou = 0.5\nmax_steps = 4\n")
    targets = load_config(path).targets
    assert (targets.snn_miou, targets.max_steps, targets.max_gap) == (0.5, 4, None)
    with pytest.raises(ConfigError, match=r"\[targets\].*snn_miou must be a number in \[0, 1\], got 60"):
        load_config(path, {"targets.snn_miou": 60})


def test_run_config_round_trips_through_a_plain_dict(tmp_path, data_root):
    cfg = load_config(write_config(tmp_path, data_root), {"ann.lr": 0.02})
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ----------------------------------------------------------------------------- one-line errors


def test_unknown_config_key_is_a_one_line_error(tmp_path, data_root, capsys):
    path = write_config(tmp_path, data_root, extra="\n[train.loss]\nbox_los = 'giou'\n")
    assert main(["train", "--config", str(path), "--runs-dir", str(tmp_path / "runs")]) == 1
    assert "unknown loss option(s) ['box_los']" in one_line_error(capsys)
    assert main(["train", "--config", str(tmp_path / "nope.toml")]) == 1
    assert "no config file" in one_line_error(capsys)


def test_missing_dataset_root_is_a_one_line_error(tmp_path, data_root, capsys):
    path = write_config(tmp_path, tmp_path / "nowhere")
    assert main(["train", "--config", str(path), "--runs-dir", str(tmp_path / "runs"), "-q"]) == 1
    assert "no VOC dataset folder at" in one_line_error(capsys)


def test_voc_root_without_the_requested_year_or_split_is_a_one_line_error(tmp_path, voc_sample, capsys):
    base = [
        "--set",
        f"data.root={voc_sample}",
        "--set",
        "data.generate=false",
        "--set",
        "model.num_classes=20",
        "--runs-dir",
        str(tmp_path / "runs"),
        "-q",
    ]
    assert (
        main(
            [
                "train",
                "--config",
                "synthetic-cpu",
                "--set",
                'data.train=["2007:trainval"]',
                "--set",
                'data.val=["2007:trainval"]',
                "--set",
                'data.test=["2007:test"]',
                *base,
            ]
        )
        == 1
    )
    err = one_line_error(capsys)
    assert "VOC2007/ImageSets/Main/test.txt" in err and "splits there: ['trainval']" in err
    assert main(["train", "--config", "synthetic-cpu", "--set", 'data.train=["2010:trainval"]', *base]) == 1
    assert "no VOC dataset folder at" in one_line_error(capsys)


# ----------------------------------------------------------------------------- a whole run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_root) -> Path:
    """A finished tiny run, SNN only, 3 epochs, trained in a subprocess as a user would."""
    folder = tmp_path_factory.mktemp("finished")
    path = write_config(folder, data_root, name="tiny")
    done = run_cli("train", "--config", str(path), "--runs-dir", str(folder / "runs"), "-q")
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def test_train_writes_report_figures_and_prints_the_table(tmp_path, data_root, capsys):
    path = write_config(tmp_path, data_root, name="both", models=("snn", "ann"), epochs=1)
    assert main(["train", "--config", str(path), "--runs-dir", str(tmp_path / "runs"), "-q"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "both"
    results = json.loads((run / "results.json").read_text())
    assert set(results) == {"snn", "ann", "meta", "map50_ceiling"}
    assert results["snn"]["test"]["num_images"] == DATA.num_test
    assert results["meta"]["threads"] == 1 and results["meta"]["wall_seconds"] > 0
    assert "job wall time" in out and "Job wall time" in (run / "report.md").read_text()
    assert "[ ]" not in out and "[x]" not in out and "## Targets" not in (run / "report.md").read_text()  # none set
    row = next(line for line in out.splitlines() if line.startswith("| SNN |"))
    assert f"| {100 * results['snn']['test']['miou']:.1f} |" in row
    report = (run / "report.md").read_text()
    assert "| ANN twin |" in report and "![learning curves](curves.png)" in report and "| **mAP** |" in report
    ceiling = results["map50_ceiling"]["map50"]
    assert 0 < ceiling <= 1 and f"scores mAP@0.5 = **{100 * ceiling:.1f} %**" in report
    assert f"| **mAP** | **{100 * results['snn']['test']['map50']:.1f}** | " in report
    confusion = results["snn"]["test"]["confusion"]
    assert sum(map(sum, confusion)) == DATA.num_test and "## Confusion matrices" in report
    assert "| true \\ predicted |" in report and "### SNN" in report and "### ANN twin" in report
    activity = results["snn"]["activity"]
    assert list(activity) == ["enc1", "enc2", "enc3", "dec1", "dec2", "dec3"] and "| dec3 |" in report
    assert all(0 <= a["rate"] <= 1 and 0 <= a["silent"] <= 1 for a in activity.values())
    assert (run / "curves.png").stat().st_size > 10_000 and (run / "gallery.png").stat().st_size > 10_000
    assert len((run / "ann" / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_second_train_without_resume_or_fresh_is_refused(finished_run, capsys):
    args = ["train", "--config", str(finished_run / "tiny.toml"), "--runs-dir", str(finished_run / "runs"), "-q"]
    assert main(args) == 1
    err = one_line_error(capsys)
    assert "already holds snn/checkpoint.pt" in err and "--resume" in err and "--fresh" in err


def test_resume_of_a_finished_run_only_evaluates(finished_run, capsys):
    before = history_of(finished_run / "runs" / "tiny")
    args = ["train", "--config", str(finished_run / "tiny.toml"), "--runs-dir", str(finished_run / "runs"), "-q"]
    assert main([*args, "--resume"]) == 0
    assert history_of(finished_run / "runs" / "tiny") == before
    assert "| SNN |" in capsys.readouterr().out


def test_eval_reproduces_the_test_metrics_of_the_report(finished_run, tmp_path, capsys):
    run = finished_run / "runs" / "tiny"
    out_json = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(run / "snn" / "checkpoint.pt"), "--json", str(out_json), "-q"]) == 0
    assert "SNN after 3 epochs, test split (16 images)" in capsys.readouterr().out
    measured, reported = json.loads(out_json.read_text()), json.loads((run / "results.json").read_text())["snn"]["test"]
    for key in ("miou", "corloc", "map50", "accuracy"):
        assert measured[key] == pytest.approx(reported[key], abs=1e-6), key


def test_a_checkpoint_of_another_model_configuration_is_a_one_line_error(finished_run, capsys):
    checkpoint = finished_run / "runs" / "tiny" / "snn" / "checkpoint.pt"
    config = finished_run / "tiny.toml"
    assert main(["eval", "--checkpoint", str(checkpoint), "--config", str(config), "--set", "snn.num_steps=4"]) == 1
    err = one_line_error(capsys)
    assert "was trained with a different SNN configuration: num_steps = 2 in the checkpoint, 4 here" in err
    runs = ["--runs-dir", str(finished_run / "runs"), "-q"]
    assert main(["train", "--config", str(config), "--set", "snn.beta=0.9", "--resume", *runs]) == 1
    assert "beta = 0.5 in the checkpoint, 0.9 here" in one_line_error(capsys)


def test_a_checkpoint_from_before_snn_was_split_from_model_still_loads(finished_run, tmp_path):
    state = torch.load(finished_run / "runs" / "tiny" / "snn" / "checkpoint.pt", weights_only=True)
    flat = {k: v for k, v in state["config"].items() if k != "snn"}
    flat["model"] = {**state["config"]["model"], **state["config"]["snn"]}  # the old layout: one [model]
    legacy = tmp_path / "legacy.pt"
    torch.save({**state, "config": flat}, legacy)
    model, _, cfg = load_trained(legacy)
    assert cfg.snn.num_steps == 2 and cfg == RunConfig.from_dict(state["config"])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), state["model"].values()))


def test_the_report_checks_only_the_targets_its_config_sets():
    test = {"miou": 0.62, "miou_small": 0.2, "count_small": 9}
    results = {"snn": {"test": test}, "ann": {"test": {**test, "miou": 0.7}}}
    assert check_targets(results, 6, None) == []
    checks = check_targets(results, 6, Targets(snn_miou=0.6, max_steps=8, max_gap=0.04))
    assert [(what, met) for what, met, _ in checks] == [
        ("SNN mean IoU >= 0.60 at T <= 8", True),
        ("SNN within 4 points of its ANN twin", False),
    ]
    test_acc = {"snn": {"test": {**test, "accuracy": 0.86, "map50": 0.44}}, "ann": {"test": {**test, "accuracy": 0.89}}}
    checks = check_targets(test_acc, 6, Targets(snn_accuracy=0.85, ann_accuracy=0.9, snn_map=0.45))
    assert [(what, met, measured) for what, met, measured in checks] == [
        ("SNN class accuracy >= 0.85", True, "0.860"),
        ("ANN twin class accuracy >= 0.90", False, "0.890"),
        ("SNN mAP@0.5 >= 0.45", False, "0.440"),
    ]


def test_changing_t_keeps_the_twin_checkpoint_and_refuses_the_snn_one(tmp_path, data_root, capsys):
    path = write_config(tmp_path, data_root, name="pair", models=("snn", "ann"), epochs=1)
    runs = ["--runs-dir", str(tmp_path / "runs"), "-q"]
    assert main(["train", "--config", str(path), *runs]) == 0
    twin = tmp_path / "runs" / "pair" / "ann" / "checkpoint.pt"
    before = torch.load(twin, weights_only=True)["history"]
    capsys.readouterr()
    only_twin = ["--set", 'models=["ann"]', "--set", "snn.num_steps=3", "--resume"]
    assert main(["train", "--config", str(path), *only_twin, *runs]) == 0  # finished: reused, only evaluated
    assert "| ANN twin |" in capsys.readouterr().out
    assert torch.load(twin, weights_only=True)["history"] == before
    assert main(["eval", "--checkpoint", str(twin), "--config", str(path), "--set", "snn.num_steps=3", "-q"]) == 0
    capsys.readouterr()
    assert main(["train", "--config", str(path), "--set", "snn.num_steps=3", "--resume", *runs]) == 1
    err = one_line_error(capsys)
    assert (
        "snn/checkpoint.pt was trained with a different SNN configuration: num_steps = 2 in the checkpoint, 3 here"
        in err
    )


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_reaches_the_same_metrics(finished_run, tmp_path):
    """A real SIGKILL while epoch 2 of 3 trains; ``--resume`` ends where an uninterrupted run ends."""
    reference = history_of(finished_run / "runs" / "tiny")
    config = finished_run / "tiny.toml"
    runs = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "spikelib", "train", "--config", str(config), "--runs-dir", str(runs)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    progress: list[bytes] = []  # what the process writes to stderr: its progress bars
    reader = threading.Thread(target=lambda: progress.extend(iter(lambda: proc.stderr.read1(256), b"")))
    reader.start()
    # the progress bar of epoch 2 shows "snn epoch 2/3:  25%|...| 3/12": kill after its first step
    mid_epoch = re.compile(r"snn epoch 2/3:.*?\| *([1-9]\d*)/(\d+)")
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        match = mid_epoch.search(b"".join(progress).decode(errors="replace"))
        if match and int(match.group(1)) < int(match.group(2)):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    reader.join(timeout=10)
    assert proc.returncode == -signal.SIGKILL, b"".join(progress).decode(errors="replace")[-2000:]
    killed = runs / "tiny" / "snn"
    assert len((killed / "metrics.jsonl").read_text().splitlines()) == 1  # epoch 2 never finished
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"] == 1

    done = run_cli("train", "--config", str(config), "--runs-dir", str(runs), "--resume", "-q")
    assert done.returncode == 0, done.stderr[-3000:]
    assert history_of(runs / "tiny") == reference
    assert len((killed / "metrics.jsonl").read_text().splitlines()) == 3
    resumed, straight = (
        json.loads((folder / "tiny" / "results.json").read_text())["snn"]["test"]
        for folder in (runs, finished_run / "runs")
    )
    assert {k: v for k, v in resumed.items() if k != "seconds"} == {k: v for k, v in straight.items() if k != "seconds"}


# ----------------------------------------------------------------------------- data of a run


def test_voc_photos_repeated_across_years_are_trained_on_once(voc_sample):
    from spikelib.app.config import DataConfig
    from spikelib.app.job import build_data, canonical_image_key
    from spikelib.data import VOCLocalization

    assert canonical_image_key("2012", "2007_000032") == canonical_image_key("2007", "000032") == "2007/000032"
    assert canonical_image_key("2012", "2008_000002") == "2008/000002"
    assert canonical_image_key("SHAPES", "train_000001") == "SHAPES/train_000001"
    sizes = {year: len(VOCLocalization(voc_sample, year, "trainval", policy="largest")) for year in ("2007", "2012")}
    for test_year, other in (("2007", "2012"), ("2012", "2007")):
        cfg = DataConfig(
            root=str(voc_sample),
            generate=False,
            train=("2007:trainval", "2012:trainval"),
            val=(),
            val_fraction=0.1,
            test=(f"{test_year}:trainval",),
            image_size=32,
            cache=False,
        )
        splits = build_data(cfg, seed=0)
        tested = {canonical_image_key(test_year, ann.image_id) for ann in splits.test.annotations}
        trained = {
            canonical_image_key(leaf.dataset, leaf.annotations[i].image_id)
            for i, leaf in _train_items(splits.train) + _train_items(splits.val)
        }
        assert not tested & trained
        # the sample's three photos that are in both years (000032, 000033, 000039) leave the other year too
        assert len(splits.train) + len(splits.val) == len(trained) == sizes[other] - 3


def test_held_out_validation_images_are_not_augmented_and_not_trained_on(data_root):
    from spikelib.app.config import DataConfig
    from spikelib.app.job import build_data

    cfg = DataConfig(
        root=str(data_root),
        generate=False,
        train=("CLIDATA:train",),
        val=(),
        val_fraction=0.25,
        test=("CLIDATA:test",),
        image_size=32,
        augment=True,
    )
    splits = build_data(cfg, seed=0)
    assert (len(splits.train), len(splits.val)) == (36, 12)
    assert not set(splits.train.indices) & set(splits.val.indices)
    image, target = splits.val[0]
    again, _ = splits.val.dataset[splits.val.indices[0]]
    splits.train.dataset.set_epoch(3)
    assert torch.equal(image, again) and not splits.val.dataset.augment and splits.train.dataset.augment


def _train_items(dataset):
    """(index, leaf dataset) of every training image, through Subset and ConcatDataset."""
    from torch.utils.data import ConcatDataset, Subset

    if isinstance(dataset, Subset):
        inner = list(_train_items(dataset.dataset))
        return [inner[i] for i in dataset.indices]
    if isinstance(dataset, ConcatDataset):
        return [item for part in dataset.datasets for item in _train_items(part)]
    return [(i, dataset) for i in range(len(dataset))]
