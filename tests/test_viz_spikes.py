"""Tests for spikelib.viz.spikes: the drawn data equal the traces, spikes and curves given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from spikelib.snn.encoding import latency_decode, latency_encode, rate_encode  # noqa: E402
from spikelib.snn.neurons import LIFParams, firing_rate, lif_seq_with_mem  # noqa: E402
from spikelib.snn.surrogate import ArcTan, FastSigmoid, Heaviside, StraightThrough, Triangle  # noqa: E402
from spikelib.viz import spikes as viz  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _lines(ax, label):
    return [line for line in ax.get_lines() if line.get_label() == label]


def _simulate(cur_values, num_steps=30, params=LIFParams()):
    cur_seq = torch.tensor(cur_values).expand(num_steps, len(cur_values))
    spk_seq, mem_seq = lif_seq_with_mem(cur_seq, params)
    return cur_seq, spk_seq, mem_seq


def test_plot_membrane_draws_the_trace_threshold_and_one_marker_per_spike():
    cur_seq, spk_seq, mem_seq = _simulate([0.7])
    fig = viz.plot_membrane(mem_seq[:, 0], spk_seq[:, 0], threshold=1.0, title="one neuron")
    ax = fig.axes[0]
    (mem_line,) = _lines(ax, "mem")
    np.testing.assert_allclose(mem_line.get_ydata(), mem_seq[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(mem_line.get_xdata(), np.arange(30))
    (threshold_line,) = _lines(ax, "threshold")
    assert list(threshold_line.get_ydata()) == [1.0, 1.0] and threshold_line.get_linestyle() == "--"
    (spike_dots,) = _lines(ax, "spike")
    spike_steps = torch.nonzero(spk_seq[:, 0]).flatten().numpy()
    assert len(spike_steps) > 3  # I = 0.7 > rheobase 0.5: it fires
    np.testing.assert_array_equal(spike_dots.get_xdata(), spike_steps)
    assert (np.asarray(spike_dots.get_ydata()) > 1.0).all()  # pre-reset membrane sits above threshold
    assert ax.get_title() == "one neuron"


def test_plot_membrane_draws_one_line_per_neuron_and_the_current_in_its_own_panel():
    cur_seq, spk_seq, mem_seq = _simulate([0.4, 0.8, 1.5])
    fig = viz.plot_membrane(mem_seq, spk_seq, threshold=1.0, cur_seq=cur_seq, title="three")
    cur_ax, mem_ax = fig.axes
    for n in range(3):
        (line,) = _lines(mem_ax, f"mem {n}")
        np.testing.assert_allclose(line.get_ydata(), mem_seq[:, n].numpy(), rtol=1e-6)
    for n in range(3):
        (dots,) = _lines(mem_ax, f"_spike {n}")
        np.testing.assert_array_equal(dots.get_xdata(), torch.nonzero(spk_seq[:, n]).flatten().numpy())
    (legend_proxy,) = _lines(mem_ax, "spike")
    assert len(legend_proxy.get_xdata()) == 0
    assert [t.get_text() for t in mem_ax.get_legend().get_texts()] == ["mem 0", "mem 1", "mem 2", "spike", "threshold"]
    currents = [line for line in cur_ax.get_lines() if line.get_label() in ("cur", "_cur")]
    assert len(currents) == 3
    np.testing.assert_allclose(currents[2].get_ydata(), cur_seq[:, 2].numpy())
    assert cur_ax.get_title() == "three"


def test_plot_membrane_puts_the_current_on_a_twin_axis_of_a_given_axes():
    cur_seq, spk_seq, mem_seq = _simulate([0.9])
    fig, ax = plt.subplots()
    out = viz.plot_membrane(mem_seq, spk_seq, 1.0, cur_seq, ax=ax)
    assert out is fig and len(fig.axes) == 2
    twin = fig.axes[1]
    assert twin.get_shared_x_axes().joined(ax, twin)
    (cur_line,) = _lines(twin, "cur")
    np.testing.assert_allclose(cur_line.get_ydata(), np.full(30, 0.9), rtol=1e-6)


def test_plot_membrane_rejects_spikes_of_another_shape():
    with pytest.raises(ValueError, match=r"shape of mem_seq"):
        viz.plot_membrane(torch.zeros(10, 2), torch.zeros(10, 3))
    with pytest.raises(ValueError, match=r"cur_seq must be"):
        viz.plot_membrane(torch.zeros(10), cur_seq=torch.zeros(9))


def test_plot_raster_draws_one_point_per_spike_at_its_time_and_neuron():
    spk_seq = torch.zeros(6, 2, 3)  # [T, B, N] -> 6 neurons
    spk_seq[0, 0, 0] = spk_seq[3, 1, 2] = spk_seq[5, 0, 1] = 1
    fig = viz.plot_raster(spk_seq, title="three spikes")
    ax = fig.axes[0]
    offsets = ax.collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(offsets).tolist())) == [(0, 0), (3, 5), (5, 1)]
    assert ax.get_xlim() == (-0.5, 5.5) and ax.get_ylim() == (5.5, -0.5)
    assert ax.get_title() == "three spikes"


def test_plot_raster_counts_match_a_random_train_and_max_neurons_keeps_the_first():
    spk_seq = (torch.rand(50, 40, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    ax = viz.plot_raster(spk_seq).axes[0]
    assert len(ax.collections[0].get_offsets()) == int(spk_seq.sum())
    ax = viz.plot_raster(spk_seq, max_neurons=10).axes[0]
    assert len(ax.collections[0].get_offsets()) == int(spk_seq[:, :10].sum())
    with pytest.raises(ValueError, match="max_neurons"):
        viz.plot_raster(spk_seq, max_neurons=0)


def test_plot_encoding_shows_the_image_raster_and_rate_reconstruction():
    image = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(1))
    spk_seq = rate_encode(image, 40, generator=torch.Generator().manual_seed(2))  # [T, 1, 8, 8]
    fig = viz.plot_encoding(image, spk_seq, title="rate code")
    image_ax, raster_ax, decoded_ax = fig.axes
    np.testing.assert_allclose(image_ax.images[0].get_array(), image[0].numpy(), rtol=1e-6)
    assert len(raster_ax.collections[0].get_offsets()) == int(spk_seq.sum())
    np.testing.assert_allclose(decoded_ax.images[0].get_array(), spk_seq.mean(0)[0].numpy(), rtol=1e-6)
    mse = float(((spk_seq.mean(0) - image) ** 2).mean())
    assert f"MSE {mse:.4f}" in decoded_ax.get_title()
    assert fig._suptitle.get_text() == "rate code"


def test_plot_encoding_uses_a_given_decoder_and_axes():
    image = torch.linspace(0, 1, 16).reshape(4, 4)
    spk_seq = latency_encode(image, 10, linear=True, normalize=True)
    decoded = latency_decode(spk_seq, linear=True, normalize=True)
    fig, axes = plt.subplots(1, 3)
    out = viz.plot_encoding(image, spk_seq, decoded=decoded, axes=axes)
    assert out is fig
    np.testing.assert_allclose(axes[2].images[0].get_array(), decoded.numpy(), rtol=1e-6)
    assert axes[2].get_title().startswith("decoded")
    with pytest.raises(ValueError, match="one spike train per pixel"):
        viz.plot_encoding(image, spk_seq[:, :2])


def test_plot_frames_shows_the_spikes_of_the_chosen_steps():
    spk_seq = (torch.rand(10, 1, 5, 6, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    fig = viz.plot_frames(spk_seq, num_frames=4, title="rate")
    assert len(fig.axes) == 4
    for ax, t in zip(fig.axes, (0, 3, 6, 9)):  # evenly spaced over T = 10
        np.testing.assert_array_equal(ax.images[0].get_array(), spk_seq[t, 0].numpy())
        assert ax.get_title() == f"t = {t}\n{int(spk_seq[t].sum())} spikes"
    fig = viz.plot_frames(spk_seq[:, 0], steps=[2])
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), spk_seq[2, 0].numpy())
    with pytest.raises(ValueError, match="steps must lie"):
        viz.plot_frames(spk_seq, steps=[10])


def test_plot_surrogate_gallery_draws_step_smooth_step_and_derivative_per_surrogate():
    surrogates = [Heaviside(), FastSigmoid(slope=25.0), ArcTan(), Triangle(), StraightThrough()]
    x = torch.linspace(-1, 1, 101)
    fig = viz.plot_surrogate_gallery(surrogates, x=x)
    assert len(fig.axes) == 10
    axes = np.asarray(fig.axes).reshape(2, 5)
    for k, fn in enumerate(surrogates):
        top, bottom = axes[0, k], axes[1, k]
        assert top.get_title() == repr(fn)
        (step,) = _lines(top, "H(x)")
        np.testing.assert_array_equal(step.get_ydata(), (x > 0).double().numpy())
        (smooth,) = _lines(top, "smooth step")
        expected = fn.smooth_step(x).double().numpy()
        span = expected.max() - expected.min()
        if span > 0:  # rescaled to [0, 1] over the window
            np.testing.assert_allclose(smooth.get_ydata(), (expected - expected.min()) / span, atol=1e-6)
            assert np.all(np.diff(smooth.get_ydata()) >= -1e-9)  # a step goes up
        (slope,) = _lines(bottom, "derivative")
        np.testing.assert_allclose(slope.get_ydata(), fn.derivative(x).double().numpy(), rtol=1e-6)
    fast_sigmoid_peak = max(_lines(axes[1, 1], "derivative")[0].get_ydata())
    assert fast_sigmoid_peak == pytest.approx(1.0, abs=1e-4)


def test_plot_surrogate_gallery_takes_names_from_a_mapping_and_checks_its_input():
    fig = viz.plot_surrogate_gallery({"paper": FastSigmoid(25.0)})
    assert fig.axes[0].get_title() == "paper"
    with pytest.raises(TypeError, match="SurrogateSpike"):
        viz.plot_surrogate_gallery([torch.sigmoid])
    with pytest.raises(ValueError, match="at least one"):
        viz.plot_surrogate_gallery([])
    _, axes = plt.subplots(1, 3)
    with pytest.raises(ValueError, match="2 x 2 grid"):
        viz.plot_surrogate_gallery([Heaviside(), ArcTan()], axes=axes)


def test_plot_fi_curve_draws_rates_and_marks_the_rheobase():
    params = LIFParams(beta=0.5)
    currents = torch.linspace(0, 2, 41)
    rates = firing_rate(currents, 100, params)
    fig = viz.plot_fi_curve(currents, rates, rheobase=0.5, label="beta 0.5")
    ax = fig.axes[0]
    (curve,) = _lines(ax, "beta 0.5")
    np.testing.assert_allclose(curve.get_ydata(), rates.numpy(), rtol=1e-6)
    (mark,) = _lines(ax, "rheobase 0.5")
    assert list(mark.get_xdata()) == [0.5, 0.5] and mark.get_color() == curve.get_color()
    viz.plot_fi_curve(currents, firing_rate(currents, 100, LIFParams(beta=0.9)), ax=ax, label="beta 0.9")
    assert len(_lines(ax, "beta 0.9")) == 1
    with pytest.raises(ValueError, match="same length"):
        viz.plot_fi_curve(currents, rates[:-1])
