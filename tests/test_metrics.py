"""Tests for spikelib.eval.metrics: hand-worked IoU and AP cases, VOC matching rules, cross-checks."""

import math

import pytest
import torch
from torchvision.ops import box_iou

from spikelib.eval import metrics

# --------------------------------------------------------------------------- IoU, CorLoc


def test_iou_of_two_offset_squares_is_one_seventh():
    # A = [0,0,2,2], B = [1,1,3,3]: both of area 4, intersection [1,1,2,2] of area 1,
    # union 4 + 4 - 1 = 7, so IoU = 1/7.
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    assert metrics.box_iou_pairwise(a, b).item() == pytest.approx(1 / 7)


def test_iou_pairwise_equals_diagonal_of_torchvision_box_iou():
    gen = torch.Generator().manual_seed(0)
    xy1 = torch.rand(64, 2, generator=gen)
    boxes1 = torch.cat([xy1, xy1 + torch.rand(64, 2, generator=gen)], dim=1)
    xy2 = torch.rand(64, 2, generator=gen)
    boxes2 = torch.cat([xy2, xy2 + torch.rand(64, 2, generator=gen)], dim=1)
    expected = box_iou(boxes1, boxes2).diagonal()
    assert (expected == 0).any() and (expected > 0.3).any(), (
        "the random boxes should cover disjoint and overlapping pairs"
    )
    torch.testing.assert_close(metrics.box_iou_pairwise(boxes1, boxes2), expected)


def test_iou_is_one_for_identical_boxes_and_zero_for_disjoint_or_touching_ones():
    boxes1 = torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 0.2, 0.2], [0.0, 0.0, 0.2, 0.2]])
    boxes2 = torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.5, 0.5, 0.9, 0.9], [0.2, 0.0, 0.4, 0.2]])
    torch.testing.assert_close(metrics.box_iou_pairwise(boxes1, boxes2), torch.tensor([1.0, 0.0, 0.0]))


def test_mean_iou_and_corloc_by_hand():
    # IoUs: 1 (same box), 1/7 (offset squares), 0.5 (half of the true box), 0 (disjoint).
    # mean = (1 + 1/7 + 0.5 + 0) / 4 = 0.410714...; CorLoc at 0.5 counts 1 and 0.5 -> 2/4.
    pred = torch.tensor([[0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 0.5, 1], [5, 5, 6, 6]], dtype=torch.float32)
    true = torch.tensor([[0, 0, 1, 1], [1, 1, 3, 3], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.float32)
    assert metrics.mean_iou(pred, true) == pytest.approx((1 + 1 / 7 + 0.5) / 4)
    assert metrics.corloc(pred, true) == pytest.approx(0.5)
    assert metrics.corloc(pred, true, iou_threshold=0.1) == pytest.approx(0.75)
    assert metrics.corloc(pred, true, iou_threshold=0.51) == pytest.approx(0.25)


def test_box_checks_name_what_was_received():
    good = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match=r"shape \[N, 4\].*\(4,\)"):
        metrics.box_iou_pairwise(torch.tensor([0.0, 0.0, 1.0, 1.0]), good)
    with pytest.raises(ValueError, match=r"boxes2\[0\].*not xyxy"):
        metrics.box_iou_pairwise(good, torch.tensor([[0.5, 0.0, 0.2, 1.0]]))
    with pytest.raises(ValueError, match="same number of boxes, got 1 and 2"):
        metrics.mean_iou(good, good.repeat(2, 1))
    with pytest.raises(ValueError, match="NaN"):
        metrics.mean_iou(torch.tensor([[0.0, float("nan"), 1.0, 1.0]]), good)
    with pytest.raises(ValueError, match="N = 0"):
        metrics.mean_iou(torch.zeros(0, 4), torch.zeros(0, 4))
    with pytest.raises(ValueError, match=r"iou_threshold must lie in \[0, 1\], got 50"):
        metrics.corloc(good, good, iou_threshold=50)


def test_iou_by_size_buckets_by_true_box_area():
    # True areas: 0.01 (small), 0.25 (medium), 0.1 (medium: the edge belongs to the upper bucket), 1.0 (large).
    true = torch.tensor([[0, 0, 0.1, 0.1], [0, 0, 0.5, 0.5], [0, 0, 0.1, 1.0], [0, 0, 1, 1]])
    # IoUs: 1, 0.5 (half of the box), 0, 0.25 (a quarter of the image).
    pred = torch.tensor([[0, 0, 0.1, 0.1], [0, 0, 0.25, 0.5], [0.5, 0.5, 0.6, 0.6], [0, 0, 0.5, 0.5]])
    buckets = metrics.iou_by_size(pred, true)
    assert list(buckets) == ["small", "medium", "large"]
    assert buckets["small"] == metrics.SizeBucket(pytest.approx(1.0), 1, 0.0, 0.1)
    assert buckets["medium"].mean_iou == pytest.approx(0.25) and buckets["medium"].count == 2
    assert buckets["large"].mean_iou == pytest.approx(0.25) and buckets["large"].count == 1
    two = metrics.iou_by_size(pred, true, area_edges=(0.5,), names=("under_half", "over_half"))
    assert math.isclose(two["under_half"].mean_iou, 0.5) and two["over_half"].count == 1
    with pytest.raises(ValueError, match="normalized"):
        metrics.iou_by_size(pred * 100, true * 100)
    with pytest.raises(ValueError, match="need 3 names"):
        metrics.iou_by_size(pred, true, names=("small", "large"))


def test_iou_by_size_reports_nan_for_an_empty_bucket():
    true = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    buckets = metrics.iou_by_size(true, true)
    assert buckets["small"].count == 0 and math.isnan(buckets["small"].mean_iou)


# --------------------------------------------------------------------------- AP from a curve

# Five ranked detections: TP, FP, TP, FP, TP, with 4 positives (one object never found).
#   k   TP_k  precision  recall
#   1   1     1/1        1/4
#   2   1     1/2        1/4
#   3   2     2/3        2/4
#   4   2     2/4        2/4
#   5   3     3/5        3/4
# Envelope (best precision at this recall or beyond): 1, 1, 2/3, 2/3, 3/5.
# All points: 1/4 * 1 + 1/4 * 2/3 + 1/4 * 3/5 = (15 + 10 + 9) / 60 = 17/30 = 0.5667.
# 11 points: t = 0, .1, .2 -> 1; t = .3, .4, .5 -> 2/3; t = .6, .7 -> 3/5; t = .8, .9, 1 -> 0;
#            (3 + 2 + 1.2) / 11 = 6.2 / 11 = 31/55 = 0.5636.
FIVE_FLAGS = torch.tensor([True, False, True, False, True])
FIVE_PRECISION = torch.tensor([1, 1 / 2, 2 / 3, 2 / 4, 3 / 5], dtype=torch.float64)
FIVE_RECALL = torch.tensor([1 / 4, 1 / 4, 2 / 4, 2 / 4, 3 / 4], dtype=torch.float64)


def test_precision_recall_of_five_ranked_detections_by_hand():
    precision, recall = metrics.precision_recall(FIVE_FLAGS, num_positives=4)
    torch.testing.assert_close(precision, FIVE_PRECISION)
    torch.testing.assert_close(recall, FIVE_RECALL)


def test_average_precision_of_five_detections_in_both_conventions():
    assert metrics.average_precision(FIVE_RECALL, FIVE_PRECISION, "all_points") == pytest.approx(17 / 30)
    assert metrics.average_precision(FIVE_RECALL, FIVE_PRECISION, "11_points") == pytest.approx(31 / 55)
    expected_levels = torch.tensor([1, 1, 1, 2 / 3, 2 / 3, 2 / 3, 3 / 5, 3 / 5, 0, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(metrics.eleven_point_precisions(FIVE_RECALL, FIVE_PRECISION), expected_levels)


def test_envelope_is_the_best_precision_at_equal_or_higher_recall():
    envelope = metrics.interpolated_precision(FIVE_RECALL, FIVE_PRECISION)
    torch.testing.assert_close(envelope, torch.tensor([1, 1, 2 / 3, 2 / 3, 3 / 5], dtype=torch.float64))


def test_eleven_point_level_is_reached_by_a_recall_of_exactly_three_tenths():
    # 0.1 * 3 = 0.30000000000000004 > 3 / 10 in floating point; the level t = 0.3 must still count.
    recall = torch.tensor([3 / 10], dtype=torch.float64)
    levels = metrics.eleven_point_precisions(recall, torch.tensor([1.0], dtype=torch.float64))
    assert levels.tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]


def test_average_precision_of_an_empty_curve_is_zero_and_perfect_ranking_is_one():
    empty = torch.zeros(0)
    assert metrics.average_precision(empty, empty, "all_points") == 0.0
    assert metrics.average_precision(empty, empty, "11_points") == 0.0
    precision, recall = metrics.precision_recall(torch.tensor([True, True]), num_positives=2)
    assert metrics.average_precision(recall, precision, "all_points") == pytest.approx(1.0)
    assert metrics.average_precision(recall, precision, "11_points") == pytest.approx(1.0)


def _all_point_ap_by_loop(recall: list[float], precision: list[float]) -> float:
    """Independent reference: for each rise of recall, the best precision at that recall or beyond."""
    total, previous = 0.0, 0.0
    for r in recall:
        if r > previous:
            total += (r - previous) * max(p for rr, p in zip(recall, precision) if rr >= r)
            previous = r
    return total


def _eleven_point_ap_by_loop(recall: list[float], precision: list[float]) -> float:
    return sum(max([p for r, p in zip(recall, precision) if r >= t / 10], default=0.0) for t in range(11)) / 11


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_loop_references_on_random_rankings(seed):
    gen = torch.Generator().manual_seed(seed)
    flags = torch.rand(40, generator=gen) < 0.4
    num_positives = int(flags.sum()) + 3  # some objects are never detected
    precision, recall = metrics.precision_recall(flags, num_positives)
    r, p = recall.tolist(), precision.tolist()
    assert metrics.average_precision(recall, precision, "all_points") == pytest.approx(_all_point_ap_by_loop(r, p))
    assert metrics.average_precision(recall, precision, "11_points") == pytest.approx(_eleven_point_ap_by_loop(r, p))


def test_voc_all_point_ap_is_at_least_sklearn_uninterpolated_ap_and_differs_from_it():
    # sklearn's average_precision_score is sum (R_k - R_{k-1}) P_k with the raw precision, no
    # envelope. When every positive is ranked (recall reaches 1), the VOC sum uses the envelope,
    # which is >= the raw precision at each step, so VOC AP >= sklearn AP; here it is strictly larger.
    from sklearn.metrics import average_precision_score

    flags = torch.tensor([True, False, True, False, True])  # the five-detection example, all positives found
    scores = torch.linspace(1.0, 0.5, 5)
    precision, recall = metrics.precision_recall(flags, num_positives=3)
    sk = average_precision_score(flags.numpy(), scores.numpy())
    # sklearn by hand: 1/3 * (1 + 2/3 + 3/5) = 0.7556; VOC: envelope 1, 2/3, 3/5 at the same steps -> the same
    # here, so also check a ranking where a later precision beats an earlier one.
    assert sk == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert metrics.average_precision(recall, precision) == pytest.approx(sk)
    flags = torch.tensor([True, False, False, True, True])  # precisions at hits: 1, 2/4, 3/5; envelope 1, 3/5, 3/5
    precision, recall = metrics.precision_recall(flags, num_positives=3)
    sk = average_precision_score(flags.numpy(), scores.numpy())
    assert sk == pytest.approx((1 + 2 / 4 + 3 / 5) / 3)
    assert metrics.average_precision(recall, precision) == pytest.approx((1 + 3 / 5 + 3 / 5) / 3)
    assert metrics.average_precision(recall, precision) > sk


def test_average_precision_rejects_bad_curves_and_methods():
    with pytest.raises(ValueError, match="method must be one of .*got 'voc'"):
        metrics.average_precision(FIVE_RECALL, FIVE_PRECISION, "voc")
    with pytest.raises(ValueError, match="non-decreasing"):
        metrics.average_precision(FIVE_RECALL.flip(0), FIVE_PRECISION)
    with pytest.raises(ValueError, match="same length, got 5 and 4"):
        metrics.average_precision(FIVE_RECALL, FIVE_PRECISION[:4])
    with pytest.raises(ValueError, match=r"precision must lie in \[0, 1\]"):
        metrics.average_precision(FIVE_RECALL, FIVE_PRECISION * 2)


# --------------------------------------------------------------------------- VOC matching


def _gt(boxes, labels, difficult=None):
    entry = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels)}
    if difficult is not None:
        entry["difficult"] = torch.tensor(difficult, dtype=torch.bool)
    return entry


def _det(boxes, scores, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels),
    }


A, B = [0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]
C, D, E = [0.2, 0.2, 0.6, 0.6], [0.1, 0.1, 0.4, 0.4], [0.6, 0.6, 0.9, 0.9]
FAR = [0.8, 0.0, 1.0, 0.1]


def _toy_dataset():
    """Class 0 rebuilds the five-detection example with boxes; class 1 is never detected; class 2 has no GT.

    Images: 0 holds A and a difficult B, 1 holds C, 2 holds D, 3 holds E (class 0) and a class-1 object.
    Ranked class-0 detections: 0.95 on A (TP), 0.90 on A again (FP, duplicate), 0.85 on B (difficult:
    ignored), 0.80 on C (TP), 0.70 far from D (FP), 0.60 on D (TP); E is never found -> 4 positives.
    A class-2 detection in image 1 has no ground truth of its class.
    """
    ground_truths = [
        _gt([A, B], [0, 0], [False, True]),
        _gt([C], [0]),
        _gt([D], [0]),
        _gt([E, A], [0, 1]),
    ]
    detections = [
        _det([A, A, B], [0.95, 0.90, 0.85], [0, 0, 0]),
        _det([C, C], [0.80, 0.75], [0, 2]),
        _det([FAR, D], [0.70, 0.60], [0, 0]),
        _det([], [], []),
    ]
    return detections, ground_truths


def test_match_detections_handles_duplicates_difficult_and_misses():
    detections, ground_truths = _toy_dataset()
    scores, flags, num_positives = metrics.match_detections(detections, ground_truths, label=0)
    torch.testing.assert_close(scores, torch.tensor([0.95, 0.90, 0.80, 0.70, 0.60], dtype=torch.float64))
    assert flags.tolist() == FIVE_FLAGS.tolist()
    assert num_positives == 4


def test_voc_ap_per_class_on_the_toy_dataset():
    detections, ground_truths = _toy_dataset()
    per_class = metrics.voc_ap_per_class(detections, ground_truths, num_classes=3)
    assert per_class[0].ap == pytest.approx(17 / 30)
    torch.testing.assert_close(per_class[0].precision, FIVE_PRECISION)
    torch.testing.assert_close(per_class[0].recall, FIVE_RECALL)
    assert per_class[1].ap == 0.0 and per_class[1].num_positives == 1 and per_class[1].recall.numel() == 0
    assert math.isnan(per_class[2].ap) and per_class[2].num_positives == 0
    eleven = metrics.voc_ap_per_class(detections, ground_truths, num_classes=3, method="11_points")
    assert eleven[0].ap == pytest.approx(31 / 55)


def test_map_averages_classes_with_ground_truth_only():
    # Class 0: 17/30, class 1: 0, class 2 has no ground truth and is left out: mAP = 17/60.
    detections, ground_truths = _toy_dataset()
    map_value, per_class = metrics.mean_average_precision(detections, ground_truths, num_classes=3)
    assert map_value == pytest.approx(17 / 60)
    assert set(per_class) == {0, 1}
    map_11, _ = metrics.mean_average_precision(detections, ground_truths, num_classes=3, method="11_points")
    assert map_11 == pytest.approx(31 / 110)


def test_a_class_with_only_difficult_ground_truth_is_left_out_of_map():
    ground_truths = [_gt([A], [0]), _gt([B], [1], [True])]
    detections = [_det([A], [0.9], [0]), _det([B], [0.9], [1])]
    map_value, per_class = metrics.mean_average_precision(detections, ground_truths, num_classes=2)
    assert map_value == pytest.approx(1.0) and set(per_class) == {0}


def test_iou_of_exactly_one_half_is_a_true_positive_like_the_matlab_devkit():
    # Detection [0,0,0.5,1] against GT [0,0,1,1]: intersection 0.5, union 1, IoU exactly 0.5.
    # VOCevaldet.m tests ovmax >= 0.5 (true positive); the Python port voc_eval.py tests > 0.5.
    ground_truths = [_gt([[0.0, 0.0, 1.0, 1.0]], [0])]
    on_edge = [_det([[0.0, 0.0, 0.5, 1.0]], [0.9], [0])]
    just_under = [_det([[0.0, 0.0, 0.49, 1.0]], [0.9], [0])]
    assert metrics.match_detections(on_edge, ground_truths, 0).is_true_positive.tolist() == [True]
    assert metrics.match_detections(just_under, ground_truths, 0).is_true_positive.tolist() == [False]


def test_a_detection_takes_its_best_gt_even_when_that_one_is_already_taken():
    # VOC rule: the detection is compared with its best-overlapping GT only. Image: GT1 = [0,0,1,1] and
    # GT2 = [0,0,0.6,1] (IoU 0.6 with GT1). The first detection sits on GT1 (TP). The second, [0,0,0.9,1],
    # has IoU 0.9 with GT1 and 0.667 with GT2: its best GT is taken, so it is a false positive.
    ground_truths = [_gt([[0, 0, 1, 1], [0, 0, 0.6, 1]], [0, 0])]
    detections = [_det([[0, 0, 1, 1], [0, 0, 0.9, 1]], [0.9, 0.8], [0, 0])]
    assert metrics.match_detections(detections, ground_truths, 0).is_true_positive.tolist() == [True, False]


def test_ranking_follows_scores_not_input_order_and_ties_keep_input_order():
    # The lower-scored exact hit is listed first; the higher-scored one still takes the GT.
    ground_truths = [_gt([A], [0])]
    detections = [_det([A, A], [0.2, 0.8], [0, 0])]
    scores, flags, _ = metrics.match_detections(detections, ground_truths, 0)
    assert scores.tolist() == pytest.approx([0.8, 0.2]) and flags.tolist() == [True, False]
    # Equal scores: a miss listed first stays first, then the hit.
    detections = [_det([FAR, A], [0.5, 0.5], [0, 0])]
    assert metrics.match_detections(detections, ground_truths, 0).is_true_positive.tolist() == [False, True]


def _devkit_ap(detections, ground_truths, label, iou_threshold=0.5):
    """A line-by-line transcription of VOCevaldet.m and VOCap.m (VOC2010+), in plain Python lists.

    Unlike spikelib, it keeps detections on difficult objects in the ranking with tp = fp = 0, and
    its precision may be 0/0 = nan there, which MATLAB's max() skips.
    """
    npos = sum(
        lab == label and not dif
        for gt in ground_truths
        for lab, dif in zip(gt["labels"].tolist(), gt["difficult"].tolist())
    )
    detected = [[False] * len(gt["labels"]) for gt in ground_truths]
    ranked = sorted(
        (
            (score, i, box)
            for i, det in enumerate(detections)
            for score, box, lab in zip(det["scores"].tolist(), det["boxes"].tolist(), det["labels"].tolist())
            if lab == label
        ),
        key=lambda x: -x[0],
    )
    tp, fp = [], []
    for _, i, bb in ranked:
        ovmax, jmax = -math.inf, -1
        for j, (bbgt, lab) in enumerate(zip(ground_truths[i]["boxes"].tolist(), ground_truths[i]["labels"].tolist())):
            if lab != label:
                continue
            iw = min(bb[2], bbgt[2]) - max(bb[0], bbgt[0])
            ih = min(bb[3], bbgt[3]) - max(bb[1], bbgt[1])
            if iw > 0 and ih > 0:
                ua = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (bbgt[2] - bbgt[0]) * (bbgt[3] - bbgt[1]) - iw * ih
                if iw * ih / ua > ovmax:
                    ovmax, jmax = iw * ih / ua, j
        t = f = 0
        if ovmax >= iou_threshold:
            if not ground_truths[i]["difficult"][jmax]:
                if not detected[i][jmax]:
                    t, detected[i][jmax] = 1, True
                else:
                    f = 1
        else:
            f = 1
        tp.append((tp[-1] if tp else 0) + t)
        fp.append((fp[-1] if fp else 0) + f)
    mrec = [0.0] + [x / npos for x in tp] + [1.0]
    mpre = [0.0] + [x / (x + y) if x + y else math.nan for x, y in zip(tp, fp)] + [0.0]
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = mpre[k + 1] if math.isnan(mpre[k]) else max(mpre[k], mpre[k + 1])  # MATLAB's max skips nan
    return sum((mrec[k] - mrec[k - 1]) * mpre[k] for k in range(1, len(mrec)) if mrec[k] != mrec[k - 1])


@pytest.mark.parametrize("seed", range(3))
def test_voc_ap_matches_a_transcription_of_the_devkit_on_random_scenes(seed):
    gen = torch.Generator().manual_seed(seed)
    detections, ground_truths = [], []
    for _ in range(25):
        num_objects = int(torch.randint(1, 4, (1,), generator=gen))
        corner = torch.rand(num_objects, 2, generator=gen) * 0.6
        truth = torch.cat([corner, corner + 0.1 + torch.rand(num_objects, 2, generator=gen) * 0.3], 1)
        labels = torch.randint(0, 3, (num_objects,), generator=gen)
        difficult = torch.rand(num_objects, generator=gen) < 0.2
        ground_truths.append({"boxes": truth, "labels": labels, "difficult": difficult})
        # Jittered copies of the objects (some twice: duplicates), a few labels swapped, plus clutter.
        copies = torch.cat([truth, truth[:1]])
        jittered = copies + 0.04 * torch.randn(copies.shape, generator=gen)
        jittered = torch.cat([jittered[:, :2], torch.maximum(jittered[:, 2:], jittered[:, :2])], 1)
        clutter_corner = torch.rand(2, 2, generator=gen) * 0.7
        clutter = torch.cat([clutter_corner, clutter_corner + 0.2], 1)
        det_labels = torch.cat([labels, labels[:1]])
        det_labels = torch.where(torch.rand(len(det_labels), generator=gen) < 0.15, (det_labels + 1) % 3, det_labels)
        boxes = torch.cat([jittered, clutter])
        detections.append(
            {
                "boxes": boxes,
                "scores": torch.cat(
                    [  # objects tend to score above clutter, with overlap
                        0.4 + 0.6 * torch.rand(len(copies), generator=gen, dtype=torch.float64),
                        0.6 * torch.rand(2, generator=gen, dtype=torch.float64),
                    ]
                ),
                "labels": torch.cat([det_labels, torch.randint(0, 3, (2,), generator=gen)]),
            }
        )
    per_class = metrics.voc_ap_per_class(detections, ground_truths, num_classes=3)
    for label in range(3):
        assert per_class[label].ap == pytest.approx(_devkit_ap(detections, ground_truths, label), abs=1e-6)
    assert 0.2 < per_class[0].ap < 0.95, "the scene should be neither trivial nor hopeless"


def test_detection_inputs_are_checked_with_helpful_errors():
    detections, ground_truths = _toy_dataset()
    with pytest.raises(ValueError, match="same images, got 4 and 3"):
        metrics.voc_ap_per_class(detections, ground_truths[:3], num_classes=3)
    with pytest.raises(ValueError, match=r"labels'\] = \[0, 2\] outside 0 .. 1"):
        metrics.voc_ap_per_class(detections, ground_truths, num_classes=2)
    bad = [dict(d) for d in detections]
    bad[1]["scores"] = torch.tensor([0.5])
    with pytest.raises(ValueError, match=r"detections\[1\]\['scores'\] has 1 entries for 2 boxes"):
        metrics.voc_ap_per_class(bad, ground_truths, num_classes=3)
    del bad[1]["scores"]
    with pytest.raises(ValueError, match=r"detections\[1\] lacks keys \['scores'\]"):
        metrics.voc_ap_per_class(bad, ground_truths, num_classes=3)
    with pytest.raises(ValueError, match="no class has a non-difficult ground truth"):
        metrics.mean_average_precision([_det([], [], [])], [_gt([], [])], num_classes=1)


def test_confusion_matrix_is_hand_worked_and_its_diagonal_gives_the_accuracy():
    true = torch.tensor([0, 0, 1, 2, 2, 2])
    pred = torch.tensor([0, 1, 1, 2, 0, 2])
    matrix = metrics.confusion_matrix(true, pred, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert matrix.dtype == torch.int64 and int(matrix.sum()) == len(true)
    assert float(matrix.diagonal().sum() / matrix.sum()) == float((true == pred).float().mean())
    assert metrics.confusion_matrix(torch.zeros(0), torch.zeros(0), 2).tolist() == [[0, 0], [0, 0]]


def test_confusion_matrix_rejects_labels_out_of_range_and_unequal_lengths():
    with pytest.raises(ValueError, match=r"pred_labels must lie in 0 .. 2 \(num_classes=3\), got values 0 .. 3"):
        metrics.confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="same length"):
        metrics.confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 3)
