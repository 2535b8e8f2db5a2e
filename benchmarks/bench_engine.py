"""Training speed and peak memory of the spiking localizer: snnTorch style, spikelib's model, ANN floor.

Run: ``.venv/bin/python benchmarks/bench_engine.py [--quick] [--sizes 64 128] [--steps 5 10 20]``;
``--ablation --sizes 64 --steps 10`` instead removes one piece of the engine at a time.

The network is spikelib's own :class:`~spikelib.models.localizer.SpikingLocalizer` configured
to the topology of Barchid et al. (CBMI 2021), ``preset("barchid2021")``: encoder conv
5x5x32 -> 2x2 max-pool, 3x3x64 -> pool, 3x3x128; decoder 3x3x64 -> x2 up, + encoder-2
spikes, 3x3x32 -> x2 up, + encoder-1 spikes, 3x3x16; a LIF layer (beta 0.5, fast sigmoid
slope 25) after every convolution, no BatchNorm; rate-coded grayscale input; the head
(average pool to 8x8, linear 1024 -> 256 -> ReLU -> 6 logits + 4 box outputs) reads the
last layer's spikes averaged over time. Batch 16, Adam, loss = smooth L1 on the boxes +
cross-entropy on the logits. It is trained three ways, each in its own fresh subprocess
(so peaks do not mix):

* (a) ``snntorch``: the idiomatic snnTorch loop, one ``snn.Leaky`` call per layer per
  step, with the same convolutions, encoding and head, default environment;
* (b) ``spikelib``: ``SpikingLocalizer`` itself (its ``forward``: chunks of one step on the
  engine), after :func:`spikelib.runtime.allocator.configure_cpu_allocator`;
* (c) ``floor``: its ANN twin :class:`~spikelib.models.localizer.AnnLocalizer` (same
  convolutions and head, ReLU, no time) in the same set-up as (b); its step time times T
  is what the convolutions alone cost. It runs T times as many training steps as (b), so
  that it is timed over as much wall time.

Before timing each configuration, a check subprocess builds (a) and (b) with the same
weights and input (batch 2) and asserts that predictions and gradients agree within
1e-5, and that every layer spikes. The ways then run ``--repeats`` times, interleaved
(a, b, c, a, b, c, ...), so that a change in the machine's load hits all three; the
ratios b/a and b/c are taken within each repeat. Printed per configuration: median
wall-clock time per training step of each way with its spread over the repeats
(min-max), median CPU time, peak resident memory (``VmHWM``, the whole process:
importing torch alone is about half a gigabyte), and the ratios (median, min-max).
CPU time (all threads) is printed because wall time on a shared machine depends on what
else runs. Not a test.
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

from spikelib.models.config import LocalizerConfig, preset
from spikelib.models.localizer import AnnLocalizer, LocalizationHead, Prediction, SpikingLocalizer
from spikelib.runtime.allocator import configure_cpu_allocator
from spikelib.snn.encoding import rate_encode

BATCH = 16
WAYS = ("snntorch", "spikelib", "floor")


def localizer_config(size: int, num_steps: int) -> LocalizerConfig:
    """The paper's topology at ``size`` px, ``num_steps`` steps, rate coding, mean readout, no BN."""
    return preset("barchid2021", image_size=size, num_steps=num_steps, coding="rate", readout="mean", norm="none")


# ------------------------------------------------------------------------------- models


class SnnTorchLocalizer(nn.Module):
    """(a) The idiomatic snnTorch way: a Python loop over steps, one Leaky call per layer.

    Computes the same function as ``SpikingLocalizer(config)`` for a config without BN,
    with rate coding and the mean readout: same convolutions, pooling, skips and head.
    """

    def __init__(self, config: LocalizerConfig) -> None:
        import snntorch as snn  # lazy: only the benchmark's way (a) needs snntorch
        from snntorch import surrogate  # lazy: as above

        super().__init__()
        self.config = config
        widths = (config.in_channels, *config.encoder_channels, *config.decoder_channels)
        kernels = (*config.encoder_kernels, *config.decoder_kernels)
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, k, padding=k // 2) for c_in, c_out, k in zip(widths[:-1], widths[1:], kernels)
        )
        spike_grad = surrogate.fast_sigmoid(slope=config.surrogate_slope)
        self.lifs = nn.ModuleList(
            snn.Leaky(beta=config.beta, threshold=config.threshold, spike_grad=spike_grad) for _ in self.convs
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = LocalizationHead(config)

    def forward(self, images: Tensor) -> Prediction:
        x_seq = rate_encode(images, self.config.num_steps, self.config.rate_gain)
        levels = self.config.levels
        mems = [lif.reset_mem() for lif in self.lifs]
        spk_rec = []
        for step in range(x_seq.shape[0]):
            layer_input = x_seq[step]
            spks = []
            for i, (conv, lif) in enumerate(zip(self.convs, self.lifs)):
                spk, mems[i] = lif(conv(layer_input), mems[i])
                spks.append(spk)
                if i < levels - 1:  # encoder above the bottom: pool
                    layer_input = self.pool(spk)
                elif levels <= i < 2 * levels - 1:  # decoder below the top: up, + the encoder's spikes
                    layer_input = self.up(spk) + spks[2 * levels - 2 - i]
                else:  # the bottom encoder feeds the first decoder layer as it is
                    layer_input = spk
            spk_rec.append(spks[-1])
        return self.head(torch.stack(spk_rec).mean(0))


def convs_in_order(model: nn.Module) -> list[nn.Conv2d]:
    """The six convolutions, encoder then decoder, of any of the three ways."""
    if isinstance(model, SnnTorchLocalizer):
        return list(model.convs)
    return [block.conv for block in (*model.encoder, *model.decoder)]


def build(way: str, size: int, num_steps: int, seed: int = 0, options: dict | None = None) -> nn.Module:
    """The model of one way, with the weights of ``SpikingLocalizer`` built from ``seed``."""
    config = localizer_config(size, num_steps)
    torch.manual_seed(seed)
    reference = SpikingLocalizer(config)
    if way == "spikelib":
        model: nn.Module = SpikingLocalizer(config, **(options or {}))
        model.load_state_dict(reference.state_dict())
        return model
    if way == "floor":
        model = AnnLocalizer(config)
        model.load_state_dict(reference.state_dict())  # same names: the twin's layers are the SNN's
        return model
    model = SnnTorchLocalizer(config)
    with torch.no_grad():
        for src, dst in zip(convs_in_order(reference), convs_in_order(model)):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    model.head.load_state_dict(reference.head.state_dict())
    return model


def make_batch(size: int, batch: int, seed: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Images ``[B, 1, H, W]`` in [0, 1], target boxes ``[B, 4]`` (xyxy), labels ``[B]``."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 1, size, size, generator=gen)
    corners = torch.rand(batch, 2, 2, generator=gen).sort(dim=1).values  # x1 <= x2, y1 <= y2
    boxes = corners.transpose(1, 2).flatten(1)[:, [0, 2, 1, 3]]
    labels = torch.randint(0, 6, (batch,), generator=gen)
    return images, boxes, labels


def loss_of(pred: Prediction, boxes: Tensor, labels: Tensor) -> Tensor:
    return F.smooth_l1_loss(pred.boxes, boxes) + F.cross_entropy(pred.logits, labels)


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
    iters: int,
    warmup: int,
    options: dict | None = None,
    allocator: bool | None = None,
    threads: int | None = None,
) -> dict:
    """Train ``warmup`` untimed, then ``iters`` timed Adam steps (the floor: ``num_steps`` times as
    many of each); median wall and CPU time per step (the floor's times ``num_steps``), peak RSS.

    ``allocator``: call :func:`configure_cpu_allocator` first; ``None`` = all ways but ``snntorch``.
    """
    if threads:
        torch.set_num_threads(threads)
    if allocator if allocator is not None else way != "snntorch":
        configure_cpu_allocator()
    model = build(way, size, num_steps, options=options)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images, boxes, labels = make_batch(size, BATCH)
    scale = num_steps if way == "floor" else 1
    times, cpu_times = [], []
    for _ in range((warmup + iters) * scale):
        start, cpu_start = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(model(images), boxes, labels)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    timed = slice(warmup * scale, None)
    return {
        "step_s": statistics.median(times[timed]) * scale,
        "cpu_s": statistics.median(cpu_times[timed]) * scale,
        "timed_wall_s": sum(times[timed]),
        "peak_gb": peak_rss_gb(),
        "loss": float(loss),
    }


def run_check(size: int, num_steps: int, batch: int = 2) -> dict:
    """(a) and (b) with the same weights and input: largest prediction and gradient differences."""
    images, boxes, labels = make_batch(size, batch)
    results = {}
    for way in ("snntorch", "spikelib"):
        model = build(way, size, num_steps)
        torch.manual_seed(2)  # the same rate code for both
        pred = model(images)
        loss_of(pred, boxes, labels).backward()
        params = [p for conv in convs_in_order(model) for p in (conv.weight, conv.bias)]
        params += list(model.head.parameters())
        results[way] = (torch.cat([pred.logits, pred.boxes], 1).detach(), [p.grad for p in params])
        if way == "spikelib":
            torch.manual_seed(2)
            with torch.no_grad():
                rates = [float(spk.mean()) for spk in model.record(images).outputs.values()]
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


# ------------------------------------------------------------------------------- grid


def _spread(values: list[float]) -> str:
    """``median (min-max)``, or the one value."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def run_config(
    size: int, num_steps: int, ways: list[str], repeats: int, iters: int, warmup: int, threads: int | None
) -> dict:
    """Every way ``repeats`` times, interleaved; per way the list of results."""
    results: dict[str, list[dict]] = {way: [] for way in ways}
    for _ in range(repeats):
        for way in ways:
            task = {"kind": "way", "way": way, "size": size, "num_steps": num_steps, "iters": iters, "warmup": warmup}
            task["threads"] = threads
            results[way].append(_subprocess(task))
    return results


def print_config(size: int, num_steps: int, results: dict[str, list[dict]]) -> None:
    """One block of the table: every way, then the ratios within each repeat."""
    for way, runs in results.items():
        timed = statistics.median(r["timed_wall_s"] for r in runs)
        print(
            f"{size:>4} {num_steps:>3}  {way:<9} wall s/step {_spread([r['step_s'] for r in runs]):<24} "
            f"CPU s/step {statistics.median(r['cpu_s'] for r in runs):7.3f}  "
            f"peak {max(r['peak_gb'] for r in runs):5.2f} GB  timed {timed:5.1f} s"
        )
    if set(WAYS) <= set(results):
        a, b, c = (results[way] for way in WAYS)
        ratios = {
            "b/a time": [rb["step_s"] / ra["step_s"] for ra, rb in zip(a, b)],
            "b/c time": [rb["step_s"] / rc["step_s"] for rb, rc in zip(b, c)],
            "b/c CPU": [rb["cpu_s"] / rc["cpu_s"] for rb, rc in zip(b, c)],
            "b/a memory": [max(r["peak_gb"] for r in b) / max(r["peak_gb"] for r in a)],
        }
        print(f"{size:>4} {num_steps:>3}  ratios    " + "   ".join(f"{k} {_spread(v)}" for k, v in ratios.items()))
    print(f"{'':>9}  load average {os.getloadavg()[0]:.2f}", flush=True)


#: What (b) is made of, one piece removed at a time, and a change to (a): label -> task.
ABLATION = {
    "(b) spikelib, as benchmarked": {"way": "spikelib"},
    "(b) without the allocator set-up": {"way": "spikelib", "allocator": False},
    "(b) whole sequence per layer (chunk_size=None)": {"way": "spikelib", "options": {"chunk_size": None}},
    "(b) chunks of 5 steps": {"way": "spikelib", "options": {"chunk_size": 5}},
    "(a) snntorch, as benchmarked": {"way": "snntorch"},
    "(a) snntorch + the allocator set-up": {"way": "snntorch", "allocator": True},
    "(c) floor (ANN step x T)": {"way": "floor"},
}


def ablation(size: int, num_steps: int, iters: int, warmup: int, threads: int | None) -> None:
    """Time and peak memory of (b) with one piece of the engine removed at a time."""
    print(f"ablation at {size} px, T = {num_steps} (ratios against the first line)")
    print(f"{'variant':<48} {'wall s':>7} {'CPU s':>7} {'GB':>6} {'time':>6} {'CPU':>6} {'mem':>6}")
    base = None
    for label, task in ABLATION.items():
        res = _subprocess(
            {"kind": "way", "size": size, "num_steps": num_steps, "iters": iters, "warmup": warmup, **task}
        )
        base = base or res
        print(
            f"{label:<48} {res['step_s']:7.3f} {res['cpu_s']:7.3f} {res['peak_gb']:6.2f} "
            f"{res['step_s'] / base['step_s']:6.2f} {res['cpu_s'] / base['cpu_s']:6.2f} "
            f"{res['peak_gb'] / base['peak_gb']:6.2f}",
            flush=True,
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small configuration (64 px, T=5, 1 repeat)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="image sizes")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20], help="numbers of time steps T")
    parser.add_argument("--iters", type=int, default=2, help="timed training steps per repeat (after --warmup)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps first")
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per way, interleaved")
    parser.add_argument("--threads", type=int, help="torch threads of every way (default: torch's choice)")
    parser.add_argument("--ways", nargs="+", default=list(WAYS), choices=list(WAYS))
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
        args.sizes, args.steps, args.iters, args.warmup, args.repeats = [64], [5], 2, 1, 1
    if args.ablation:
        ablation(args.sizes[0], args.steps[0], args.iters, args.warmup, args.threads)
        return
    print(
        f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads, batch {BATCH}, "
        f"{args.repeats} repeat(s) of {args.warmup} + {args.iters} steps (floor: x T); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    started = time.perf_counter()
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
                if not (check["out_diff"] < 1e-5 and check["grad_rel_diff"] < 1e-5 and min(check["rates"]) > 0.01):
                    raise SystemExit(f"(a) and (b) differ, or a layer is silent: {check}")
            results = run_config(size, num_steps, args.ways, args.repeats, args.iters, args.warmup, args.threads)
            print_config(size, num_steps, results)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}; {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
