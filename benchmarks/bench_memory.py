"""Peak memory of one training step of the spiking localizer: BPTT against DECOLLE, T = 4 ... 32.

BPTT keeps the graph of every time step until its backward pass, so its memory should
grow about linearly with T. DECOLLE runs one step at a time and frees each step's graph
after that step's local backward pass, so its memory should not grow with T. The goal
(issue 5): DECOLLE's peak at T=32 is at most 1.3 x its peak at T=4.

Each (rule, T) runs in a fresh subprocess so that nothing one run allocated inflates
the next. In it: build the default localizer (``LocalizerConfig()``, 64x64 grayscale,
Barchid et al. 2021 topology) at that T, run one warm-up training step (Adam state,
DECOLLE's readouts come into being), hand freed heap memory back to the system
(``malloc_trim``), reset the kernel's peak-RSS counter (``/proc/self/clear_refs``), run a
second step and read its peak resident set size (``VmHWM``). Two numbers per run:

* **peak**: the process's peak RSS during the step (torch itself, the model and the
  batch included: about 0.8 GiB of it is there before any training);
* **step**: that peak minus the RSS just before the step, what the step itself needs
  (activations kept for backward, gradients, temporaries).

Usage::

    .venv/bin/python benchmarks/bench_memory.py                # default: batch 8, T = 4 8 16 32
    .venv/bin/python benchmarks/bench_memory.py --batch-size 16 --num-steps 4 8

Linux only (reads /proc). Prints a table and the DECOLLE and BPTT ratios to T=4.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

RULES = ("bptt", "decolle")


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def worker(rule_name: str, num_steps: int, batch_size: int, threads: int, coding: str = "direct") -> dict:
    """One measurement, in this (fresh) process."""
    import torch

    from spikelib.learning.rules import make_rule
    from spikelib.models.config import LocalizerConfig
    from spikelib.models.localizer import build_localizer
    from spikelib.training.update import OptimizerUpdater

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = LocalizerConfig(num_steps=num_steps, coding=coding)
    model = build_localizer(config)
    rule = make_rule(rule_name)
    update = OptimizerUpdater(torch.optim.Adam(model.parameters(), lr=1e-3))
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, config.in_channels, config.image_size, config.image_size, generator=generator)
    corner = 0.5 * torch.rand(batch_size, 2, generator=generator)
    targets = {
        "box": torch.cat([corner, corner + 0.4], dim=1),
        "label": torch.randint(0, config.num_classes, (batch_size,), generator=generator),
    }
    rule.train_step(model, images, targets, update)  # warm-up
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)  # give freed heap pages back, so the step must take its own
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = status_kib("VmRSS")
    start = time.perf_counter()
    rule.train_step(model, images, targets, update)
    seconds = time.perf_counter() - start
    peak = status_kib("VmHWM")
    return {
        "rule": rule_name,
        "num_steps": num_steps,
        "batch_size": batch_size,
        "coding": coding,
        "peak_mib": peak / 1024,
        "before_mib": before / 1024,
        "step_mib": (peak - before) / 1024,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-steps", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--coding", default="direct", help="input code: direct (default), rate or latency")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--worker", nargs=2, metavar=("RULE", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        rule_name, num_steps = args.worker[0], int(args.worker[1])
        print(json.dumps(worker(rule_name, num_steps, args.batch_size, args.threads, args.coding)))
        return
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("bench_memory.py needs Linux (/proc/self/clear_refs, VmHWM)")
    results: dict[tuple[str, int], dict] = {}
    for rule_name in args.rules:
        for num_steps in args.num_steps:
            command = [
                sys.executable,
                __file__,
                "--worker",
                rule_name,
                str(num_steps),
                "--batch-size",
                str(args.batch_size),
                "--threads",
                str(args.threads),
                "--coding",
                args.coding,
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"{rule_name} T={num_steps} failed:\n{done.stderr[-2000:]}")
            results[rule_name, num_steps] = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"  {rule_name:8s} T={num_steps:3d}: peak {results[rule_name, num_steps]['peak_mib']:8.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps([*results.values()], indent=1))
    if set(args.rules) != set(RULES):
        return
    first = args.num_steps[0]
    print(
        f"\nOne training step of the default SpikingLocalizer (64x64, {args.coding} code, batch {args.batch_size}, "
        f"{args.threads} thread(s)); peak RSS of a step, and that peak minus the RSS just before the step"
    )
    print(
        f"{'T':>4} | {'BPTT peak':>10} {'step':>8} {'x T=' + str(first):>7} {'s':>6} | "
        f"{'DECOLLE peak':>12} {'step':>8} {'x T=' + str(first):>7} {'s':>6}"
    )
    for num_steps in args.num_steps:
        cells = []
        for rule_name in RULES:
            r, base = results[rule_name, num_steps], results[rule_name, first]
            width = 10 if rule_name == "bptt" else 12
            cells.append(
                f"{r['peak_mib']:>{width}.0f} {r['step_mib']:>8.0f} {r['peak_mib'] / base['peak_mib']:>7.2f} "
                f"{r['seconds']:>6.1f}"
            )
        print(f"{num_steps:>4} | " + " | ".join(cells))
    last = args.num_steps[-1]

    def ratio(rule_name: str, key: str) -> float:
        return results[rule_name, last][key] / results[rule_name, first][key]

    verdict = "meets" if ratio("decolle", "peak_mib") <= 1.3 else "MISSES"
    print(
        f"\nT={last} / T={first} ({last / first:.0f}x the steps): DECOLLE peak {ratio('decolle', 'peak_mib'):.2f} "
        f"({verdict} the goal <= 1.3), step {ratio('decolle', 'step_mib'):.2f}; "
        f"BPTT peak {ratio('bptt', 'peak_mib'):.2f}, step {ratio('bptt', 'step_mib'):.2f}"
    )


if __name__ == "__main__":
    main()
