"""The engine: spikelib.snn.fused (the fused LIF against the reference), .saved (int8 saving, the
arena), .sequence, .chunked (explicit state), runtime.allocator, and the benchmark's (a) = (b) check."""

from __future__ import annotations

import gc
import importlib.util
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikelib import snn
from spikelib.eval.activity import SpikeCounter
from spikelib.runtime.allocator import configure_cpu_allocator
from spikelib.snn import engine, saved
from spikelib.snn.chunked import run_chunked
from spikelib.snn.fused import FusedLIF, lif_seq_fused
from spikelib.snn.layers import SpikingConvBlock
from spikelib.snn.neurons import LIF, LIFParams, LIFState, lif_seq
from spikelib.snn.saved import SavedArena, apply_seq_packed, empty_cache, is_spike_train, spikes_saved_as_int8
from spikelib.snn.sequence import apply_seq, resolve_fold_time
from spikelib.snn.surrogate import ArcTan, FastSigmoid

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"


pytestmark = pytest.mark.usefixtures("one_thread")


def _currents(dtype, seed=0, shape=(16, 3, 40)):
    gen = torch.Generator().manual_seed(seed)
    cur = (torch.rand(shape, generator=gen, dtype=dtype) * 1.2 - 0.1).requires_grad_()
    mem0 = (torch.rand(shape[1:], generator=gen, dtype=dtype) * 1.5).requires_grad_()
    return cur, mem0


def _spikes_mem_grads(fn, cur, mem0, params, spike_fn):
    """Spikes, final membrane and gradients (input and initial state) of a random loss."""
    spk_seq, state = fn(cur, params, spike_fn, LIFState(mem0))
    gen = torch.Generator().manual_seed(1)
    w_spk = torch.randn(spk_seq.shape, generator=gen, dtype=cur.dtype)
    w_mem = torch.randn(state.mem.shape, generator=gen, dtype=cur.dtype)
    grads = torch.autograd.grad((spk_seq * w_spk).sum() + (state.mem * w_mem).sum(), (cur, mem0))
    return spk_seq, state.mem, grads


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("beta", [0.5, 0.7])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_fused_lif_matches_reference_spikes_membrane_and_gradients(reset, beta, dtype, tol):
    cur, mem0 = _currents(dtype)
    params = LIFParams(beta, 1.0, reset)
    ref = _spikes_mem_grads(lif_seq, cur, mem0, params, FastSigmoid(25.0))
    fused = _spikes_mem_grads(lif_seq_fused, cur, mem0, params, FastSigmoid(25.0))
    assert 0.05 < ref[0].mean() < 0.95  # neither silent nor saturated: the comparison means something
    assert torch.equal(fused[0], ref[0])  # spikes: bit for bit
    assert torch.equal(fused[1], ref[1])  # final membrane: bit for bit
    for got, want in zip(fused[2], ref[2]):
        assert want.abs().max() > 0.1
        torch.testing.assert_close(got, want, rtol=0, atol=tol)


def test_fused_lif_uses_any_surrogate_derivative():
    cur, mem0 = _currents(torch.float64, seed=3)
    params = LIFParams(0.9, 0.8, "subtract")
    ref = _spikes_mem_grads(lif_seq, cur, mem0, params, ArcTan(2.0))
    fused = _spikes_mem_grads(lif_seq_fused, cur, mem0, params, ArcTan(2.0))
    assert torch.equal(fused[0], ref[0])
    for got, want in zip(fused[2], ref[2]):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_fused_lif_in_chunks_equals_one_call(reset):
    cur, _ = _currents(torch.float64, seed=5)
    params = LIFParams(0.5, 1.0, reset)
    whole, _ = lif_seq_fused(cur, params)
    (g_whole,) = torch.autograd.grad((whole * torch.arange(16.0, dtype=torch.float64)[:, None, None]).sum(), cur)
    pieces, state = [], None
    for chunk in cur.split(3):
        spk_seq, state = lif_seq_fused(chunk, params, state=state)
        pieces.append(spk_seq)
    chunked = torch.cat(pieces)
    (g_chunked,) = torch.autograd.grad((chunked * torch.arange(16.0, dtype=torch.float64)[:, None, None]).sum(), cur)
    assert torch.equal(chunked, whole)
    torch.testing.assert_close(g_chunked, g_whole, rtol=0, atol=1e-12)


def test_fused_lif_module_is_a_lif_and_equals_it():
    cur, _ = _currents(torch.float32, seed=2)
    fused, plain = FusedLIF(beta=0.5, reset="zero"), LIF(beta=0.5, reset="zero")
    assert isinstance(fused, LIF)
    assert torch.equal(fused(cur), plain(cur))
    with SpikeCounter(nn.Sequential(fused)) as counter:
        fused(cur)
    assert counter.mean_rate() == pytest.approx(float(plain(cur).detach().mean()))


def test_fused_lif_rejects_learnable_or_per_neuron_parameters_and_empty_input():
    cur, _ = _currents(torch.float32)
    with pytest.raises(ValueError, match="requires_grad=True"):
        lif_seq_fused(cur, LIFParams(beta=torch.tensor(0.5, requires_grad=True)))
    with pytest.raises(ValueError, match=r"shape \(40,\)"):
        lif_seq_fused(cur, LIFParams(beta=torch.full((40,), 0.5)))
    with pytest.raises(ValueError, match="T >= 1"):
        lif_seq_fused(cur[:0], LIFParams())
    with pytest.raises(ValueError, match="beta must lie"):
        lif_seq_fused(cur, LIFParams(beta=1.5))


def test_fused_lif_keeps_only_the_membrane_for_backward():
    cur, _ = _currents(torch.float32)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        lif_seq_fused(cur, LIFParams())
    assert [tuple(t.shape) for t in saved] == [tuple(cur.shape)]  # one trace [T, B, N], nothing per step
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        lif_seq(cur, LIFParams())
    assert len(saved) >= cur.shape[0]  # the reference keeps tensors at every step


# ------------------------------------------------------------------ compact saving


def _spike_seq(shape=(3, 2, 4, 8, 8), seed=0):
    gen = torch.Generator().manual_seed(seed)
    cur = (torch.rand(shape, generator=gen) * 2.5).requires_grad_()
    spk_seq, _ = lif_seq_fused(cur, LIFParams())
    return cur, spk_seq


def test_is_spike_train_is_told_by_the_values():
    _, spk_seq = _spike_seq()
    pooled = F.max_pool2d(spk_seq.flatten(0, 1), 2)
    assert is_spike_train(spk_seq) and is_spike_train(pooled) and is_spike_train(spk_seq + spk_seq)
    assert is_spike_train(torch.tensor([0.0, 1.0, 3.0]))
    assert 0 < float(spk_seq.detach().mean()) < 1 and not is_spike_train(spk_seq * 0.5)
    assert not is_spike_train(torch.tensor([0, 1]))  # not floating point
    assert not is_spike_train(torch.tensor([1.0, float("nan")]))
    assert not is_spike_train(torch.tensor([0.0, 0.25]))  # direct coding: pixel values
    assert not is_spike_train(torch.tensor([200.0]))  # beyond int8


def test_int8_saving_gives_the_same_gradients_and_frees_the_float_spikes():
    conv = nn.Conv2d(4, 5, 3, padding=1)
    cur, spk_seq = _spike_seq()
    plain = apply_seq(conv, spk_seq, fold_time=False)
    grads_plain = torch.autograd.grad(plain.square().sum(), [cur, conv.weight])
    cur, spk_seq = _spike_seq()
    float_spikes = weakref.ref(spk_seq)
    with spikes_saved_as_int8(spk_seq):
        compact = apply_seq(conv, spk_seq, fold_time=False)
    del spk_seq
    gc.collect()
    assert float_spikes() is None  # the graph holds an int8 copy, not the float spikes
    grads_compact = torch.autograd.grad(compact.square().sum(), [cur, conv.weight])
    assert torch.equal(compact, plain)
    for got, want in zip(grads_compact, grads_plain):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_max_pool_indices_are_narrowed_and_routing_is_unchanged(monkeypatch):
    cur, spk_seq = _spike_seq(shape=(2, 2, 4, 32, 32))
    reference = torch.autograd.grad(apply_seq(nn.MaxPool2d(2), spk_seq).sum(), cur, retain_graph=True)[0]
    narrowed = []
    narrow_copy = saved._narrow_copy
    monkeypatch.setattr(
        saved,
        "_narrow_copy",
        lambda x, dtype, arena: narrowed.append((x.dtype, dtype)) or narrow_copy(x, dtype, arena),
    )
    with spikes_saved_as_int8(spk_seq):
        out = apply_seq(nn.MaxPool2d(2), spk_seq)
    # the pool's input as int8, its int64 indices (< 32 * 32) as int16
    assert set(narrowed) == {(torch.float32, torch.int8), (torch.int64, torch.int16)}
    torch.testing.assert_close(torch.autograd.grad(out.sum(), cur)[0], reference, rtol=0, atol=0)


# ---------------------------------------------------------------------- chunks


def _blocks(seed=0):
    """Two spiking conv blocks without BatchNorm (float64, weights x3 so that both spike)."""
    torch.manual_seed(seed)
    blocks = nn.ModuleList([SpikingConvBlock(1, 4, 3, bias=True), SpikingConvBlock(4, 6, 3, bias=True)]).double()
    with torch.no_grad():
        for parameter in blocks.parameters():
            parameter.mul_(3.0)
    return blocks


def _chunk_fn(blocks):
    """The chunk function of the two blocks: the state is one LIFState (or None) per block."""

    def chunk(x_chunk, states, arena):
        spk1, state1 = blocks[0].run(x_chunk, states[0], arena=arena)
        spk2, state2 = blocks[1].run(spk1, states[1], spikes=True, arena=arena)
        return spk2, (state1, state2)

    return chunk


def _input(seed=0, num_steps=5):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(num_steps, 2, 1, 8, 8, generator=gen, dtype=torch.float64) < 0.5).double()


@pytest.mark.parametrize("chunk_size", [1, 2, 5])
@pytest.mark.parametrize("reduce", [None, "mean", "sum", "last"])
def test_run_chunked_equals_whole_sequence_outputs_and_gradients(chunk_size, reduce):
    blocks, x_seq = _blocks(), _input()
    whole = blocks[1](blocks[0](x_seq))
    whole = {None: whole, "mean": whole.mean(0), "sum": whole.sum(0), "last": whole[-1]}[reduce]
    grads_whole = torch.autograd.grad(whole.square().sum(), list(blocks.parameters()))
    chunked = run_chunked(_chunk_fn(blocks), x_seq, (None, None), chunk_size, reduce=reduce)
    grads_chunked = torch.autograd.grad(chunked.square().sum(), list(blocks.parameters()))
    assert float(whole.detach().mean()) > 0.02  # the blocks spike
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)
    for got, want in zip(grads_chunked, grads_whole):
        assert want.abs().max() > 0
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_run_chunked_carries_state_explicitly_and_leaves_nothing_on_the_modules():
    blocks, x_seq = _blocks(), _input()
    before = {name: dict(vars(m)) for name, m in blocks.named_modules()}
    seen = []

    def chunk(x_chunk, states, arena):
        seen.append(states)
        return _chunk_fn(blocks)(x_chunk, states, arena)

    first = run_chunked(chunk, x_seq, (None, None), 2)
    assert seen[0] == (None, None) and all(s.mem.shape == (2, 4, 8, 8) for s in (seen[1][0], seen[2][0]))
    assert len(seen) == 3  # chunks of 2, 2, 1 steps
    assert torch.equal(run_chunked(_chunk_fn(blocks), x_seq, (None, None), 2), first)  # each call from rest
    assert {name: dict(vars(m)) for name, m in blocks.named_modules()}.keys() == before.keys()
    for name, m in blocks.named_modules():
        assert vars(m).keys() == before[name].keys(), name


def test_run_chunked_rejects_bad_arguments():
    blocks, x_seq = _blocks(), _input()
    with pytest.raises(ValueError, match="chunk_size"):
        run_chunked(_chunk_fn(blocks), x_seq, (None, None), 0)
    with pytest.raises(ValueError, match="reduce"):
        run_chunked(_chunk_fn(blocks), x_seq, (None, None), 1, reduce="max")
    with pytest.raises(ValueError, match="T >= 1"):
        run_chunked(_chunk_fn(blocks), x_seq[:0], (None, None), 1)


def test_apply_seq_packed_packs_by_values_or_by_the_callers_word(monkeypatch):
    conv = nn.Conv2d(4, 5, 3, padding=1)
    _, spk_seq = _spike_seq()
    packed = []
    narrow_copy = saved._narrow_copy
    monkeypatch.setattr(
        saved, "_narrow_copy", lambda x, dtype, arena: packed.append(dtype) or narrow_copy(x, dtype, arena)
    )
    apply_seq_packed(conv, spk_seq, False)  # spikes told by their values
    assert packed == [torch.int8] * spk_seq.shape[0]  # one int8 copy per step
    packed.clear()
    apply_seq_packed(conv, spk_seq.detach() * 0.5, False)  # not whole numbers: left as float
    apply_seq_packed(conv, spk_seq, False, spikes=False)  # the caller says no
    with torch.no_grad():
        apply_seq_packed(conv, spk_seq, False, spikes=True)  # nothing is saved without a graph
    assert packed == []


def test_arena_carves_separate_tensors_and_returns_blocks_to_the_pool():
    empty_cache()
    arena = SavedArena(block_bytes=1 << 16)
    a = arena.empty((10, 3), torch.float32, torch.device("cpu"))
    b = arena.empty((7,), torch.int8, torch.device("cpu"))
    a.fill_(1.5)
    b.fill_(-3)
    assert a.is_contiguous() and a.sum() == 45.0 and b.sum() == -21
    version = a._version
    b.add_(1)  # same block, separate tensors: autograd's in-place check does not mix them up
    assert a._version == version and a.sum() == 45.0
    big = arena.empty((1 << 15,), torch.float32, torch.device("cpu"))  # larger than a block
    assert big.numel() == 1 << 15
    del a, b, big, arena
    gc.collect()
    assert empty_cache() >= (1 << 16) + (1 << 17)  # both blocks came back and are released


def test_apply_seq_fold_and_loop_agree_and_fold_time_is_validated():
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    x_seq = torch.rand(4, 2, 2, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(apply_seq(conv, x_seq, True), apply_seq(conv, x_seq, False), rtol=0, atol=1e-12)
    assert resolve_fold_time("auto", x_seq) is False  # CPU: step by step
    assert resolve_fold_time(True, x_seq) is True
    with pytest.raises(ValueError, match="'sometimes'"):
        resolve_fold_time("sometimes", x_seq)


def test_configure_cpu_allocator_is_idempotent_and_reports():
    assert snn.configure_cpu_allocator is engine.configure_cpu_allocator is configure_cpu_allocator
    first = configure_cpu_allocator()
    assert configure_cpu_allocator() == first
    assert set(first) == {"allocator", "changed", "settings"}
    if first["allocator"].startswith("glibc"):
        assert first["changed"] and first["settings"]["M_MMAP_THRESHOLD"] == 1 << 25


def test_importing_the_engine_configures_nothing():
    code = (
        "import torch, ctypes; calls = []; real = ctypes.CDLL; "
        "ctypes.CDLL = lambda *a, **k: calls.append(a) or real(*a, **k); "
        "import spikelib.snn.engine, spikelib.snn.layers, spikelib.models.localizer; assert calls == [], calls"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=BENCH.parents[1])


# ------------------------------------------------------------------- benchmark


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_engine", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_models_snntorch_and_spikelib_agree_at_tiny_size():
    bench = _load_bench()
    result = bench.run_check(size=16, num_steps=4, batch=2)
    assert result["out_diff"] < 1e-5 and result["grad_rel_diff"] < 1e-5
    assert min(result["rates"]) > 0.01  # every layer spikes, so the equality is not vacuous
