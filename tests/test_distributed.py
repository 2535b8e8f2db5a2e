"""Several processes: torchrun + gloo on the CPU, replicas stay identical, the loss goes down.

The multi-process test runs this file as the worker:
``torchrun --standalone --nproc_per_node=2 tests/test_distributed.py --worker ROOT OUT``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikelib.runtime.distributed import (
    DistInfo,
    all_reduce_mean,
    average_gradients,
    gather_objects,
    init_distributed,
    max_replica_difference,
    prepare_model,
    unwrap,
)

REPO = Path(__file__).resolve().parents[1]
RULES = ("bptt", "decolle")


def test_a_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo() and info.is_main and not info.is_distributed
    model = torch.nn.Linear(2, 2)
    assert prepare_model(model, info, torch.device("cpu")) is model and unwrap(model) is model
    assert all_reduce_mean({"loss": 0.5}, 8, info) == {"loss": 0.5}
    assert gather_objects({"a": 1}, info) == [{"a": 1}]
    assert max_replica_difference(model, info) == 0.0


@pytest.mark.slow
def test_two_processes_train_identical_replicas_on_disjoint_shards(synth_root, tmp_path):
    """BPTT through DistributedDataParallel and DECOLLE through gradient averaging, 2 gloo processes.

    Which of the two a rule gets is :func:`spikelib.training.update.gradient_sync`'s choice
    (pinned in tests/test_train.py); here both must keep the replicas identical.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        __file__,
        "--worker",
        str(synth_root),
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    for r in (0, 1):  # gradients 0 and 1, averaged in place on both processes
        assert torch.load(tmp_path / f"averaged-rank{r}.pt").tolist() == [0.5, 0.5]
    shards = [torch.load(tmp_path / f"shard-rank{r}.pt") for r in (0, 1)]
    assert not set(shards[0]) & set(shards[1]) and sorted(shards[0] + shards[1]) == list(range(40))
    for rule in RULES:
        ranks = [torch.load(tmp_path / f"{rule}-rank{r}.pt") for r in (0, 1)]
        # each process started from its own random weights; the first sync made them rank 0's
        assert not torch.equal(ranks[0]["initial"], ranks[1]["initial"])
        for name, value in ranks[0]["params"].items():
            assert torch.equal(value, ranks[1]["params"][name]), f"{rule}: {name} differs between the replicas"
        losses = ranks[0]["losses"]
        assert losses == ranks[1]["losses"]  # metrics are averaged over both processes
        # the head's loss; DECOLLE's local rule lowers it more slowly (measured: 3.12 -> 2.75, 2.76 -> 2.66)
        assert losses[-1] < losses[0] - (0.1 if rule == "bptt" else 0.0), f"{rule}: loss per epoch {losses}"
        assert (tmp_path / rule / "checkpoint.pt").is_file()  # written once, by rank 0


def _worker(root: str, out: str) -> None:
    """One process of the 2-process test: train the tiny SNN with each rule, save what the test checks."""
    from spikelib.data import VOCLocalization
    from spikelib.learning.rules import make_rule
    from spikelib.models.config import preset
    from spikelib.models.localizer import build_localizer
    from spikelib.training.config import TrainConfig
    from spikelib.training.trainer import fit, make_train_loader, set_epoch

    torch.set_num_threads(1)
    out_dir = Path(out)
    info = init_distributed("cpu")
    weight, unused = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    weight.grad = torch.full((2,), float(info.rank))
    average_gradients([weight, unused], info)  # unused has no gradient: reduced as zeros
    torch.save(weight.grad, out_dir / f"averaged-rank{info.rank}.pt")
    train = VOCLocalization(root, "SMALL", "train", policy="largest", image_size=32, cache=True, augment=True)
    loader = make_train_loader(train, batch_size=4, seed=0, info=info)
    set_epoch(loader, 0)
    torch.save([int(i) for _, target in loader for i in target["index"]], out_dir / f"shard-rank{info.rank}.pt")
    options = {"bptt": {}, "decolle": {"readout_pool": 4}}
    for rule_name in RULES:
        torch.manual_seed(100 + info.rank)  # different initial weights on purpose
        model = build_localizer(preset("tiny", num_steps=2))
        initial = torch.cat([p.detach().flatten() for p in model.parameters()]).clone()
        cfg = TrainConfig(
            epochs=4,
            batch_size=4,
            lr=0.01 if rule_name == "bptt" else 0.002,
            warmup=0.0,
            schedule="constant",
            device="cpu",
        )
        history = fit(
            model,
            make_rule(rule_name, **options[rule_name]),
            train,
            None,
            cfg,
            seed=0,
            run_dir=out_dir / rule_name,
            progress=False,
            info=info,
        )
        torch.save(
            {
                "initial": initial,
                "params": {k: v.clone() for k, v in unwrap(model).state_dict().items()},
                "losses": [r["train_loss"] for r in history],
            },
            out_dir / f"{rule_name}-rank{info.rank}.pt",
        )
    torch.distributed.destroy_process_group()


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--worker":
    _worker(sys.argv[2], sys.argv[3])
