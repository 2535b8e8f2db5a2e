"""Tests for spikelib.widgets.explorers: set a control as a student would, check the simulation and figure."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from spikelib.snn.neurons import LIFParams, lif_seq_with_mem  # noqa: E402
from spikelib.snn.surrogate import Heaviside  # noqa: E402
from spikelib.widgets.explorers import DIRECT_NEURON, EncodingExplorer, LIFExplorer, input_current  # noqa: E402


def _mem_line(explorer):
    (line,) = [line for line in explorer.figure.axes[0].get_lines() if line.get_label() == "mem"]
    return np.asarray(line.get_ydata())


def test_input_current_shapes():
    assert input_current("constant", 0.5, 5).tolist() == [0.5] * 5
    assert input_current("step", 2.0, 10).tolist() == [0.0] * 2 + [2.0] * 8
    assert input_current("pulse", 1.0, 10).tolist() == [0.0] * 2 + [1.0] * 4 + [0.0] * 4
    with pytest.raises(ValueError, match="kind must be one of"):
        input_current("ramp", 1.0, 10)


def test_lif_explorer_simulates_the_package_neuron_and_draws_its_trace():
    explorer = LIFExplorer(beta=0.8, threshold=1.0, current=0.5, num_steps=40)
    spk_seq, mem_seq = lif_seq_with_mem(torch.full((40, 1), 0.5), LIFParams(0.8, 1.0), Heaviside())
    torch.testing.assert_close(explorer.mem_seq, mem_seq[:, 0])
    torch.testing.assert_close(explorer.spk_seq, spk_seq[:, 0])
    np.testing.assert_allclose(_mem_line(explorer), mem_seq[:, 0].numpy(), rtol=1e-6)
    # the bottom row of the raster is the neuron plotted above
    torch.testing.assert_close(explorer.pop_spk_seq[:, -1], explorer.spk_seq)
    raster = explorer.figure.axes[1].collections[0]
    assert len(raster.get_offsets()) == int(explorer.pop_spk_seq.sum())


def test_lif_explorer_fires_more_when_the_current_rises():
    explorer = LIFExplorer(beta=0.5, threshold=1.0, current=0.6, num_steps=100)
    counts = []
    for current in (0.6, 0.9, 1.4):
        explorer.current.value = current
        counts.append(int(explorer.spk_seq.sum()))
    assert counts[0] < counts[1] < counts[2], counts
    assert f"{counts[2]} spikes in 100 steps" in explorer.figure.axes[0].get_title()


def test_lif_explorer_without_memory_never_fires_below_threshold():
    explorer = LIFExplorer(current=0.6)
    explorer.beta.value = 0.0  # U[t] = I[t]: no integration
    explorer.current.value = 0.99
    assert explorer.spk_seq.sum() == 0 and explorer.pop_spk_seq.sum() == 0
    torch.testing.assert_close(explorer.mem_seq, explorer.cur_seq)
    explorer.current.value = 1.01
    # U = I - S[t-1] theta: 1.01, then 0.01, then 1.01 ... fires every other step
    assert explorer.spk_seq.tolist() == [1.0, 0.0] * 30
    explorer.reset.value = "zero"  # U = I after every spike: fires at every step
    assert explorer.spk_seq.sum() == explorer.num_steps.value == 60


def test_lif_explorer_resets_follow_their_equations():
    explorer = LIFExplorer(beta=0.5, threshold=1.0, current=0.8, num_steps=30, reset="subtract")
    beta, threshold, cur = 0.5, 1.0, 0.8
    mem, spk = explorer.mem_seq, explorer.spk_seq
    after = torch.nonzero(spk[:-1]).flatten() + 1  # steps right after a spike
    assert len(after) > 3
    torch.testing.assert_close(mem[after], beta * mem[after - 1] + cur - threshold)
    subtract_count = int(spk.sum())

    explorer.reset.value = "zero"
    mem, spk = explorer.mem_seq, explorer.spk_seq
    after = torch.nonzero(spk[:-1]).flatten() + 1
    torch.testing.assert_close(mem[after], torch.full_like(mem[after], cur))  # U = 0, then + I
    # beta * U = 0.6 < threshold after a spike here, so reset to zero removes less charge and fires more
    assert int(spk.sum()) > subtract_count

    explorer.reset.value = "none"
    assert explorer.mem_seq[-1] == pytest.approx(cur / (1 - beta), rel=1e-4)  # rises to I / (1 - beta)


def test_lif_explorer_step_input_is_silent_before_its_onset():
    explorer = LIFExplorer(current=1.5, input_kind="step", num_steps=50)
    assert explorer.cur_seq[:10].sum() == 0 and explorer.spk_seq[:10].sum() == 0
    assert explorer.spk_seq[10:].sum() > 0
    explorer.num_steps.value = 100
    assert explorer.mem_seq.shape == (100,) and len(_mem_line(explorer)) == 100


def test_lif_explorer_rejects_unknown_settings():
    with pytest.raises(ValueError, match="reset must be one of"):
        LIFExplorer(reset="soft")
    with pytest.raises(ValueError, match="input_kind must be one of"):
        LIFExplorer(input_kind="sine")


@pytest.fixture
def images():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(3, 1, 8, 8, generator=generator)


def test_encoding_explorer_rate_error_falls_with_more_steps(images):
    explorer = EncodingExplorer(images, coding="rate", num_steps=10, seed=3)
    errors = {}
    for num_steps in (10, 40, 160):
        explorer.num_steps.value = num_steps
        assert explorer.spk_seq.shape == (num_steps, 1, 8, 8)
        errors[num_steps] = explorer.error
    assert errors[10] > errors[40] > errors[160], errors
    # Binomial variance: MSE = mean x(1 - x) / T, within sampling noise
    expected = float((images[0] * (1 - images[0])).mean()) / 160
    assert errors[160] == pytest.approx(expected, rel=0.5)
    assert f"MSE {explorer.error:.4f}" in explorer.figure.axes[2].get_title()


def test_encoding_explorer_same_seed_same_spikes(images):
    explorer = EncodingExplorer(images, coding="rate", num_steps=20, seed=1)
    first = explorer.spk_seq.clone()
    explorer.seed.value = 2
    assert not torch.equal(first, explorer.spk_seq)
    explorer.seed.value = 1
    torch.testing.assert_close(explorer.spk_seq, first)


def test_encoding_explorer_latency_fires_at_most_once_per_pixel_brighter_first(images):
    explorer = EncodingExplorer(images, coding="latency", num_steps=30)
    for index in range(3):
        explorer.index.value = index
        counts = explorer.spk_seq.sum(0)
        assert counts.max() <= 1
        first = explorer.spk_seq.argmax(0).flatten().float()
        fired = counts.flatten() > 0
        pixels = explorer.image.flatten()[fired]
        order = torch.argsort(pixels, descending=True)
        assert (first[fired][order].diff() >= 0).all()  # brighter fires no later
        assert explorer.error < 1e-3  # rounding to whole steps only
    assert len(explorer.figure.axes[1].collections[0].get_offsets()) == int(explorer.spk_seq.sum())


def test_encoding_explorer_direct_code_is_a_deterministic_rate(images):
    explorer = EncodingExplorer(images, coding="direct", num_steps=50)
    counts = explorer.spk_seq.sum(0)
    ideal = torch.floor(50 * explorer.image / DIRECT_NEURON.threshold)
    assert ((ideal - counts) >= 0).all() and ((ideal - counts) <= 1).all()
    assert explorer.error <= (1 / 50) ** 2 + 1e-9  # each pixel off by at most 1 / T


def test_encoding_explorer_accepts_hw_images_and_checks_range():
    explorer = EncodingExplorer(torch.rand(2, 5, 5), num_steps=4)
    assert explorer.image.shape == (1, 5, 5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        EncodingExplorer(torch.full((1, 1, 4, 4), 2.0))
    with pytest.raises(ValueError, match="coding must be one of"):
        EncodingExplorer(torch.rand(1, 4, 4), coding="phase")


def test_explorers_render_a_png_into_their_output_when_asked(images):
    lif = LIFExplorer(render=True)
    assert lif.png.startswith(b"\x89PNG")
    first = lif.png
    lif.threshold.value = 0.5
    assert lif.png != first
    encoding = EncodingExplorer(images, render=True)
    assert encoding.png.startswith(b"\x89PNG")
    assert LIFExplorer().png is None  # outside a kernel nothing is rendered by default


def test_explorer_shows_a_readable_text_where_widgets_do_not_render():
    bundle = LIFExplorer(current=0.7)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("LIFExplorer(beta=0.5, threshold=1.0, current=0.7")
    assert "run the notebook" in bundle["text/plain"]
