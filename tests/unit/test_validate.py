
import numpy as np
import pytest

from groundcot.schemas.codecs import encode_png16
from groundcot.schemas.cot import parse_cot
from groundcot.schemas.record import Record
from groundcot.transforms.expand import expand_record
from groundcot.transforms.styles.words import position
from groundcot.transforms.teach import write_template
from groundcot.transforms.validate import check


def make(with_depth=True, labels=()):
    r = Record(id="viscot-1", source="viscot", source_id="1", dataset="toy", split="train",
               question="What colour is the car?", answer="red", image_path="x.png", width=200, height=100,
               gt_boxes=[[120, 40, 180, 90]], labels=list(labels))
    if with_depth:
        yy, xx = np.mgrid[0:100, 0:200]
        r.depth_map = encode_png16(xx / 199.0)  # depth grows left to right
    expand_record(r, seed=3)
    return write_template(r)


def test_template_output_passes_validation_and_scores_full_hiou():
    r = make(labels=["car"])
    assert check(r) is None
    assert r.hiou == pytest.approx(1.0)
    cot = parse_cot(r.cot)
    assert [list(a.box) for a in cot.steps[-1].areas] == r.chain[-1].boxes
    assert cot.answer == "red" and "car" in cot.steps[-1].text


def test_template_is_deterministic():
    assert make().cot == make().cot


def test_without_depth_there_is_no_depth_in_the_cot():
    r = make(with_depth=False)
    assert '"depth"' not in r.cot and check(r) is None


def swap(r, old, new):
    assert old in r.cot
    r.cot = r.cot.replace(old, new, 1)
    return r


def test_grammar_violation():
    r = swap(make(), "</think>", "")
    assert check(r)[0] == "grammar_not_think_then_answer"


def test_chain_length_mismatch():
    r = make()
    first = r.cot.index("<area>")
    second = r.cot.index("<area>", first + 1)
    r.cot = r.cot[:first] + r.cot[second:]
    assert check(r)[0] == "chain_length_mismatch"


def test_chain_box_mismatch():
    r = make()
    box = r.chain[-1].boxes[0]
    assert check(swap(r, f"{box[0]:.3f}, {box[1]:.3f}", f"{box[0] - 0.05:.3f}, {box[1]:.3f}"))[0] == "chain_box_mismatch"


def test_depth_mismatch_beyond_ten_percent():
    r = make()
    d = r.chain[-1].depths[0]
    ok = swap(make(), f'"depth": {d:.3f}}}]</area>\n<text>The', f'"depth": {d * 1.05:.3f}}}]</area>\n<text>The')
    assert check(ok) is None
    bad = swap(r, f'"depth": {d:.3f}}}]</area>\n<text>The', f'"depth": {d * 1.2:.3f}}}]</area>\n<text>The')
    assert check(bad)[0] == "depth_mismatch"


def test_answer_mismatch_and_normalised_match():
    assert check(swap(make(), "<answer>red</answer>", "<answer>blue</answer>"))[0] == "answer_mismatch"
    assert check(swap(make(), "<answer>red</answer>", "<answer>Red.</answer>")) is None


def test_low_hiou_threshold():
    r = make(with_depth=False)
    r.chain[-1].boxes = [[0.0, 0.0, 0.2, 0.2]]  # the CoT and chain agree, but not with the GT
    write_template(r)
    assert check(r)[0] == "low_hiou"
    assert check(r, min_hiou=0.0) is None


def test_position_words():
    assert position([0, 0, 0.2, 0.2]) == "upper left"
    assert position([0.4, 0.4, 0.6, 0.6]) == "centre"
    assert position([0.8, 0.8, 1, 1]) == "lower right"
