"""Training speed and peak memory of the spiking localizer: snnTorch style, spikelib, ANN floor.

Run: ``.venv/bin/python benchmarks/bench_engine.py [--quick] [--sizes 64 128] [--steps 5 10 20]``;
``--ablation --sizes 64 --steps 10`` instead removes one piece of the engine at a time.

The network is the localizer of Barchid et al. (CBMI 2021): encoder conv 5x5x32 -> 2x2
max-pool, 3x3x64 -> pool, 3x3x128; decoder 3x3x64 -> x2 up, + encoder-2 spikes,
3x3x32 -> x2 up, + encoder-1 spikes, 3x3x16; a LIF layer (beta 0.5, fast sigmoid slope
25) after every convolution; a linear box head on the last layer's spikes averaged
over time. Input: rate-coded grayscale images, batch 16; Adam; a box regression loss.
It is trained three ways, each in its own fresh subprocess (so peaks do not mix):

* (a) ``snntorch``: the idiomatic snnTorch loop, one ``snn.Leaky`` call per layer per
  step, default environment (nothing configured);
* (b) ``spikelib``: the same network from :mod:`spikelib.snn.layers` on the engine of
  :mod:`spikelib.snn.engine`, after :func:`spikelib.snn.engine.configure_cpu_allocator`;
* (c) ``floor``: the ANN twin (same convolutions, ReLU, no time) in the same set-up as
  (b); its step time times T is what the convolutions alone cost.

Before timing each configuration, a check subprocess builds (a) and (b) with the same
weights and input (batch 2) and asserts that outputs and gradients agree within 1e-5.
Printed per configuration: median wall-clock and CPU time per training step and peak
resident memory (``VmHWM``, the whole process: importing torch alone is about half a
gigabyte) of each way, and the ratios (b)/(a) and (b)/(c). CPU time (all threads) is
printed because wall time on a shared machine depends on what else runs; the ratios of
one run are what to compare. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BATCH = 16
WEIGHT_GAIN = 3.0  # default init x3, so that every layer spikes (dead layers make a check vacuous)
ENCODER = ((1, 32, 5), (32, 64, 3), (64, 128, 3))
DECODER = ((128, 64, 3), (64, 32, 3), (32, 16, 3))


# ------------------------------------------------------------------------------- models


def _convs() -> nn.ModuleList:
    return nn.ModuleList(nn.Conv2d(cin, cout, k, padding=k // 2) for cin, cout, k in ENCODER + DECODER)


class SnnTorchLocalizer(nn.Module):
    """(a) The idiomatic snnTorch way: a Python loop over steps, one Leaky call per layer."""

    def __init__(self, size: int) -> None:
        import snntorch as snn
        from snntorch import surrogate

        super().__init__()
        self.convs = _convs()
        spike_grad = surrogate.fast_sigmoid(slope=25)
        self.lifs = nn.ModuleList(snn.Leaky(beta=0.5, spike_grad=spike_grad) for _ in self.convs)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Linear(16 * size * size, 4)

    def forward(self, x_seq: Tensor) -> Tensor:
        mems = [lif.reset_mem() for lif in self.lifs]
        spk_rec = []
        for step in range(x_seq.shape[0]):
            layer_input = x_seq[step]
            spks = []
            for i, (conv, lif) in enumerate(zip(self.convs, self.lifs)):
                spk, mems[i] = lif(conv(layer_input), mems[i])
                spks.append(spk)
                if i in (0, 1):  # encoder 1, 2: pool
                    layer_input = self.pool(spk)
                elif i == 3:  # decoder 1: up, + encoder-2 skip
                    layer_input = self.up(spk) + spks[1]
                elif i == 4:  # decoder 2: up, + encoder-1 skip
                    layer_input = self.up(spk) + spks[0]
                else:
                    layer_input = spk
            spk_rec.append(spks[-1])
        return self.head(torch.stack(spk_rec).mean(0).flatten(1))


class SpikelibPyramid(nn.Module):
    """The encoder-decoder of (b) from spikelib blocks: sequences in, last layer's spikes out."""

    def __init__(self, fold_time: bool | str = "auto") -> None:
        from spikelib.snn.layers import SpikingConvBlock, TimeDistributed

        super().__init__()
        self.blocks = nn.ModuleList(
            SpikingConvBlock(cin, cout, k, bias=True, fold_time=fold_time) for cin, cout, k in ENCODER + DECODER
        )
        self.pool = TimeDistributed(nn.MaxPool2d(2), fold_time)
        self.up = TimeDistributed(nn.Upsample(scale_factor=2, mode="nearest"), fold_time)

    def forward(self, x_seq: Tensor) -> Tensor:
        enc1 = self.blocks[0](x_seq)
        enc2 = self.blocks[1](self.pool(enc1))
        enc3 = self.blocks[2](self.pool(enc2))
        dec1 = self.blocks[3](enc3)
        dec2 = self.blocks[4](self.up(dec1) + enc2)
        return self.blocks[5](self.up(dec2) + enc1)


class SpikelibLocalizer(nn.Module):
    """(b) The same network on spikelib's engine, ``chunk_size`` steps at a time."""

    def __init__(self, size: int, chunk_size: int | None = 1, fold_time: bool | str = "auto") -> None:
        super().__init__()
        self.pyramid = SpikelibPyramid(fold_time)
        self.convs = [block.conv for block in self.pyramid.blocks]
        self.head = nn.Linear(16 * size * size, 4)
        self.chunk_size = chunk_size

    def forward(self, x_seq: Tensor) -> Tensor:
        from spikelib.snn.engine import run_chunked

        return self.head(run_chunked(self.pyramid, x_seq, self.chunk_size, reduce="mean").flatten(1))


class AnnLocalizer(nn.Module):
    """(c) The ANN twin: same convolutions, ReLU, one image instead of a sequence."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.convs = _convs()
        self.head = nn.Linear(16 * size * size, 4)

    def forward(self, x: Tensor) -> Tensor:
        c = self.convs
        enc1 = F.relu(c[0](x))
        enc2 = F.relu(c[1](F.max_pool2d(enc1, 2)))
        enc3 = F.relu(c[2](F.max_pool2d(enc2, 2)))
        dec1 = F.relu(c[3](enc3))
        dec2 = F.relu(c[4](F.interpolate(dec1, scale_factor=2.0) + enc2))
        dec3 = F.relu(c[5](F.interpolate(dec2, scale_factor=2.0) + enc1))
        return self.head(dec3.flatten(1))


BUILDERS = {"snntorch": SnnTorchLocalizer, "spikelib": SpikelibLocalizer, "floor": AnnLocalizer}


def build(way: str, size: int, seed: int = 0, **options) -> nn.Module:
    """The model of one way with deterministic weights (the same for every way)."""
    torch.manual_seed(seed)
    model = BUILDERS[way](size, **options)
    torch.manual_seed(seed)
    reference = AnnLocalizer(size)  # one set of weights, copied into every way
    with torch.no_grad():
        for src, dst in zip(reference.convs, model.convs):
            dst.weight.copy_(src.weight * WEIGHT_GAIN)
            dst.bias.copy_(src.bias * WEIGHT_GAIN)
        model.head.weight.copy_(reference.head.weight)
        model.head.bias.copy_(reference.head.bias)
    return model


def make_batch(size: int, num_steps: int, batch: int, seed: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Rate-coded images ``[T, B, 1, H, W]``, the images ``[B, 1, H, W]``, target boxes ``[B, 4]``."""
    from spikelib.snn.encoding import rate_encode

    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 1, size, size, generator=gen)
    target = torch.rand(batch, 4, generator=gen)
    return rate_encode(images, num_steps, generator=gen), images, target


def parameters_in_order(model: nn.Module) -> list[Tensor]:
    """Conv weights and biases, then the head's: the same order for every way."""
    params = [p for conv in model.convs for p in (conv.weight, conv.bias)]
    return params + [model.head.weight, model.head.bias]


# ------------------------------------------------------------------------------ workers


def peak_rss_gb() -> float:
    """Peak resident memory of this process (VmHWM), GB."""
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1e6
    return float("nan")


def run_way(
    way: str,
    size: int,
    num_steps: int,
    steps: int,
    warmup: int,
    threads: int | None = None,
    options: dict | None = None,
    allocator: bool | dict | None = None,
) -> dict:
    """Train ``steps + warmup`` Adam steps; median time of the last ``steps``, and the peak RSS.

    ``allocator``: call :func:`spikelib.snn.engine.configure_cpu_allocator` first (with these
    keyword arguments if a dict); ``None`` = the way's default (all but ``snntorch``).
    """
    if threads:
        torch.set_num_threads(threads)
    if allocator is None:
        allocator = way != "snntorch"
    if allocator:
        from spikelib.snn.engine import configure_cpu_allocator

        configure_cpu_allocator(**(allocator if isinstance(allocator, dict) else {}))
    model = build(way, size, **(options or {}) if way == "spikelib" else {})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x_seq, images, target = make_batch(size, num_steps, BATCH)
    model_input = images if way == "floor" else x_seq
    times, cpu_times = [], []
    for _ in range(warmup + steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        loss = F.smooth_l1_loss(model(model_input), target)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    scale = num_steps if way == "floor" else 1
    return {
        "step_s": statistics.median(times[warmup:]) * scale,
        "cpu_s": statistics.median(cpu_times[warmup:]) * scale,
        "peak_gb": peak_rss_gb(),
        "loss": float(loss),
    }


def run_check(size: int, num_steps: int, batch: int = 2) -> dict:
    """(a) and (b) with the same weights and input: largest output and gradient differences."""
    from spikelib.eval.activity import SpikeCounter

    x_seq, _, target = make_batch(size, num_steps, batch)
    results = {}
    for way in ("snntorch", "spikelib"):
        model = build(way, size)
        if way == "spikelib":
            with SpikeCounter(model) as counter:
                out = model(x_seq)
            rates = list(counter.layer_rates().values())
        else:
            out = model(x_seq)
        F.smooth_l1_loss(out, target).backward()
        results[way] = (out.detach(), [p.grad for p in parameters_in_order(model)])
    (out_a, grads_a), (out_b, grads_b) = results["snntorch"], results["spikelib"]
    out_diff = float((out_a - out_b).abs().max())
    # gradients: largest difference relative to the largest gradient of that tensor
    grad_diff = max(float((ga - gb).abs().max() / ga.abs().max().clamp(min=1e-12)) for ga, gb in zip(grads_a, grads_b))
    return {"out_diff": out_diff, "grad_rel_diff": grad_diff, "rates": rates}


def _subprocess(task: dict) -> dict:
    """Run one task in a fresh interpreter and return its JSON result."""
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(task)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {task} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: What (b) is made of, one piece removed at a time, and two changes to (a): label -> task.
ABLATION = {
    "(b) spikelib, as benchmarked": {"way": "spikelib"},
    "(b) without the allocator set-up": {"way": "spikelib", "allocator": False},
    "(b) whole sequence per layer (no chunks)": {"way": "spikelib", "options": {"chunk_size": None}},
    "(b) whole sequence, time folded into batch": {
        "way": "spikelib",
        "options": {"chunk_size": None, "fold_time": True},
    },
    "(b) time folded, no allocator set-up": {
        "way": "spikelib",
        "allocator": False,
        "options": {"chunk_size": None, "fold_time": True},
    },
    "(a) snntorch, as benchmarked": {"way": "snntorch"},
    "(a) snntorch + the allocator set-up": {"way": "snntorch", "allocator": True},
    "(c) floor (ANN step x T)": {"way": "floor"},
}


def ablation(size: int, num_steps: int, iters: int, warmup: int) -> None:
    """Time and peak memory of (b) with one piece of the engine removed at a time."""
    print(f"ablation at {size} px, T = {num_steps} (ratios against the first line)")
    print(f"{'variant':<46} {'wall s':>7} {'CPU s':>7} {'GB':>6} {'time':>6} {'CPU':>6} {'mem':>6}")
    base = None
    for label, task in ABLATION.items():
        res = _subprocess(
            {"kind": "way", "size": size, "num_steps": num_steps, "steps": iters, "warmup": warmup, **task}
        )
        base = base or res
        print(
            f"{label:<46} {res['step_s']:7.3f} {res['cpu_s']:7.3f} {res['peak_gb']:6.2f} "
            f"{res['step_s'] / base['step_s']:6.2f} {res['cpu_s'] / base['cpu_s']:6.2f} "
            f"{res['peak_gb'] / base['peak_gb']:6.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small configuration (64 px, T=5, 3 steps)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="image sizes")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20], help="numbers of time steps T")
    parser.add_argument("--iters", type=int, default=5, help="timed training steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    parser.add_argument("--ways", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--no-check", action="store_true", help="skip the (a) = (b) check")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="instead of the grid: (b) with one engine piece removed at a time, at the first --sizes and --steps",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        task = json.loads(args.worker)
        kind = task.pop("kind")
        print(json.dumps(run_check(**task) if kind == "check" else run_way(**task)))
        return
    if args.quick:
        args.sizes, args.steps, args.iters, args.warmup = [64], [5], 3, 1
    if args.ablation:
        ablation(args.sizes[0], args.steps[0], args.iters, args.warmup)
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, "
        f"load average {os.getloadavg()[0]:.2f}; per way: wall s/step, CPU s/step, peak GB"
    )
    header = f"{'size':>4} {'T':>3} | " + " | ".join(f"{w:^20}" for w in args.ways)
    full = {"snntorch", "spikelib", "floor"} <= set(args.ways)
    if full:
        header += " | b/a time  b/c time  b/c cpu  b/a mem"
    print(header)
    for size in args.sizes:
        for num_steps in args.steps:
            if not args.no_check:
                check = _subprocess({"kind": "check", "size": size, "num_steps": num_steps})
                rates = " ".join(f"{r:.2f}" for r in check["rates"])
                print(
                    f"  check {size} px T={num_steps}: |out a-b| = {check['out_diff']:.1e}, "
                    f"grad rel diff = {check['grad_rel_diff']:.1e}; spike rates {rates}",
                    flush=True,
                )
                assert check["out_diff"] < 1e-5 and check["grad_rel_diff"] < 1e-5, check
            res = {
                way: _subprocess(
                    {
                        "kind": "way",
                        "way": way,
                        "size": size,
                        "num_steps": num_steps,
                        "steps": args.iters,
                        "warmup": args.warmup,
                    }
                )
                for way in args.ways
            }
            line = f"{size:>4} {num_steps:>3} | " + " | ".join(
                f"{res[w]['step_s']:7.3f} {res[w]['cpu_s']:6.3f} {res[w]['peak_gb']:5.2f}" for w in args.ways
            )
            if full:
                a, b, c = res["snntorch"], res["spikelib"], res["floor"]
                line += (
                    f" | {b['step_s'] / a['step_s']:8.2f} {b['step_s'] / c['step_s']:9.2f}"
                    f" {b['cpu_s'] / c['cpu_s']:8.2f} {b['peak_gb'] / a['peak_gb']:8.2f}"
                )
            print(line, flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
