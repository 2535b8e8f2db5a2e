"""The run report: metrics tables, learning curves and a prediction gallery.

:func:`write_report` writes ``report.md``, ``curves.png``, ``gallery.png`` and
``results.json`` into a run folder from the results of :func:`spikelib.app.job.run_job`;
:func:`format_summary` is the table the job prints. The figure functions return their
figure (nothing is shown), so a notebook can draw them too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch.utils.data import Dataset
from torchvision.ops import box_iou

from spikelib.app.config import RunConfig, Targets
from spikelib.data.datasets import dataset_classes, dataset_ground_truth
from spikelib.eval.evaluate import single_object_map_ceiling
from spikelib.viz.boxes import image_grid

__all__ = [
    "activity_table",
    "metrics_table",
    "per_class_table",
    "confusion_table",
    "size_table",
    "check_targets",
    "format_summary",
    "plot_learning_curves",
    "prediction_gallery",
    "write_report",
]

LABELS = {"snn": "SNN", "ann": "ANN twin"}


def _pct(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def activity_table(activity: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown table of :func:`spike_activity`: one row per layer, rate and silent channels in percent."""
    lines = ["| layer | spike rate (%) | silent channels (%) |", "|---|---|---|"]
    lines += [f"| {name} | {100 * a['rate']:.1f} | {100 * a['silent']:.0f} |" for name, a in activity.items()]
    return "\n".join(lines) + "\n"


def metrics_table(results: Mapping[str, Mapping[str, Any]], num_steps: int | None = None) -> str:
    """Markdown table, one row per model: test mIoU, CorLoc, mAP@0.5, class accuracy, mIoU by size, cost.

    All scores in percent. ``num_steps`` (T) is shown for the SNN.
    """
    head = (
        "| model | T | params | mIoU | CorLoc | mAP@0.5 | class acc. | mIoU small | mIoU medium | mIoU large "
        "| train time |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for kind, res in results.items():
        t = res["test"]
        steps = str(num_steps) if kind == "snn" and num_steps else "-"
        rows.append(
            f"| {LABELS.get(kind, kind)} | {steps} | {res['num_params'] / 1e3:.0f} k | {_pct(t['miou'])} "
            f"| {_pct(t['corloc'])} | {_pct(t['map50'])} | {_pct(t['accuracy'])} | {_pct(t['miou_small'])} "
            f"| {_pct(t['miou_medium'])} | {_pct(t['miou_large'])} | {_duration(res['train_seconds'])} |"
        )
    return head + "\n".join(rows) + "\n"


def per_class_table(
    results: Mapping[str, Mapping[str, Any]], ceiling: tuple[float, Mapping[str, float]] | None = None
) -> str:
    """Markdown table of the VOC all-point AP@0.5 of every class (percent), one column per model.

    ``ceiling``: :func:`spikelib.eval.evaluate.single_object_map_ceiling` of the test set,
    shown as a last column (what one prediction per image can reach at best).
    """
    kinds = list(results)
    classes = list(next(iter(results.values()))["test"]["ap"])
    extra = " | single-object ceiling" if ceiling else ""
    lines = [
        "| class | " + " | ".join(LABELS.get(k, k) for k in kinds) + extra + " |",
        "|---|" + "---|" * (len(kinds) + bool(ceiling)),
    ]
    for name in classes:
        cap = f" | {_pct(ceiling[1].get(name))}" if ceiling else ""
        lines.append(f"| {name} | " + " | ".join(_pct(results[k]["test"]["ap"].get(name)) for k in kinds) + cap + " |")
    cap = f" | **{_pct(ceiling[0])}**" if ceiling else ""
    lines.append("| **mAP** | " + " | ".join(f"**{_pct(results[k]['test']['map50'])}**" for k in kinds) + cap + " |")
    return "\n".join(lines) + "\n"


def confusion_table(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> str:
    """Markdown confusion matrix: one row per true class, one column per predicted class, counts.

    The last column is the row's share answered right (the recall of the class), in percent.
    """
    lines = [
        "| true \\ predicted | " + " | ".join(class_names) + " | right (%) |",
        "|---|" + "---|" * (len(class_names) + 1),
    ]
    for index, (name, row) in enumerate(zip(class_names, confusion)):
        right = row[index] / (sum(row) or 1)
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + f" | {100 * right:.1f} |")
    return "\n".join(lines) + "\n"


def size_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table of mean IoU (percent) by true box size: < 10 %, 10-30 %, >= 30 % of the image."""
    kinds = list(results)
    first = next(iter(results.values()))["test"]
    lines = [
        "| object size (box area / image) | images | " + " | ".join(LABELS.get(k, k) for k in kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for name, span in (("small", "< 10 %"), ("medium", "10-30 %"), ("large", ">= 30 %")):
        lines.append(
            f"| {name} ({span}) | {first[f'count_{name}']} | "
            + " | ".join(_pct(results[k]["test"][f"miou_{name}"]) for k in kinds)
            + " |"
        )
    return "\n".join(lines) + "\n"


def check_targets(
    results: Mapping[str, Mapping[str, Any]], num_steps: int, targets: Targets | None
) -> list[tuple[str, bool, str]]:
    """The run's accuracy targets (its ``[targets]`` table), each ``(what, met, measured)``.

    Only the targets the config sets and the results can decide; none without a table.
    """
    checks: list[tuple[str, bool, str]] = []
    if targets is None or "snn" not in results:
        return checks
    snn = results["snn"]["test"]
    if targets.snn_miou is not None:
        steps = f" at T <= {targets.max_steps}" if targets.max_steps is not None else ""
        checks.append(
            (
                f"SNN mean IoU >= {targets.snn_miou:.2f}{steps}",
                snn["miou"] >= targets.snn_miou and (targets.max_steps is None or num_steps <= targets.max_steps),
                f"{snn['miou']:.3f} at T = {num_steps}",
            )
        )
    if targets.cbmi_small_miou is not None:
        checks.append(
            (
                f"SNN small-object mIoU at least 10 points above the CBMI model's <= {targets.cbmi_small_miou:.2f}",
                snn["miou_small"] >= targets.cbmi_small_miou + 0.10,
                f"{snn['miou_small']:.3f} on {snn['count_small']} images",
            )
        )
    for kind, key, label, name in (
        ("snn", "accuracy", "SNN class accuracy", "snn_accuracy"),
        ("ann", "accuracy", "ANN twin class accuracy", "ann_accuracy"),
        ("snn", "map50", "SNN mAP@0.5", "snn_map"),
        ("ann", "map50", "ANN twin mAP@0.5", "ann_map"),
    ):
        goal = getattr(targets, name)
        if goal is not None and kind in results:
            value = results[kind]["test"][key]
            checks.append((f"{label} >= {goal:.2f}", value >= goal, f"{value:.3f}"))
    if targets.max_gap is not None and "ann" in results:
        gap = results["ann"]["test"]["miou"] - snn["miou"]
        checks.append(
            (
                f"SNN within {100 * targets.max_gap:.0f} points of its ANN twin",
                gap <= targets.max_gap,
                f"ANN - SNN = {100 * gap:+.1f} points",
            )
        )
    return checks


def format_summary(
    cfg: RunConfig,
    results: Mapping[str, Mapping[str, Any]],
    run_dir: str | Path | None = None,
    meta: Mapping[str, Any] | None = None,
) -> str:
    """The text the job prints at the end: the metrics table, the targets, the time, where the report is."""
    lines = [
        f"Run {cfg.name!r}: test split {', '.join(cfg.data.test)} "
        f"({next(iter(results.values()))['test']['num_images']} images), scores in %",
        "",
        metrics_table(results, cfg.snn.num_steps),
    ]
    for what, met, measured in check_targets(results, cfg.snn.num_steps, cfg.targets):
        lines.append(f"  [{'x' if met else ' '}] {what}: {measured}")
    if meta:
        lines += [
            "",
            f"job wall time {_duration(meta['wall_seconds'])}, CPU time {_duration(meta['cpu_seconds'])}, "
            f"{meta['threads']} thread(s); load average {meta['load_start']:.1f} -> {meta['load_end']:.1f}",
        ]
    if run_dir is not None:
        lines += ["", f"report: {Path(run_dir) / 'report.md'}"]
    return "\n".join(lines)


def plot_learning_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Training loss, validation mean IoU and validation mAP@0.5 per epoch, one line per model."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    panels = (("train_loss", "training loss"), ("val_miou", "validation mean IoU"), ("val_map50", "validation mAP@0.5"))
    for ax, (key, title) in zip(axes, panels):
        for kind, history in histories.items():
            epochs = [r["epoch"] for r in history if key in r]
            ax.plot(epochs, [r[key] for r in history if key in r], "o-", markersize=3, label=LABELS.get(kind, kind))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def prediction_gallery(
    dataset: Dataset,
    predictions: Mapping[str, torch.Tensor],
    class_names: Sequence[str],
    count: int = 4,
    title: str | None = None,
) -> Figure:
    """The ``count`` best and ``count`` worst test images by IoU, truth in green, prediction dashed.

    Args:
        dataset: the evaluated dataset (images are read again from it).
        predictions: :func:`spikelib.eval.evaluate.predict`'s output on it.
        class_names: names of the class indices.
        count: images per row (best row, then worst row).
        title: figure title.
    """
    ious = box_iou(predictions["boxes"], predictions["true_boxes"]).diagonal()
    order = torch.argsort(ious, descending=True, stable=True).tolist()
    count = min(count, len(order) // 2 or 1)
    chosen = order[:count] + order[::-1][:count]  # best first, then worst first
    images = [dataset[i][0] for i in chosen]
    boxes = [dataset_ground_truth(dataset, i)["boxes"] for i in chosen]
    fig = image_grid(
        images,
        boxes,
        predictions["true_labels"][chosen],
        class_names,
        ncols=count,
        pred_boxes=predictions["boxes"][chosen],
        pred_labels=predictions["labels"][chosen],
        size=2.2,
    )
    fig.suptitle(title or f"best {count} (top row) and worst {count} (bottom row) test images by IoU", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return fig


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_report(
    run_dir: str | Path,
    cfg: RunConfig,
    results: Mapping[str, Mapping[str, Any]],
    test_set: Dataset,
    classes: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``report.md``, ``curves.png``, ``gallery.png`` and ``results.json`` into ``run_dir``.

    Args:
        run_dir: the run folder.
        cfg: the run's ``RunConfig``.
        results: ``run_job``'s results (history, test metrics, predictions per model).
        test_set: the test dataset (for the gallery's images).
        classes: class names (default: the test set's).
        meta: how the job ran: ``wall_seconds``, ``cpu_seconds``, ``threads``, ``device``,
            ``load_start``, ``load_end`` (shown when given).

    Returns:
        Path: the ``report.md`` written.
    """

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    classes = tuple(classes or dataset_classes(test_set))
    summary = {
        kind: {
            "test": _plain(res["test"]),
            "num_params": res["num_params"],
            "train_seconds": res["train_seconds"],
            "history": _plain(res["history"]),
            **({"activity": res["activity"]} if "activity" in res else {}),
        }
        for kind, res in results.items()
    }
    fig = plot_learning_curves({k: r["history"] for k, r in results.items()})
    fig.savefig(run_dir / "curves.png", dpi=90)
    plt.close(fig)
    shown = "snn" if "snn" in results else next(iter(results))
    fig = prediction_gallery(
        test_set,
        results[shown]["predictions"],
        classes,
        title=f"{LABELS.get(shown, shown)}: best (top) and worst (bottom) test images by IoU",
    )
    fig.savefig(run_dir / "gallery.png", dpi=80)
    plt.close(fig)
    ceiling = single_object_map_ceiling(test_set)
    (run_dir / "results.json").write_text(
        json.dumps(
            {
                **summary,
                "map50_ceiling": {"map50": ceiling[0], "ap": ceiling[1]},
                **({"meta": dict(meta)} if meta else {}),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    confusions = "".join(
        f"### {LABELS.get(kind, kind)}\n\n{confusion_table(res['test']['confusion'], classes)}\n"
        for kind, res in results.items()
        if "confusion" in res["test"]
    )
    steps = cfg.snn.num_steps
    train_cfg = cfg.train
    checks = check_targets(results, steps, cfg.targets)
    lines = "".join(f"- [{'x' if met else ' '}] {what}: **{measured}**\n" for what, met, measured in checks)
    targets = f"## Targets\n\n{lines}\n" if checks else ""
    val_text = (
        ", ".join(f"`{v}`" for v in cfg.data.val)
        if cfg.data.val
        else f"{100 * cfg.data.val_fraction:.0f} % of the training images (held out)"
    )
    meta = meta or {}
    timing = ""
    if meta:
        timing = (
            f"Job wall time {_duration(meta['wall_seconds'])} (data, training, evaluation, report), "
            f"{_duration(meta['cpu_seconds'])} of CPU time in this process, {meta['threads']} torch "
            f"thread(s) on {meta['device']}; load average {meta['load_start']:.1f} at the start, "
            f"{meta['load_end']:.1f} at the end (other processes share the machine when it is above "
            f"the thread count).\n"
        )
    depth_text = f" ({cfg.model.encoder_depth} conv layers per level)" if cfg.model.encoder_depth > 1 else ""
    text = f"""# Run `{cfg.name}`

- Data: train {", ".join(f"`{s}`" for s in cfg.data.train)}, validation {val_text}, test
  {", ".join(f"`{s}`" for s in cfg.data.test)} ({summary[shown]["test"]["num_images"]} images); policy
  `{cfg.data.policy}`, {cfg.data.image_size}x{cfg.data.image_size} {"grayscale" if cfg.data.grayscale else "RGB"}.
- Models: {cfg.model.levels}-level pyramid, encoder channels {list(cfg.model.encoder_channels)}{depth_text}, decoder
  {list(cfg.model.decoder_channels)}; SNN with T = {steps}, `{cfg.snn.coding}` coding, `{cfg.snn.readout}`
  readout, beta = {cfg.snn.beta}, threshold = {cfg.snn.threshold}, `{cfg.snn.surrogate}` surrogate of
  slope {cfg.snn.surrogate_slope:g}, normalisation `{cfg.model.norm}`, rule `{train_cfg.rule}`; the ANN twin
  has ReLU in place of LIF{" (and reads the last map directly)" if cfg.snn.readout == "membrane" else ""}.
- Budget (both): {train_cfg.epochs} epochs, batch {train_cfg.batch_size}, {train_cfg.optimizer} at lr
  {train_cfg.lr:g} ({train_cfg.schedule}); ANN overrides: {cfg.ann or "none"}. Seed {cfg.seed}.

{timing}
## Test metrics (%)

{metrics_table(results, steps)}
mIoU: mean IoU of the predicted box with the selected object's box. CorLoc: share of images
with IoU >= 0.5. mAP@0.5: VOC all-point average precision at IoU 0.5 (one detection per
image: predicted box, argmax class, softmax score; every annotated object is a ground truth),
averaged over classes. Train time: wall clock of training and per-epoch validation.

One prediction per image cannot find the second and third objects of multi-object images:
a perfect single-object predictor (the selected object of every image, exactly, with its
class) scores mAP@0.5 = **{_pct(ceiling[0])} %** on this test set, the ceiling to read the
mAP against.

{targets}{{activity}}## Mean IoU by object size

{size_table(results)}
## Average precision per class (VOC all-point, IoU 0.5, %)

{per_class_table(results, ceiling)}
## Confusion matrices (test images, rows: true class of the selected object)

{confusions}## Learning curves

![learning curves](curves.png)

## Predictions

![prediction gallery](gallery.png)

Green: ground truth (all annotated objects); orange, dashed: the model's box, titled with
its IoU against the best-matching true box.
"""
    text = text.replace(
        "{activity}",
        ""
        if "activity" not in results.get("snn", {})
        else (
            "## Spiking activity of the trained SNN\n\nOn the first 256 test images: spikes per neuron per step, "
            "and the share of channels that never fire (a silent channel passes no information, and with a steep "
            "surrogate it gets almost no gradient to wake up).\n\n" + activity_table(results["snn"]["activity"]) + "\n"
        ),
    )
    path = run_dir / "report.md"
    path.write_text(text, encoding="utf-8")
    return path
