import pytest

from groundcot.schemas.boxes import clip, contains, global_iou, hiou, is_degenerate, pair_iou, to_norm, to_pixel


def test_identical_sets_score_one():
    boxes = [[0, 0, 10, 10], [20, 20, 30, 40]]
    assert hiou(boxes, boxes) == pytest.approx(1.0)


def test_empty_sides():
    assert hiou([], []) == 1.0
    assert hiou([[0, 0, 1, 1]], []) == 0.0
    assert hiou([], [[0, 0, 1, 1]]) == 0.0


def test_degenerate_boxes_stay_in_the_pairing_as_sifthinker_keeps_them():
    gt = [[0, 0, 10, 10]]
    # one GT: min(|P|, |G|) = 1, the good box matches it, the degenerate ones add nothing to the union
    assert hiou([[0, 0, 10, 10], [5, 5, 5, 9], [3, 3, 1, 8]], gt) == pytest.approx(1.0)
    assert hiou([[5, 5, 5, 9]], gt) == 0.0  # the union is empty (global 0), the pair IoU 0
    # both unions empty -> global 1; the pairing has one zero pair -> 0; HIoU 0.5
    assert hiou([[5, 5, 5, 9]], [[1, 1, 1, 1]]) == 0.5
    # by hand: P unions to 100, G to 200, overlap 100 -> global 0.5; pairs (good, g1) = 1 and
    # (degenerate, g2) = 0 over min(2, 2) = 2 -> 0.5 (dropping the degenerate box would give 1/1)
    two = [[0, 0, 10, 10], [20, 20, 30, 30]]
    assert global_iou([[0, 0, 10, 10], [5, 5, 5, 9]], two) == 0.5
    assert pair_iou([[0, 0, 10, 10], [5, 5, 5, 9]], two) == 0.5
    assert hiou([[0, 0, 10, 10], [5, 5, 5, 9]], two) == 0.5


def test_global_iou_uses_true_union_not_bounding_box():
    # two disjoint 10x10 predictions at opposite corners vs one GT covering the first:
    # true union area 200, bounding box would be 400
    pred = [[0, 0, 10, 10], [30, 30, 40, 40]]
    gt = [[0, 0, 10, 10]]
    assert global_iou(pred, gt) == pytest.approx(100 / 200)


def test_overlapping_predictions_are_not_double_counted():
    # two overlapping predictions whose union is exactly the GT box
    pred = [[0, 0, 10, 10], [5, 0, 15, 10]]
    gt = [[0, 0, 15, 10]]
    assert global_iou(pred, gt) == pytest.approx(1.0)
    # pair IoU: only one pair (min(2, 1)); the best match has IoU 100/150
    assert pair_iou(pred, gt) == pytest.approx(100 / 150)
    assert hiou(pred, gt) == pytest.approx((1.0 + 100 / 150) / 2)


def test_pair_iou_hungarian_maximises_total():
    gt = [[0, 0, 10, 1], [10, 0, 20, 1]]
    pred = [[4, 0, 14, 1], [0, 0, 8, 1]]
    # IoUs: p0-g0 6/14, p0-g1 4/16, p1-g0 8/10, p1-g1 0. Greedy from p0 takes g0 and
    # totals 6/14; the optimum pairs p0-g1 and p1-g0.
    assert pair_iou(pred, gt) == pytest.approx((4 / 16 + 8 / 10) / 2)


def test_several_gt_boxes_and_fewer_predictions():
    gt = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]
    pred = [[20, 0, 30, 10]]
    assert pair_iou(pred, gt) == pytest.approx(1.0)  # divides by min(|P|, |G|) = 1
    assert global_iou(pred, gt) == pytest.approx(100 / 300)
    assert hiou(pred, gt) == pytest.approx((1 + 1 / 3) / 2)


def test_disjoint_boxes_score_zero():
    assert hiou([[0, 0, 1, 1]], [[2, 2, 3, 3]]) == 0.0


def test_is_degenerate():
    assert is_degenerate([1, 1, 1, 5])
    assert is_degenerate([0, 0, float("nan"), 1])
    assert is_degenerate([0, 0, 1])
    assert not is_degenerate([0, 0, 1, 1])


def test_clip_and_norm_round_outward():
    assert clip([-5, 10, 120, 50], 100, 40) == [0, 10, 100, 40]
    # 1/3 -> floor for x1/y1, ceil for x2/y2 at 3 decimals
    assert to_norm([100 / 3, 100 / 3, 200 / 3, 200 / 3], 100, 100) == [0.333, 0.333, 0.667, 0.667]
    # a 1-pixel box in a wide image never collapses
    x1, _, x2, _ = to_norm([1000, 0, 1001, 10], 4000, 10)
    assert x2 > x1
    assert to_pixel([0.5, 0.5, 1, 1], 200, 100) == [100, 50, 200, 100]


def test_norm_keeps_containment():
    outer, inner = [10.2, 10.2, 50.7, 60.9], [10.2004, 10.3, 50.69, 60.9]
    assert contains(to_norm(outer, 777, 333), to_norm(inner, 777, 333))
