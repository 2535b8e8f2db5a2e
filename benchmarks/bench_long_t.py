"""BPTT against DECOLLE as T grows, rate-coded input: held-out mIoU and peak memory of a short run.

For each T (default 8, 32, 128) and rule, in a fresh process: build the narrow pyramid
of notebook 05 at 32x32 pixels with rate coding, train it on the generated shapes for
the same batches (Adam, constant learning rate; DECOLLE: its default options, the head
with its own optimizer), then measure the held-out mIoU on 256 validation images and
the process's peak resident memory (``VmHWM``, Linux) during training. Peak memory
includes torch itself (about 0.3-0.8 GiB before any training).

Usage::

    .venv/bin/python benchmarks/bench_long_t.py                      # T = 8 32 128, 60 batches of 16
    .venv/bin/python benchmarks/bench_long_t.py --num-steps 8 32 --batches 100

Prints a table (mIoU, peak MiB, CPU seconds per rule and T).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench_memory import RULES, status_kib  # the sibling script: same rules, same /proc reading


def worker(rule_name: str, num_steps: int, batches: int, batch_size: int, seed: int) -> dict:
    """One short training run in this (fresh) process."""
    import itertools

    import torch
    from torch.utils.data import DataLoader

    from spikelib.data import SYNTH_NAME, VOCLocalization, ensure_synthetic
    from spikelib.eval.metrics import mean_iou
    from spikelib.learning.rules import make_rule
    from spikelib.models.config import LocalizerConfig
    from spikelib.models.localizer import build_localizer
    from spikelib.training.trainer import train_one_epoch

    torch.set_num_threads(1)
    root = ensure_synthetic(progress=False)
    train_set = VOCLocalization(
        root, dataset=SYNTH_NAME, image_set="train", cache=True, augment=True, progress=False, image_size=32
    )
    val_set = VOCLocalization(root, dataset=SYNTH_NAME, image_set="val", cache=True, progress=False, image_size=32)
    held_out = [val_set[i] for i in range(256)]
    images = torch.stack([image for image, _ in held_out])
    boxes = torch.stack([target["box"] for _, target in held_out])
    config = LocalizerConfig(
        image_size=32,
        encoder_channels=(8, 16, 32),
        decoder_channels=(16, 8, 8),
        num_steps=num_steps,
        coding="rate",
    )
    torch.manual_seed(seed)
    model = build_localizer(config)
    rule = make_rule(rule_name, head_lr=1e-3) if rule_name == "decolle" else make_rule(rule_name)
    loader = DataLoader(
        train_set, batch_size=batch_size, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(seed)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    stream = itertools.islice(itertools.chain.from_iterable(itertools.repeat(loader)), batches)
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS from here on
    start = time.process_time()
    train_one_epoch(model, rule, stream, optimizer, progress=False)
    cpu = time.process_time() - start
    peak = status_kib("VmHWM")
    model.eval()
    with torch.no_grad():
        miou = mean_iou(model(images).boxes, boxes)
    return {"rule": rule_name, "num_steps": num_steps, "miou": miou, "peak_mib": peak / 1024, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-steps", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--worker", nargs=2, metavar=("RULE", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker[0], int(args.worker[1]), args.batches, args.batch_size, args.seed)
        print(json.dumps(result))
        return
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("bench_long_t.py needs Linux (/proc/self/clear_refs, VmHWM)")
    results = []
    for num_steps in args.num_steps:
        for rule_name in RULES:
            command = [sys.executable, __file__, "--worker", rule_name, str(num_steps)]
            command += ["--batches", str(args.batches), "--batch-size", str(args.batch_size), "--seed", str(args.seed)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"{rule_name} T={num_steps} failed:\n{done.stderr[-2000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(
                f"  {rule_name:8s} T={num_steps:4d}: mIoU {r['miou']:.3f}, peak {r['peak_mib']:.0f} MiB, "
                f"{r['cpu_s']:.0f} CPU-s",
                file=sys.stderr,
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"\n{args.batches} batches of {args.batch_size}, 32x32, rate code, seed {args.seed}")
    print("| T | BPTT mIoU | BPTT peak MiB | BPTT CPU-s | DECOLLE mIoU | DECOLLE peak MiB | DECOLLE CPU-s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for num_steps in args.num_steps:
        cells = []
        for rule_name in RULES:
            r = next(x for x in results if x["rule"] == rule_name and x["num_steps"] == num_steps)
            cells += [f"{r['miou']:.3f}", f"{r['peak_mib']:.0f}", f"{r['cpu_s']:.0f}"]
        print(f"| {num_steps} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
