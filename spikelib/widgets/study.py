"""Pick a time-step count T and an input code; see that spiking model in the SNN-versus-ANN study.

:class:`StudySelector` reads the results of :func:`spikelib.app.study.run_study` (or what
:func:`spikelib.app.compare_table.load_study` reads back) and redraws the comparison table
with the chosen model's row highlighted, the accuracy-against-T plot with the chosen model
marked, its spike rates per layer and step, and its latency curve.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import ipywidgets as widgets

from spikelib.viz.compare import plot_accuracy_vs_steps, plot_latency, plot_spike_rates
from spikelib.widgets.base import CONTROL_STYLE, Explorer

__all__ = ["study_grid", "study_table_html", "StudyState", "StudySelector"]

#: Columns of :func:`study_table_html`: header and how to read each model's value.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("T", "T"),
    ("coding", "coding"),
    ("mIoU %", "miou"),
    ("CorLoc %", "corloc"),
    ("µJ / image", "energy"),
    ("ANN ÷ model energy", "ratio"),
    ("spikes / neuron / step", "mean_rate"),
    ("steps to 90 % mIoU", "steps_to_90"),
)


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def study_table_html(results: Mapping[str, Any], highlight: str | None = None) -> str:
    """The study's models as an HTML table (scores, energy, spikes, latency), one row highlighted.

    Args:
        results: the study's results (``models``: name -> results of that model).
        highlight (str, optional): the model whose row is bold on yellow.

    Returns:
        str: a ``<table>``; a row's ``class`` is ``selected`` when highlighted.
    """
    models = results["models"]
    if highlight is not None and highlight not in models:
        raise ValueError(f"highlight must be one of {list(models)}, got {highlight!r}")
    ann_energy = models["ann"]["energy"]["energy_j"] if "ann" in models else None
    head = "".join(f"<th style='padding:0 6px'>{html.escape(title)}</th>" for title, _ in _COLUMNS)
    rows = []
    for name, m in models.items():
        energy = m["energy"]["energy_j"]
        cells = {
            "model": html.escape(name),
            "T": str(m["num_steps"]) if m["kind"] == "snn" else "–",
            "coding": html.escape(str(m["coding"])),
            "miou": _fmt(100 * m["test"]["miou"], ".1f"),
            "corloc": _fmt(100 * m["test"]["corloc"], ".1f"),
            "energy": _fmt(energy * 1e6, ".3g"),
            "ratio": _fmt(None if ann_energy is None else ann_energy / energy, ".2f"),
            "mean_rate": _fmt(m.get("mean_rate"), ".3f"),
            "steps_to_90": _fmt(m.get("steps_to_90"), "d"),
        }
        style = " class='selected' style='background:#fff3b0;font-weight:bold'" if name == highlight else ""
        row = "".join(f"<td style='padding:0 6px;text-align:right'>{cells[key]}</td>" for _, key in _COLUMNS)
        rows.append(f"<tr{style}>{row}</tr>")
    return f"<table style='font-size:12px;border-collapse:collapse'><tr>{head}</tr>{''.join(rows)}</table>"


def study_grid(results: Mapping[str, Any]) -> dict[str, dict[int, str]]:
    """The spiking models of a study by input code and T: ``{coding: {T: model name}}`` (T ascending)."""
    models = results.get("models")
    if not isinstance(models, Mapping) or not models:
        raise ValueError("results must hold a non-empty 'models' mapping (what run_study returns)")
    grid: dict[str, dict[int, str]] = {}
    for name, m in models.items():
        if m["kind"] == "snn":
            grid.setdefault(m["coding"], {})[int(m["num_steps"])] = name
    if not grid:
        raise ValueError(f"results hold no spiking model, only {list(models)}")
    return {coding: dict(sorted(by_t.items())) for coding, by_t in grid.items()}


class StudyState(NamedTuple):
    """What :class:`StudySelector` shows now.

    Attributes:
        coding (str): the input code chosen.
        num_steps (int): the T chosen.
        model (str): the name of the model with that code and T.
        test (dict): its test scores (``miou``, ``corloc``, ...).
        energy_ratio (float): the ANN's energy per image divided by the model's (NaN without an ANN).
    """

    coding: str
    num_steps: int
    model: str
    test: dict[str, float]
    energy_ratio: float


class StudySelector(Explorer):
    """Choose T and the input code over the study's table and plots.

    Controls: ``coding`` (the codes the study trained), ``num_steps`` (the T trained with
    that code; its options follow ``coding``).

    Above the figure, ``table`` (an HTML widget, :func:`study_table_html`) holds the
    comparison table with the chosen model's row highlighted; the figure shows the
    accuracy against T with the chosen model circled, its spike rates per layer and step,
    and its latency curve.

    Results of the last update: ``state`` (:class:`StudyState`), ``table.value``, ``figure``.

    Args:
        results: the study's results (``models``, ``reference``, optionally ``baseline``).
        coding, num_steps: initial control values (default: the reference SNN's).
        dpi (int): resolution of the rendered figure. Default 72.
        render (bool, optional): render to PNG into ``output``; by default only in a kernel.
    """

    controls = ("coding", "num_steps")

    def __init__(
        self,
        results: Mapping[str, Any],
        coding: str | None = None,
        num_steps: int | None = None,
        dpi: int = 72,
        render: bool | None = None,
    ) -> None:
        self.grid = study_grid(results)
        if results.get("reference") not in results["models"]:
            raise ValueError(
                f"results must name its reference model among {list(results['models'])}, got "
                f"{results.get('reference')!r}"
            )
        self.results = results
        reference = results["models"][results["reference"]]
        coding = coding or reference.get("coding") or next(iter(self.grid))
        if coding not in self.grid:
            raise ValueError(f"coding must be one of {list(self.grid)}, got {coding!r}")
        num_steps = num_steps or reference.get("num_steps") or next(iter(self.grid[coding]))
        if num_steps not in self.grid[coding]:
            raise ValueError(
                f"num_steps must be one of {list(self.grid[coding])} for {coding!r} coding, got {num_steps!r}"
            )
        self._busy = False
        self.coding = widgets.Dropdown(options=list(self.grid), value=coding, description="input code", **CONTROL_STYLE)
        self.num_steps = widgets.Dropdown(
            options=list(self.grid[coding]), value=num_steps, description="T", **CONTROL_STYLE
        )
        self.table = widgets.HTML()
        box = widgets.VBox([widgets.HBox([self.coding, self.num_steps]), self.table])
        self._setup((11.0, 3.2), dpi, box, render, layout=None)

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._busy:
            return
        if change["owner"] is self.coding:
            self._busy = True
            try:
                steps = list(self.grid[self.coding.value])
                keep = self.num_steps.value if self.num_steps.value in steps else steps[-1]
                self.num_steps.options = steps
                self.num_steps.value = keep
            finally:
                self._busy = False
        self.update()

    def _simulate(self) -> None:
        coding, num_steps = self.coding.value, int(self.num_steps.value)
        name = self.grid[coding][num_steps]
        models = self.results["models"]
        ratio = (
            models["ann"]["energy"]["energy_j"] / models[name]["energy"]["energy_j"]
            if "ann" in models
            else float("nan")
        )
        self.state = StudyState(coding, num_steps, name, dict(models[name]["test"]), ratio)
        self.table.value = study_table_html(self.results, highlight=name)

    def _draw(self) -> None:
        state, models = self.state, self.results["models"]
        ax_acc, ax_rates, ax_latency = self.figure.subplots(
            1, 3, gridspec_kw={"left": 0.06, "right": 0.98, "bottom": 0.15, "top": 0.9, "wspace": 0.3}
        )
        plot_accuracy_vs_steps(self.results, "miou", ax=ax_acc)
        ax_acc.plot([state.num_steps], [100 * state.test["miou"]], "o", ms=12, mfc="none", mec="tab:red", mew=2)
        ax_acc.set_title(f"{state.model}: mIoU {100 * state.test['miou']:.1f} %", fontsize=9)
        if models[state.model].get("spike_rates"):
            plot_spike_rates(self.results, state.model, ax=ax_rates)
        else:
            ax_rates.text(0.5, 0.5, "no spike rates recorded", ha="center")
        if "latency" in models[state.model]:
            plot_latency(self.results, [state.model], ax=ax_latency)
        else:
            ax_latency.text(0.5, 0.5, "no latency curve recorded", ha="center")
