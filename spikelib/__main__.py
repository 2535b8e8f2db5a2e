"""Command line: ``python -m spikelib <command> ...`` (also installed as ``spikelib``).

Commands:
    data synth    write the generated VOC-format dataset (see ``spikelib.data.synth``)

Each command is one ``cmd_*`` function taking the parsed arguments and returning an exit
status; :func:`main` parses, dispatches, and turns the errors a user can cause (a bad
value, a missing or existing folder, a broken file) into one line on stderr and status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

USER_ERRORS = (ValueError, OSError, RuntimeError)  # FileNotFoundError and VOCDataError included


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


def cmd_data_synth(args: argparse.Namespace) -> int:
    """Write ``<out>/VOCdevkit/<name>`` and print where, how long it took and its statistics."""
    from spikelib.data.synth import SynthConfig, write_synthetic_voc

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
        print(f"  {split}: {s['images']} images, {s['objects']} objects, "
              f"{100 * s['share_multi_object']:.0f}% multi-object, {s['truncated_objects']} truncated, "
              f"{s['difficult_objects']} difficult, classes {s['class_counts']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; later commands (train, eval) add their own sub-parsers here."""
    from spikelib.data.synth import SynthConfig, default_data_root

    parser = argparse.ArgumentParser(prog="spikelib", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level; show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data = commands.add_parser("data", help="generate or inspect datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    synth = data_commands.add_parser("synth", help="write the generated VOC-format dataset",
                                     description="Write <out>/VOCdevkit/<name> with JPEG images and VOC XML.")
    synth.add_argument("--out", type=Path, default=default_data_root(),
                       help="folder that will contain VOCdevkit (default: %(default)s)")
    defaults = SynthConfig()
    synth.add_argument("--name", help=f"dataset folder name (default: {defaults.name})")
    synth.add_argument("--image-size", type=int, help=f"image side in pixels (default: {defaults.image_size})")
    synth.add_argument("--num-train", type=int, help=f"training images (default: {defaults.num_train})")
    synth.add_argument("--num-val", type=int, help=f"validation images (default: {defaults.num_val})")
    synth.add_argument("--num-test", type=int, help=f"test images (default: {defaults.num_test})")
    synth.add_argument("--seed", type=int, help=f"random seed (default: {defaults.seed})")
    fields = ", ".join(f.name for f in dataclasses.fields(SynthConfig))
    synth.add_argument("--set", action="append", type=_parse_setting, metavar="KEY=VALUE",
                       help=f"any other SynthConfig field, repeatable; one of: {fields}")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    synth.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=cmd_data_synth)
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
