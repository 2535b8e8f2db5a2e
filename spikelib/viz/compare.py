"""Plots of the SNN-versus-ANN study (:func:`spikelib.app.study.run_study`'s results).

Each function takes the results dict (or what :func:`spikelib.app.compare_table.load_study`
reads), draws on the ``ax`` (or ``axes``) it is given or creates a figure, and returns
the figure; none calls ``plt.show()``. Lines carry the model name as their label, so a
test can find what was drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spikelib.viz.common import figure_and_axes, figure_of

__all__ = [
    "plot_accuracy_vs_steps",
    "plot_energy",
    "plot_accuracy_energy",
    "plot_spike_rates",
    "plot_latency",
    "plot_robustness",
]

ANN_COLOR = "0.3"
MAC_COLOR, AC_COLOR = "tab:orange", "tab:blue"
_METRIC_LABELS = {"miou": "mIoU", "corloc": "CorLoc", "map50": "mAP@0.5", "accuracy": "class accuracy"}


def _snn(results: Mapping[str, Any]) -> dict[str, Any]:
    return {n: m for n, m in results["models"].items() if m["kind"] == "snn"}


def _t_sweep(results: Mapping[str, Any]) -> tuple[str, list[tuple[int, str]]]:
    """The reference code and the (T, name) of the SNNs that use it, by T."""
    coding = results["models"][results["reference"]]["coding"]
    sweep = sorted((m["num_steps"], n) for n, m in _snn(results).items() if m["coding"] == coding)
    return coding, sweep


def plot_accuracy_vs_steps(results: Mapping[str, Any], metric: str = "miou", ax: Axes | None = None) -> Figure:
    """Test score of the SNN against T (log axis), other input codes as points, the ANN (and baseline) as lines.

    Args:
        results: the study's results.
        metric: "miou", "corloc", "map50" or "accuracy".
        ax: where to draw (default: a new figure).
    """
    if metric not in _METRIC_LABELS:
        raise ValueError(f"metric must be one of {list(_METRIC_LABELS)}, got {metric!r}")
    fig, ax = figure_and_axes(ax, (5.0, 3.2))
    coding, sweep = _t_sweep(results)
    steps = [t for t, _ in sweep]
    ax.plot(
        steps,
        [100 * results["models"][n]["test"][metric] for _, n in sweep],
        "o-",
        color="tab:blue",
        label=f"SNN, {coding} code",
    )
    markers = iter("s^dv")
    for model in _snn(results).values():
        if model["coding"] != coding:
            ax.plot(
                [model["num_steps"]],
                [100 * model["test"][metric]],
                next(markers, "x"),
                markersize=8,
                linestyle="none",
                label=f"SNN, {model['coding']} code",
            )
    if "ann" in results["models"]:
        ax.axhline(100 * results["models"]["ann"]["test"][metric], color=ANN_COLOR, linestyle="--", label="ANN twin")
    if metric in results.get("baseline", {}).get("test", {}):
        ax.axhline(
            100 * results["baseline"]["test"][metric], color="0.6", linestyle=":", label=results["baseline"]["name"]
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(t) for t in steps])
    ax.set_xlabel("time steps T")
    ax.set_ylabel(f"test {_METRIC_LABELS[metric]} (%)")
    ax.legend(fontsize="small")
    return fig


def plot_energy(results: Mapping[str, Any], ax: Axes | None = None) -> Figure:
    """Energy per image of every model as horizontal bars, split into MACs and accumulates.

    Each bar's label gives how many times less than the ANN the model spends.
    """
    models = results["models"]
    fig, ax = figure_and_axes(ax, (5.5, 0.45 * len(models) + 1.0))
    names = list(models)
    mac = np.array([models[n]["energy"]["macs"] * models[n]["energy"].get("e_mac", 4.6e-12) * 1e6 for n in names])
    ac = np.array([models[n]["energy"]["synops"] * models[n]["energy"].get("e_ac", 0.9e-12) * 1e6 for n in names])
    rows = np.arange(len(names))[::-1]
    ax.barh(rows, mac, color=MAC_COLOR, label="MACs × 4.6 pJ")
    ax.barh(rows, ac, left=mac, color=AC_COLOR, label="SynOps × 0.9 pJ")
    ann = models["ann"]["energy"]["energy_j"] * 1e6 if "ann" in models else None
    for row, name, total in zip(rows, names, mac + ac):
        if ann is not None and name != "ann":
            ax.text(total, row, f" {ann / total:.1f}× less", va="center", fontsize="small")
    ax.set_yticks(rows, names)
    ax.set_xlabel("energy per image (µJ)")
    ax.set_xlim(0, (mac + ac).max() * 1.3)
    ax.legend(fontsize="small", loc="lower right")
    return fig


def plot_accuracy_energy(results: Mapping[str, Any], metric: str = "miou", ax: Axes | None = None) -> Figure:
    """Each model as a point: energy per image (x, log) against its test score (y)."""
    fig, ax = figure_and_axes(ax, (5.0, 3.2))
    for name, model in results["models"].items():
        x, y = model["energy"]["energy_j"] * 1e6, 100 * model["test"][metric]
        ax.plot([x], [y], "o", color=ANN_COLOR if model["kind"] == "ann" else "tab:blue", label=name)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
    ax.set_xscale("log")
    ax.set_xlabel("energy per image (µJ, log scale)")
    ax.set_ylabel(f"test {_METRIC_LABELS.get(metric, metric)} (%)")
    return fig


def plot_spike_rates(results: Mapping[str, Any], model: str | None = None, ax: Axes | None = None) -> Figure:
    """Firing rate of every layer of one SNN at every step (default: the reference SNN)."""
    model = model or results["reference"]
    rates = results["models"][model].get("spike_rates")
    if rates is None:
        raise ValueError(f"{model!r} has no spike rates (an ANN?); SNNs: {list(_snn(results))}")
    fig, ax = figure_and_axes(ax, (5.0, 3.2))
    for layer, per_step in rates.items():
        ax.plot(np.arange(1, len(per_step) + 1), per_step, "o-", label=layer)
    ax.set_xlabel("time step t")
    ax.set_ylabel("spikes per neuron")
    ax.set_title(model, fontsize="medium")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small", ncol=2)
    return fig


def plot_latency(results: Mapping[str, Any], models: Sequence[str] | None = None, ax: Axes | None = None) -> Figure:
    """mIoU of the SNN's readout after each step (prediction if stopped there), ANN as a line."""
    fig, ax = figure_and_axes(ax, (5.0, 3.2))
    chosen = models or list(_snn(results))
    for name in chosen:
        curve = results["models"][name]["latency"]["miou"]
        ax.plot(np.arange(1, len(curve) + 1), [100 * v for v in curve], "o-", markersize=3, label=name)
    if "ann" in results["models"]:
        ax.axhline(100 * results["models"]["ann"]["test"]["miou"], color=ANN_COLOR, linestyle="--", label="ANN twin")
    ax.set_xscale("log", base=2)
    longest = max(len(results["models"][n]["latency"]["miou"]) for n in chosen)
    ticks = [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= longest]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("step t at which the readout is taken")
    ax.set_ylabel("test mIoU (%)")
    ax.legend(fontsize="x-small")
    return fig


def plot_robustness(results: Mapping[str, Any], axes: Sequence[Axes] | None = None) -> Figure:
    """mIoU against severity (0 = clean), one panel per corruption, one line per model measured."""
    measured = {n: m["robustness"] for n, m in results["models"].items() if "robustness" in m}
    if not measured:
        raise ValueError("no model of this study has robustness results (robustness='none'?)")
    corruptions = list(next(iter(measured.values()))["scores"])
    if axes is None:
        grid = plt.subplots(
            1, len(corruptions), figsize=(2.6 * len(corruptions), 2.8), sharey=True, layout="constrained", squeeze=False
        )[1]
        axes = list(grid[0])
    fig = figure_of(axes[0])
    for ax, corruption in zip(axes, corruptions):
        for name, rob in measured.items():
            severities = [0, *rob["severities"]]
            ann = results["models"][name]["kind"] == "ann"
            ax.plot(
                severities,
                [100 * rob["clean"], *(100 * v for v in rob["scores"][corruption])],
                marker="o",
                markersize=3,
                linestyle="--" if ann else "-",
                color=ANN_COLOR if ann else None,
                label=f"{name} (mRAD {100 * rob['mrad']:.0f} %)",
            )
        ax.set_title(corruption.replace("_", " "), fontsize="medium")
        ax.set_xlabel("severity")
    axes[0].set_ylabel("test mIoU (%)")
    axes[-1].legend(fontsize="x-small")
    return fig
