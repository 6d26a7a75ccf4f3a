import random

import pytest

from groundcot.schemas import boxes as B
from groundcot.schemas.record import Record
from groundcot.transforms.expand import expand_record, expansion_levels, forward_chain, merge_overlapping

CASES = [
    ([[10, 10, 20, 20]], 100, 80),
    ([[10, 10, 20, 20], [80, 60, 95, 78]], 100, 80),  # two far apart: union step
    ([[10, 10, 30, 30], [25, 25, 40, 40]], 200, 100),  # overlapping GT boxes
    ([[0, 0, 640, 20]], 640, 480),  # touches three edges
    ([[300, 200, 301, 201]], 640, 480),  # one pixel
    ([[0, 0, 50, 40]], 50, 40),  # GT is the whole image
]


def focus_steps(chain):
    return [s for s in chain if s.kind != "distractor"]


def inside_some(inner, outers):
    return any(B.contains(o, inner) for o in outers)


@pytest.mark.parametrize("gt, w, h", CASES)
@pytest.mark.parametrize("seed", range(8))
def test_chain_invariants(gt, w, h, seed):
    chain = forward_chain(gt, w, h, random.Random(seed), distractor_prob=0.7)
    assert 1 <= len(chain) <= 5
    assert chain[-1].boxes == [B.to_norm(b, w, h) for b in gt]
    steps = focus_steps(chain)
    if len(steps) > 1:
        assert steps[0].kind == "full" and steps[0].boxes == [[0.0, 0.0, 1.0, 1.0]]
    for coarse, fine in zip(steps, steps[1:]):  # each step contains the next
        assert all(inside_some(b, coarse.boxes) for b in fine.boxes), (coarse, fine)
        assert coarse.boxes != fine.boxes
    for step in chain:  # everything inside the image, non-degenerate
        for box in step.boxes:
            assert 0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1


def test_no_distractor_when_there_is_no_room():
    for seed in range(20):  # the expanded target spans most of the image
        chain = forward_chain(*CASES[1], random.Random(seed), distractor_prob=1.0)
        assert "distractor" not in [s.kind for s in chain]


@pytest.mark.parametrize("gt, w, h", [CASES[0], CASES[2], CASES[4]])
def test_distractor_is_beside_the_target(gt, w, h):
    found = 0
    for seed in range(20):
        chain = forward_chain(gt, w, h, random.Random(seed), distractor_prob=1.0)
        kinds = [s.kind for s in chain]
        if "distractor" in kinds:
            found += 1
            assert kinds.index("distractor") == 1  # right after the full image
            target = B.enclosing(chain[kinds.index("expansion")].boxes)
            assert B.iou(chain[1].boxes[0], target) < 0.001
    assert found > 0


def test_union_step_only_with_several_expanded_boxes():
    one = forward_chain([[10, 10, 20, 20]], 100, 80, random.Random(0), distractor_prob=0)
    two = forward_chain([[10, 10, 20, 20], [80, 60, 95, 78]], 100, 80, random.Random(0), distractor_prob=0)
    assert [s.kind for s in one] == ["full", "expansion", "gt"]
    assert [s.kind for s in two] == ["full", "union", "expansion", "gt"]
    assert two[1].boxes == [B.enclosing(two[2].boxes)]


def test_levels_reach_the_full_image_and_grow_monotonically():
    levels = expansion_levels([[40, 30, 50, 40]], 100, 80, steps=5)
    assert len(levels) == 5
    assert levels[-1] == [[0.0, 0.0, 100.0, 80.0]]
    for fine, coarse in zip(levels, levels[1:]):
        assert all(inside_some(b, coarse) for b in fine)
    # first step moves each side 1/5 of the way to the edge
    assert levels[0] == [pytest.approx([32, 24, 60, 48])]


def test_merge_overlapping():
    merged = merge_overlapping([[0, 0, 10, 10], [5, 5, 15, 15], [30, 30, 40, 40]])
    assert sorted(merged) == [[0, 0, 15, 15], [30, 30, 40, 40]]


def test_same_seed_same_chain_and_seed_matters():
    record = Record(id="viscot-abc", source="viscot", source_id="x", dataset="toy", split="train", question="q",
                    answer="a", image_path="i.png", width=300, height=200, gt_boxes=[[100, 80, 140, 120]])
    chains = [expand_record(record, seed=s, distractor_prob=0.5).chain for s in (1, 1, 2, 3, 4, 5)]
    assert chains[0] == chains[1]
    assert any(c != chains[0] for c in chains[2:])
