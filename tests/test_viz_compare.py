"""Plots of the SNN-vs-ANN study: each draws what the results hold."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from spikelib.viz.compare import (  # noqa: E402
    plot_accuracy_energy,
    plot_accuracy_vs_steps,
    plot_energy,
    plot_latency,
    plot_robustness,
    plot_spike_rates,
)


def _model(kind, steps, coding, miou, energy_j, macs, synops, **extra):
    return {
        "kind": kind,
        "num_steps": steps,
        "coding": coding,
        "test": {"miou": miou, "corloc": miou, "map50": 0.1, "accuracy": 0.5},
        "energy": {"energy_j": energy_j, "macs": macs, "synops": synops, "e_mac": 4.6e-12, "e_ac": 0.9e-12},
        **extra,
    }


@pytest.fixture
def results():
    robust = {
        "clean": 0.5,
        "scores": {"jpeg": [0.4, 0.2], "gaussian_blur": [0.5, 0.45]},
        "severities": [1, 5],
        "mrad": 0.25,
    }
    models = {
        "ann": _model("ann", 1, "analog", 0.5, 4.6e-6, 1e6, 0.0, robustness=robust),
        "snn-T1-direct": _model(
            "snn", 1, "direct", 0.3, 1e-6, 1e5, 6e5, latency={"miou": [0.3]}, spike_rates={"enc1": [0.1], "dec1": [0.2]}
        ),
        "snn-T4-direct": _model(
            "snn",
            4,
            "direct",
            0.4,
            2e-6,
            2e5,
            1.2e6,
            latency={"miou": [0.1, 0.2, 0.3, 0.4]},
            spike_rates={"enc1": [0.1, 0.2, 0.2, 0.2], "dec1": [0.0, 0.1, 0.1, 0.1]},
            robustness={**robust, "mrad": 0.1},
        ),
        "snn-T4-rate": _model("snn", 4, "rate", 0.2, 1.5e-6, 0.0, 1.6e6, latency={"miou": [0.1, 0.1, 0.2, 0.2]}),
    }
    return {"reference": "snn-T4-direct", "models": models}


def test_accuracy_vs_steps_draws_the_t_sweep_other_codes_and_the_ann(results):
    fig = plot_accuracy_vs_steps(results)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines["SNN, direct code"].get_xdata()) == [1, 4]
    assert list(lines["SNN, direct code"].get_ydata()) == pytest.approx([30.0, 40.0])
    assert list(lines["SNN, rate code"].get_ydata()) == pytest.approx([20.0])
    assert list(lines["ANN twin"].get_ydata()) == pytest.approx([50.0, 50.0])
    assert "mean box" not in lines
    plt.close(fig)
    fig = plot_accuracy_vs_steps({**results, "baseline": {"name": "mean box", "test": {"miou": 0.2}}})
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines["mean box"].get_ydata()) == pytest.approx([20.0, 20.0])
    plt.close(fig)
    with pytest.raises(ValueError, match="metric must be one of"):
        plot_accuracy_vs_steps(results, metric="f1")


def test_energy_bars_split_macs_and_accumulates_and_state_the_ratio(results):
    fig = plot_energy(results)
    ax = fig.axes[0]
    widths = [round(p.get_width(), 6) for p in ax.patches]
    # MAC parts (ann, T1, T4, rate) then accumulate parts, in microjoules
    assert widths == pytest.approx([4.6, 0.46, 0.92, 0.0, 0.0, 0.54, 1.08, 1.44])
    texts = [t.get_text().strip() for t in ax.texts]
    assert texts[0] == f"{4.6 / 1.0:.1f}× less"  # T1: 0.46 + 0.54 = 1.0 uJ
    plt.close(fig)


def test_spike_rates_latency_robustness_and_scatter_draw_every_series(results):
    fig = plot_spike_rates(results)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["enc1", "dec1"]
    plt.close(fig)
    with pytest.raises(ValueError, match="has no spike rates"):
        plot_spike_rates(results, "ann")
    fig = plot_latency(results)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["snn-T1-direct", "snn-T4-direct", "snn-T4-rate", "ANN twin"]
    plt.close(fig)
    fig = plot_robustness(results)
    assert len(fig.axes) == 2
    jpeg = {line.get_label(): list(line.get_ydata()) for line in fig.axes[0].get_lines()}
    assert jpeg["ann (mRAD 25 %)"] == pytest.approx([50.0, 40.0, 20.0])
    assert "snn-T4-direct (mRAD 10 %)" in jpeg
    plt.close(fig)
    fig = plot_accuracy_energy(results)
    assert len(fig.axes[0].get_lines()) == 4
    plt.close(fig)
