import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from groundcot.schemas.codecs import encode_mask
from groundcot.schemas.cot import CotError
from groundcot.schemas.record import Record
from groundcot.transforms.expand import expand_record
from groundcot.transforms.styles import STYLES, fan_out, plan
from groundcot.transforms.styles.aperture import parse_aperture, split_aperture
from groundcot.transforms.styles.mgpo import model_frame, parse_mgpo
from groundcot.transforms.styles.textual import parse_textual
from groundcot.transforms.teach import write_template
from groundcot.transforms.validate import check


def image_bytes(w=200, h=120):
    im = Image.new("RGB", (w, h), (150, 200, 230))
    ImageDraw.Draw(im).ellipse([120, 40, 170, 100], fill=(200, 30, 30))
    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    return buffer.getvalue()


def record(boxes=((120, 40, 170, 100),), masks=None, labels=("ball",)):
    r = Record(id="viscot-s", source="viscot", source_id="s", dataset="toy", split="train",
               question="What colour is the ball?", answer="red", image_path="x.png", width=200, height=120,
               gt_boxes=[list(b) for b in boxes], labels=list(labels), image=image_bytes(), masks=masks)
    return expand_record(r, seed=1)


def styled(r, style, **crops):
    (twin,) = fan_out(r, [style])
    return write_template(plan(twin, **crops))


@pytest.mark.parametrize("style", ["sif", "mgpo", "aperture", "textual"])
def test_template_trajectories_pass_their_own_grammar_and_checks(style):
    r = styled(record(), style)
    assert check(r) is None
    assert r.cot == "\n\n".join(r.turns)
    images = sum(p["type"] == "image" for m in STYLES[style].conversation(r) for p in m["content"])
    assert images == 1 + len(r.crops)
    roles = [m["role"] for m in STYLES[style].conversation(r)]
    assert roles[0] == "user" and roles[-1] == "assistant" and roles.count("assistant") == len(r.turns)


def test_fan_out_shares_the_record_and_marks_early_rejections():
    r = record()
    twins = fan_out(r, ["sif", "textual"])
    assert [t.style for t in twins] == ["sif", "textual"] and all(t.id == r.id and t.image is r.image for t in twins)
    (rejected,) = fan_out(record().reject("image", "missing_image"), ["sif", "mgpo"])
    assert rejected.style == ""


def test_textual_has_no_coordinates():
    think, answer = parse_textual(styled(record(), "textual").turns[0])
    assert answer == "red" and "depth 0." not in think and "[" not in think
    with pytest.raises(CotError) as err:
        parse_textual('<think>Look at [0.1, 0.2, 0.3, 0.4].</think><answer>red</answer>')
    assert err.value.rule == "coordinates_in_text"


def test_mgpo_region_is_in_the_qwen_frame_and_the_crop_comes_from_full_resolution():
    r = styled(record(), "mgpo", frame="qwen2_5_vl")
    fw, fh = r.frame
    assert fw % 28 == 0 and fh % 28 == 0 and (fw, fh) == model_frame(200, 120, "qwen2_5_vl", 3136, 12845056)
    (region,) = r.actions
    x1, y1, x2, y2 = region["bbox_2d"]
    assert x1 <= 120 * fw / 200 and x2 >= 170 * fw / 200 and region["label"] == "ball"
    crop = Image.open(io.BytesIO(r.crops[0]))
    # the region as stated in frame pixels (rounded outward), scaled back to the 200x120 image:
    # the 50x60 GT box plus at most one frame pixel on each side
    w, h = crop.size
    assert 50 <= w <= 50 + 2 * 200 / fw + 1 and 60 <= h <= 60 + 2 * 120 / fh + 1
    regions, answer = parse_mgpo(r.turns[0], r.turns[1], (fw, fh))
    assert regions[0].box == tuple(region["bbox_2d"]) and answer == "red"
    assert check(r) is None and r.hiou > 0.95


def test_mgpo_grammar_violations():
    ok = '```json\n[{"bbox_2d": [1, 2, 30, 40], "label": "x"}]\n```'
    for turn1, turn2, rule in [
        ("[{}]", "a \\boxed{b}", "region_not_fenced_json"),
        ('```json\n[{"bbox_2d": [1.5, 2, 30, 40]}]\n```', "a \\boxed{b}", "region_box_not_4_ints"),
        ('```json\n[{"bbox_2d": [1, 2, 300, 40]}]\n```', "a \\boxed{b}", "region_box_outside_frame"),
        (ok, "no boxed answer", "not_one_boxed_answer"),
        (ok, "\\boxed{a} \\boxed{b}", "not_one_boxed_answer"),
    ]:
        with pytest.raises(CotError) as err:
            parse_mgpo(turn1, turn2, (100, 100))
        assert err.value.rule == rule


def test_aperture_segments_an_irregular_object_and_zooms_otherwise():
    mask = np.zeros((120, 200), dtype=bool)
    yy, xx = np.mgrid[0:120, 0:200]
    mask[((xx - 145) / 25) ** 2 + ((yy - 70) / 30) ** 2 <= 1] = True  # the ellipse: ~79% of its box
    r = styled(record(masks=[encode_mask(mask, 0.9)]), "aperture")
    kinds = [a["action"] for a in r.actions]
    assert kinds[-1] == "segment" and set(kinds[:-1]) == {"zoom"}
    last = Image.open(io.BytesIO(r.crops[-1])).convert("RGB")
    assert last.getpixel((1, 1)) != (150, 200, 230)  # outside the mask: neutral, not the sky
    actions, answer = parse_aperture(r.turns)
    assert [a.kind for a in actions] == kinds and answer == "red"
    boxy = styled(record(masks=[encode_mask(np.pad(np.ones((60, 50), bool), ((40, 20), (120, 30))), 0.9)]), "aperture")
    assert [a["action"] for a in boxy.actions][-1] == "zoom"  # fills its box: a rectangle will do


def test_aperture_grammar_and_plan_violations():
    r = styled(record(), "aperture")
    bad = list(r.turns)
    bad[0] = bad[0].replace("<zoom>", "<look>").replace("</zoom>", "</look>")
    r.turns = bad
    assert check(r)[0] == "grammar_bad_action_turn"
    r = styled(record(), "aperture")
    r.turns = [t.replace("0.", "0.0", 1) if i == 0 else t for i, t in enumerate(r.turns)]
    assert check(r)[0] in ("action_mismatch", "grammar_action_box_out_of_range")
    assert split_aperture("".join(styled(record(), "aperture").turns)) == styled(record(), "aperture").turns
