"""The side-by-side table of the SNN-versus-ANN study, and its files in ``runs/``.

:func:`comparison_table` turns the results of :func:`spikelib.app.study.run_study` into one
row per model (plain numbers, a ``pandas.DataFrame``); :func:`table_markdown` and
:func:`study_markdown` format it; :func:`write_study` writes ``comparison.md``,
``comparison.json`` and ``comparison.csv``; :func:`load_study` reads a study back (the
notebook shows the full study's table when ``python -m spikelib compare`` has run).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "STUDY_FILE", "comparison_table", "table_markdown", "study_markdown", "write_study", "load_study"]

STUDY_FILE = "comparison.json"

#: Columns of :func:`comparison_table` and their headers in the markdown table.
COLUMNS: dict[str, str] = {
    "model": "model",
    "T": "T",
    "coding": "coding",
    "miou": "mIoU %",
    "corloc": "CorLoc %",
    "map50": "mAP@0.5 %",
    "macs_m": "MACs/img (M)",
    "synops_m": "SynOps/img (M)",
    "energy_uj": "energy/img (µJ)",
    "ann_over_model": "ANN ÷ model energy",
    "mean_rate": "spikes/neuron/step",
    "steps_to_90": "steps to 90 % mIoU",
    "miou_corrupted": "mIoU corrupted %",
    "mrad": "mRAD %",
}
_PERCENT = ("miou", "corloc", "map50", "miou_corrupted", "mrad")


def comparison_table(results: dict[str, Any]):
    """The side-by-side table, one row per model, as a ``pandas.DataFrame`` of plain numbers.

    Scores are fractions (0.62, not 62 %), operations are per image (``macs_m``,
    ``synops_m`` in millions), ``energy_uj`` is microjoules per image, ``ann_over_model``
    is the ANN's energy divided by the row's (how many times less the row spends),
    ``mean_rate`` spikes per neuron per step, ``steps_to_90`` the first step at 90 % of the
    final mIoU, ``miou_corrupted`` the mean mIoU over all corruptions and severities and
    ``mrad`` the mean relative accuracy drop. Values a row does not have are NaN.

    Args:
        results: what :func:`run_study` returns (or :func:`load_study` reads).
    """
    import pandas as pd  # lazy: pandas takes a second to import and only this display helper needs it

    models = results["models"]
    ann_energy = models["ann"]["energy"]["energy_j"] if "ann" in models else math.nan
    rows = []
    for name, res in models.items():
        energy, robust = res["energy"], res.get("robustness", {})
        rows.append(
            {
                "model": name,
                "T": res["num_steps"] if res["kind"] == "snn" else math.nan,
                "coding": res["coding"],
                "miou": res["test"]["miou"],
                "corloc": res["test"]["corloc"],
                "map50": res["test"]["map50"],
                "macs_m": energy["macs"] / 1e6,
                "synops_m": energy["synops"] / 1e6,
                "energy_uj": energy["energy_j"] * 1e6,
                "ann_over_model": ann_energy / energy["energy_j"],
                "mean_rate": res.get("mean_rate", math.nan),
                "steps_to_90": res.get("steps_to_90", math.nan),
                "miou_corrupted": robust.get("mean_corrupted", math.nan),
                "mrad": robust.get("mrad", math.nan),
            }
        )
    if "baseline" in results:  # the floor: no operation counted, nothing to corrupt
        scores = results["baseline"]["test"]
        rows.append(
            {
                **{c: math.nan for c in COLUMNS},
                "model": results["baseline"]["name"],
                "coding": "–",
                "miou": scores["miou"],
                "corloc": scores["corloc"],
                "map50": scores["map50"],
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _cell(column: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if column in _PERCENT:
        return f"{100 * value:.1f}".replace("-0.0", "0.0")
    if column in ("T", "steps_to_90"):
        return str(int(value))
    if column == "mean_rate":
        return f"{value:.3f}"
    if column == "ann_over_model":
        return f"{value:.2f}×"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def table_markdown(table) -> str:
    """A :func:`comparison_table` as a markdown table (scores in percent, em-dash for n/a)."""
    lines = ["| " + " | ".join(COLUMNS[c] for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_cell(c, row[c]) for c in table.columns) + " |")
    return "\n".join(lines) + "\n"


def _robustness_markdown(results: dict[str, Any]) -> str:
    measured = {n: r["robustness"] for n, r in results["models"].items() if "robustness" in r}
    if not measured:
        return ""
    severities = next(iter(measured.values()))["severities"]
    lines = [
        "| model | corruption | clean | " + " | ".join(f"s{s}" for s in severities) + " | mean RAD |",
        "|---|---|---|" + "---|" * (len(severities) + 1),
    ]
    for name, rob in measured.items():
        for corruption, scores in rob["scores"].items():
            rad = sum(rob["rad"][corruption]) / len(scores)
            lines.append(
                f"| {name} | {corruption} | {100 * rob['clean']:.1f} | "
                + " | ".join(f"{100 * v:.1f}" for v in scores)
                + f" | {100 * rad:.1f} |"
            )
    return "\n".join(lines) + "\n"


def study_markdown(results: dict[str, Any]) -> str:
    """The whole report: the table, how each figure was obtained, robustness per corruption."""
    run, study = results["run_config"], results["study"]
    sources = ", ".join(f"{n}: {r['train']['source']}" for n, r in results["models"].items())
    return "\n".join(
        [
            f"# SNN vs ANN: {run['name']}",
            "",
            table_markdown(comparison_table(results)),
            f"Measured on {results['num_test_images']} test images ({', '.join(run['data']['test'])}); operations, "
            f"energy and spikes counted on the first {results['num_energy_images']}. Every model trained "
            f"{run['train']['epochs']} epochs on "
            f"{'all' if not study['train_images'] else 'the first ' + str(study['train_images'])} training images "
            f"({', '.join(run['data']['train'])}), image size {run['model']['image_size']}, reference SNN "
            f"`{results['reference']}`.",
            "",
            "Energy per image: ANN = MACs x 4.6 pJ; SNN = synaptic operations (spikes actually emitted x fan-out) "
            "x 0.9 pJ + MACs of layers fed analog values (first layer under direct coding, the head) x 4.6 pJ "
            "(32-bit float, 45 nm, Horowitz 2014). Memory access and neuron updates are ignored. mRAD: mean "
            "relative drop of mIoU over the corruptions and severities below (Barchid et al. 2023).",
            "",
            _robustness_markdown(results),
            f"Models: {sources}.",
            "",
        ]
    )


def write_study(results: dict[str, Any], folder: str | Path) -> dict[str, Path]:
    """Write ``comparison.md``, ``comparison.json`` (everything) and ``comparison.csv`` (the table).

    Returns:
        dict: ``{"md", "json", "csv"}`` -> the paths written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"md": folder / "comparison.md", "json": folder / STUDY_FILE, "csv": folder / "comparison.csv"}
    paths["md"].write_text(study_markdown(results), encoding="utf-8")
    tmp = paths["json"].with_name(f".{STUDY_FILE}.tmp")
    tmp.write_text(json.dumps(results, indent=1, default=float) + "\n", encoding="utf-8")
    tmp.replace(paths["json"])
    comparison_table(results).to_csv(paths["csv"], index=False, quoting=csv.QUOTE_MINIMAL)
    return paths


def load_study(path: str | Path) -> dict[str, Any]:
    """Read a study written by :func:`write_study` (the ``comparison.json`` or its folder).

    Raises:
        FileNotFoundError: no study there (the message says which command writes one).
    """
    path = Path(path)
    path = path / STUDY_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no study at {path}; `python -m spikelib compare --config <name>` writes one")
    return json.loads(path.read_text(encoding="utf-8"))
