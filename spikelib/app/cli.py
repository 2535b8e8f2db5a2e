"""Command line: ``python -m spikelib <command> ...`` (also installed as ``spikelib``).

Commands:
    data synth    write the generated VOC-format dataset (see ``spikelib.data.synth``)
    train         the main job: train the SNN and its ANN twin from a config, evaluate, report
                  (see ``spikelib.app.job``; run under ``torchrun`` for several processes)
    eval          evaluate a checkpoint on the test (or validation) split
    compare       the SNN-vs-ANN study: T, input codes, spikes, energy, robustness
                  (see ``spikelib.app.study``); writes runs/<name>/compare/comparison.md

Each command is one ``cmd_*`` function taking the parsed arguments and returning an exit
status; :func:`main` parses, dispatches, and turns the errors a user can cause (a bad
value, a missing or existing folder, a broken file) into one line on stderr and status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from spikelib.app.compare_table import comparison_table, table_markdown, write_study
from spikelib.app.config import load_config
from spikelib.app.job import default_runs_dir, evaluate_checkpoint, run_job
from spikelib.app.report import LABELS
from spikelib.app.study import StudyConfig, run_study
from spikelib.data.synth import SynthConfig, default_data_root, write_synthetic_voc

# FileNotFoundError, VOCDataError, ConfigError, CheckpointError and TrainingDiverged included
USER_ERRORS = (ValueError, OSError, RuntimeError, FloatingPointError)
DEFAULT_CONFIG = "synthetic-cpu"


def _parse_setting(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (numbers, lists), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip(), tuple(parsed) if isinstance(parsed, list) else parsed


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` and the repeatable ``--set KEY=VALUE`` of every command that reads a run config."""
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help="a TOML file, or the name of one in configs/ (default: %(default)s)"
    )
    parser.add_argument(
        "--set",
        action="append",
        type=_parse_setting,
        metavar="KEY=VALUE",
        help="override a config value, repeatable, e.g. --set train.epochs=2",
    )


def cmd_data_synth(args: argparse.Namespace) -> int:
    """Write ``<out>/VOCdevkit/<name>`` and print where, how long it took and its statistics."""

    values = dict(args.set or [])
    for key in ("name", "image_size", "num_train", "num_val", "num_test", "seed"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    cfg = SynthConfig.from_dict(values)
    start = time.perf_counter()
    target = write_synthetic_voc(args.out, cfg, overwrite=args.overwrite, progress=not args.quiet)
    seconds = time.perf_counter() - start
    total = cfg.num_train + cfg.num_val + cfg.num_test
    stats = json.loads((target / "manifest.json").read_text())["stats"]
    print(f"wrote {total} images to {target} in {seconds:.1f} s ({total / max(seconds, 1e-9):.0f} images/s)")
    for split in ("train", "val", "test"):
        s = stats[split]
        print(
            f"  {split}: {s['images']} images, {s['objects']} objects, "
            f"{100 * s['share_multi_object']:.0f}% multi-object, {s['truncated_objects']} truncated, "
            f"{s['difficult_objects']} difficult, classes {s['class_counts']}"
        )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train the models of a run config, evaluate them on the test split, write runs/<name>/report.md."""

    cfg = load_config(args.config, dict(args.set or []))
    start = time.perf_counter()
    run_job(cfg, args.runs_dir, resume=args.resume, fresh=args.fresh, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"total time {time.perf_counter() - start:.0f} s")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint; print the metrics (and write them as JSON with --json)."""

    cfg = load_config(args.config, dict(args.set or [])) if args.config else None
    if cfg is None and args.set:
        raise ValueError("--set needs --config (the checkpoint's own config is used as stored)")
    result = evaluate_checkpoint(args.checkpoint, cfg, args.split, args.batch_size, progress=not args.quiet)
    print(
        f"{LABELS.get(result['kind'], result['kind'])} after {result['epoch']} epochs, {args.split} split "
        f"({result['num_images']} images):"
    )
    print(
        f"  mIoU {100 * result['miou']:.1f}  CorLoc {100 * result['corloc']:.1f}  mAP@0.5 {100 * result['map50']:.1f}"
        f"  class acc. {100 * result['accuracy']:.1f}"
    )
    print(
        "  mIoU by size: "
        + ", ".join(
            f"{name} {100 * result[f'miou_{name}']:.1f} ({result[f'count_{name}']})"
            for name in ("small", "medium", "large")
        )
    )
    print("  AP: " + ", ".join(f"{name} {100 * ap:.1f}" for name, ap in result["ap"].items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Run the SNN-vs-ANN study of a run config; print the table, write runs/<name>/compare/."""

    cfg = load_config(args.config, dict(args.set or []))
    values = {
        key: getattr(args, key)
        for key in (
            "num_steps",
            "codings",
            "coding_steps",
            "robustness",
            "train_images",
            "test_images",
            "energy_images",
        )
        if getattr(args, key) is not None
    }
    study = StudyConfig.from_dict(values)
    results = run_study(
        cfg, study, args.runs_dir, fresh=args.fresh, progress=not args.quiet, log_fn=None if args.quiet else print
    )
    paths = write_study(results, Path(args.runs_dir or default_runs_dir()) / cfg.name / "compare")
    print(table_markdown(comparison_table(results)))
    print(f"wrote {paths['md']}, {paths['json'].name}, {paths['csv'].name} ({results['seconds']:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: ``data synth``, ``train``, ``eval`` and ``compare``."""

    parser = argparse.ArgumentParser(prog="spikelib", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level; show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data = commands.add_parser("data", help="generate or inspect datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    synth = data_commands.add_parser(
        "synth",
        help="write the generated VOC-format dataset",
        description="Write <out>/VOCdevkit/<name> with JPEG images and VOC XML.",
    )
    synth.add_argument(
        "--out",
        type=Path,
        default=default_data_root(),
        help="folder that will contain VOCdevkit (default: %(default)s)",
    )
    defaults = SynthConfig()
    synth.add_argument("--name", help=f"dataset folder name (default: {defaults.name})")
    synth.add_argument("--image-size", type=int, help=f"image side in pixels (default: {defaults.image_size})")
    synth.add_argument("--num-train", type=int, help=f"training images (default: {defaults.num_train})")
    synth.add_argument("--num-val", type=int, help=f"validation images (default: {defaults.num_val})")
    synth.add_argument("--num-test", type=int, help=f"test images (default: {defaults.num_test})")
    synth.add_argument("--seed", type=int, help=f"random seed (default: {defaults.seed})")
    fields = ", ".join(f.name for f in dataclasses.fields(SynthConfig))
    synth.add_argument(
        "--set",
        action="append",
        type=_parse_setting,
        metavar="KEY=VALUE",
        help=f"any other SynthConfig field, repeatable; one of: {fields}",
    )
    synth.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    synth.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=cmd_data_synth)

    train = commands.add_parser(
        "train",
        help="train the SNN and its ANN twin from a run config, evaluate, write a report",
        description="Train the models of a run config (configs/*.toml), evaluate them on the test split and "
        "write runs/<name>/report.md. Under torchrun, trains on every process.",
    )
    _add_config_arguments(train)
    again = train.add_mutually_exclusive_group()
    again.add_argument(
        "--resume", action="store_true", help="continue from the run's checkpoints (finished models are only evaluated)"
    )
    again.add_argument("--fresh", action="store_true", help="delete the run's checkpoints and start over")
    train.add_argument(
        "--runs-dir", type=Path, default=None, help="parent folder of the run folders (default: <repository>/runs)"
    )
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser(
        "eval", help="evaluate a checkpoint", description="Evaluate a checkpoint on the test (or validation) split."
    )
    evaluate.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint.pt from a run folder")
    evaluate.add_argument(
        "--config",
        default=None,
        help="take the data from this config (its model must match); default: the checkpoint's",
    )
    evaluate.add_argument(
        "--set",
        action="append",
        type=_parse_setting,
        metavar="KEY=VALUE",
        help="override a value of --config, repeatable",
    )
    evaluate.add_argument("--split", choices=("test", "val"), default="test", help="default: %(default)s")
    evaluate.add_argument("--batch-size", type=int, default=None, help="default: the config's eval_batch_size")
    evaluate.add_argument("--json", type=Path, default=None, help="also write the metrics to this JSON file")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(func=cmd_eval)

    compare = commands.add_parser(
        "compare",
        help="SNN vs ANN: accuracy against T and input code, spikes, energy, robustness",
        description="Train (or reuse) the ANN twin and the SNN at several T and input codes with the budget of a "
        "run config, measure them on the same test images, write runs/<name>/compare/comparison.md, "
        ".json and .csv. Checkpoints under runs/<name>/compare/ are reused.",
    )
    _add_config_arguments(compare)
    compare.add_argument("--num-steps", type=int, nargs="+", metavar="T", help="SNN time steps (default: 1 2 4 8 16)")
    compare.add_argument(
        "--codings",
        nargs="*",
        choices=("direct", "rate", "latency"),
        help="other input codes to train at --coding-steps (default: rate latency)",
    )
    compare.add_argument("--coding-steps", type=int, help="T of the input-code comparison (default: 4)")
    compare.add_argument(
        "--robustness", choices=("all", "reference", "none"), help="whose robustness to measure (default: all)"
    )
    compare.add_argument("--train-images", type=int, help="train on the first N images (default: all)")
    compare.add_argument("--test-images", type=int, help="measure on the first N test images (default: all)")
    compare.add_argument("--energy-images", type=int, help="count spikes on N test images (default: 200)")
    compare.add_argument("--fresh", action="store_true", help="delete the study's checkpoints and start over")
    compare.add_argument(
        "--runs-dir", type=Path, default=None, help="parent folder of the run folders (default: <repository>/runs)"
    )
    compare.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")
    compare.set_defaults(func=cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse already printed
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except USER_ERRORS as err:
        if args.verbose:
            raise
        print(f"spikelib {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("spikelib: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
