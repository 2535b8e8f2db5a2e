"""Tests for spikelib.viz.boxes: what was drawn (patches, pixel coordinates, titles, areas)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from spikelib.eval import metrics  # noqa: E402
from spikelib.viz import boxes as viz  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def _xyxy(rect):
    x, y = rect.get_xy()
    return [x, y, x + rect.get_width(), y + rect.get_height()]


def test_show_image_with_boxes_scales_normalized_boxes_to_pixels():
    # Image 40 high, 80 wide: x * 80, y * 40. [0.25, 0.5, 0.75, 1.0] -> [20, 20, 60, 40].
    image = torch.rand(3, 40, 80, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 1.0, 1.0]])
    fig = viz.show_image_with_boxes(image, boxes, labels=["cat", "frame"], title="two boxes")
    ax = fig.axes[0]
    rects = _rectangles(ax)
    assert len(rects) == 2
    assert _xyxy(rects[0]) == pytest.approx([20, 20, 60, 40])
    assert _xyxy(rects[1]) == pytest.approx([0, 0, 80, 40])  # the whole image, edge to edge
    assert ax.images[0].get_extent() == [0, 80, 40, 0]
    assert [t.get_text().strip() for t in ax.texts] == ["cat", "frame"]
    assert ax.get_title() == "two boxes"


def test_show_image_with_boxes_draws_on_the_given_axes_and_accepts_grayscale():
    fig, (left, right) = plt.subplots(1, 2)
    out = viz.show_image_with_boxes(torch.rand(1, 10, 20), torch.tensor([0.0, 0.0, 0.5, 0.5]), ax=right)
    assert out is fig and len(_rectangles(right)) == 1 and not left.patches
    assert right.images[0].get_array().shape == (10, 20) and right.images[0].get_cmap().name == "gray"
    viz.show_image_with_boxes(torch.rand(10, 20), torch.zeros(0, 4), ax=left)
    assert left.images[0].get_array().shape == (10, 20) and not _rectangles(left)


def test_show_image_with_boxes_rescales_out_of_range_floats_for_display_only():
    image = torch.linspace(-2, 2, 3 * 4 * 4).reshape(3, 4, 4)  # e.g. mean/std-normalized
    fig = viz.show_image_with_boxes(image, torch.zeros(0, 4))
    shown = fig.axes[0].images[0].get_array()
    assert shown.min() == pytest.approx(0.0) and shown.max() == pytest.approx(1.0)
    assert image.min() == -2  # the input is untouched


def test_show_image_with_boxes_rejects_bad_inputs_with_the_received_value():
    with pytest.raises(ValueError, match=r"image must be .* got shape \(4, 8, 8\)"):
        viz.show_image_with_boxes(torch.rand(4, 8, 8), torch.zeros(0, 4))
    with pytest.raises(ValueError, match="one caption per box \\(1\\), got 2"):
        viz.show_image_with_boxes(torch.rand(8, 8), torch.tensor([[0, 0, 1, 1.0]]), labels=["a", "b"])
    with pytest.raises(ValueError, match="not xyxy"):
        viz.show_image_with_boxes(torch.rand(8, 8), torch.tensor([[0.5, 0, 0.2, 1.0]]))


def test_image_grid_draws_truth_and_prediction_with_iou_in_the_title():
    # Five 20x20 images on 3 columns: 2 rows, the last panel empty.
    # Prediction = left half of the true box [0, 0, 1, 1] -> IoU 0.5 for every image.
    images = torch.rand(5, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    true = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(5, 1)
    pred = torch.tensor([[0.0, 0.0, 0.5, 1.0]]).repeat(5, 1)
    labels = torch.tensor([0, 1, 2, 0, 1])
    names = ["cat", "dog", "bird"]
    fig = viz.image_grid(images, true, labels, names, ncols=3, pred_boxes=pred, pred_labels=[0, 1, 2, 1, 1])
    axes = fig.axes
    assert len(axes) == 6 and not axes[5].axison and not axes[5].patches
    for ax in axes[:5]:
        rects = _rectangles(ax)
        assert len(rects) == 2
        assert _xyxy(rects[0]) == pytest.approx([0, 0, 20, 20])
        assert _xyxy(rects[1]) == pytest.approx([0, 0, 10, 20]) and rects[1].get_linestyle() == "--"
        assert "IoU 0.50" in ax.get_title()
    assert axes[1].get_title().startswith("dog") and "pred" not in axes[1].get_title()
    assert axes[3].get_title().startswith("cat (pred: dog)")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ground truth", "prediction"]


def test_image_grid_without_predictions_and_with_several_true_boxes():
    images = [torch.rand(3, 10, 30), torch.rand(1, 30, 10)]
    true = [torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]), torch.tensor([0.1, 0.1, 0.9, 0.9])]
    fig = viz.image_grid(images, true, [1, 0], ["cat", "dog"], ncols=2)
    assert [len(_rectangles(ax)) for ax in fig.axes] == [2, 1]
    assert _xyxy(_rectangles(fig.axes[0])[1]) == pytest.approx([15, 5, 30, 10])
    assert fig.axes[0].get_title() == "dog" and "IoU" not in fig.axes[1].get_title()
    # With a prediction on the second true box of image 0, the title takes the best IoU (1.00).
    fig = viz.image_grid(images, true, [1, 0], ["cat", "dog"], pred_boxes=[true[0][1], true[1]])
    assert "IoU 1.00" in fig.axes[0].get_title()


def test_image_grid_checks_lengths_and_label_names():
    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"labels must have one entry per image \(2\), got 3"):
        viz.image_grid(images, torch.zeros(2, 4), [0, 0, 0], ["cat"])
    with pytest.raises(ValueError, match="label 3 has no name"):
        viz.image_grid(images, torch.zeros(2, 4), [0, 3], ["cat"])


def test_plot_iou_example_shades_the_intersection_and_outlines_the_union():
    # A = [0,0,2,2], B = [1,1,3,3]: intersection [1,1,2,2] (area 1), union 7, IoU 1/7 = 0.143.
    # The union outline has length 8 + 8 - 4 = 12 (each box loses 2 units of edge inside the other).
    fig = viz.plot_iou_example(torch.tensor([0.0, 0.0, 2.0, 2.0]), [1.0, 1.0, 3.0, 3.0])
    ax = fig.axes[0]
    rects = _rectangles(ax)
    assert len(rects) == 3
    filled = [r for r in rects if r.get_fill()]
    assert len(filled) == 1 and _xyxy(filled[0]) == pytest.approx([1, 1, 2, 2])
    assert sorted(_xyxy(r) for r in rects if not r.get_fill()) == [[0, 0, 2, 2], [1, 1, 3, 3]]
    assert "1 / 7" in ax.get_title() and "0.143" in ax.get_title()
    (outline,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    length = sum(np.linalg.norm(seg[1] - seg[0]) for seg in outline.get_segments())
    assert length == pytest.approx(12.0)
    assert ax.yaxis_inverted()


def test_plot_iou_example_of_disjoint_boxes_has_no_intersection_patch():
    fig = viz.plot_iou_example([0, 0, 1, 1], [2, 0, 3, 1])
    ax = fig.axes[0]
    assert len(_rectangles(ax)) == 2 and "= 0.000" in ax.get_title()
    (outline,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert sum(np.linalg.norm(s[1] - s[0]) for s in outline.get_segments()) == pytest.approx(8.0)


# The five-detection example of tests/test_metrics.py: AP 17/30 (all points), 31/55 (11 points).
FIVE_PRECISION = torch.tensor([1, 1 / 2, 2 / 3, 2 / 4, 3 / 5], dtype=torch.float64)
FIVE_RECALL = torch.tensor([1 / 4, 1 / 4, 2 / 4, 2 / 4, 3 / 4], dtype=torch.float64)


def _polygon_area(vertices: np.ndarray) -> float:
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def test_plot_precision_recall_shades_an_area_equal_to_the_all_point_ap():
    fig = viz.plot_precision_recall(FIVE_RECALL, FIVE_PRECISION, method="all_points")
    ax = fig.axes[0]
    assert "AP (all_points) = 0.567" in ax.get_title()
    (area,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    shaded = sum(_polygon_area(path.vertices) for path in area.get_paths())
    assert shaded == pytest.approx(17 / 30)
    raw = [line for line in ax.lines if line.get_label() == "precision at each rank"][0]
    np.testing.assert_allclose(raw.get_ydata(), FIVE_PRECISION.numpy())
    # The envelope is a step that holds each value on (r_{k-1}, r_k]: 1 up to 1/4, 2/3 up to 1/2, 3/5 up to 3/4.
    (envelope,) = [line for line in ax.lines if line.get_label() == "interpolated (envelope)"]
    assert envelope.get_drawstyle() == "steps-pre"
    np.testing.assert_allclose(envelope.get_xdata(), [0, 1 / 4, 1 / 4, 2 / 4, 2 / 4, 3 / 4])
    np.testing.assert_allclose(envelope.get_ydata(), [1, 1, 1, 2 / 3, 2 / 3, 3 / 5])


def test_plot_precision_recall_marks_the_eleven_levels():
    ap = metrics.average_precision(FIVE_RECALL, FIVE_PRECISION, "11_points")
    fig = viz.plot_precision_recall(FIVE_RECALL, FIVE_PRECISION, ap=ap, method="11_points")
    ax = fig.axes[0]
    assert "AP (11_points) = 0.564" in ax.get_title()
    (levels,) = [line for line in ax.lines if line.get_label() == "11 recall levels"]
    np.testing.assert_allclose(levels.get_xdata(), np.arange(11) / 10)
    np.testing.assert_allclose(levels.get_ydata(), [1, 1, 1, 2 / 3, 2 / 3, 2 / 3, 0.6, 0.6, 0, 0, 0])
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_plot_precision_recall_of_an_empty_curve_and_bad_method():
    fig = viz.plot_precision_recall(torch.zeros(0), torch.zeros(0))
    assert "= 0.000" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="method must be one of"):
        viz.plot_precision_recall(FIVE_RECALL, FIVE_PRECISION, ap=0.5, method="coco")
