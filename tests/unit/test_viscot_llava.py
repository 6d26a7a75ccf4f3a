import json

import pytest

from groundcot.transforms.images import load_image
from groundcot.transforms.sources.common import select_dataset
from groundcot.transforms.sources.jsonstream import JsonError
from groundcot.transforms.sources.viscot import SUFFIX, image_path, parse_llava

from support import FIXTURES, png_bytes

GQA = json.loads((FIXTURES / "viscot" / "benchmark_gqa.first3.json").read_text())
FLICKR = json.loads((FIXTURES / "viscot" / "benchmark_flickr30k.first3.json").read_text())
# sizes of the same images, from the benchmark_det files
SIZES = {json.loads(l)["img_path"]: (json.loads(l)["width"], json.loads(l)["height"])
         for f in ("benchmark_det_gqa.head3.jsonl", "benchmark_det_flickr30k.head3.jsonl")
         for l in (FIXTURES / "viscot" / f).read_text().splitlines()}


def test_real_records_take_the_pixel_box():
    r = parse_llava("gqa.json", 10, GQA[0])
    assert r.rejection is None
    assert r.gt_boxes == [[217.0, 343.0, 242.0, 393.0]]
    assert r.question == "What are the tree branches in front of?"
    assert r.answer == "window" and r.dataset == "gqa" and r.source_id == "7"
    assert r.image_path == "gqa/2316539.jpg"
    assert (r.width, r.height) == (0, 0)  # read from the image file later


@pytest.mark.parametrize("record", [FLICKR[0], GQA[0], GQA[2]], ids=["w>h", "h>w", "square"])
def test_normalised_box_undoes_the_padded_square(record, image_root):
    path = record["image"][0]
    width, height = SIZES[path]
    truth = json.loads(record["image"][1].split("###")[1])
    only_normalised = dict(record, image=[path])  # no ###[..]: the normalised turn is all there is
    r = parse_llava("b.json", 0, only_normalised)
    assert r.gt_boxes == [] and r.square_boxes
    (image_root / "gqa").mkdir(exist_ok=True)
    (image_root / "flickr30k").mkdir(exist_ok=True)
    (image_root / r.image_path).write_bytes(png_bytes(width, height))
    r = load_image(r, str(image_root))
    assert r.rejection is None and (r.width, r.height) == (width, height)
    # 3 decimals of the padded side: within half a unit of 1/1000 of the longer side
    tol = 0.5e-3 * max(width, height) + 1e-9
    assert r.gt_boxes[0] == pytest.approx(truth, abs=tol)


def test_plain_width_height_normalisation_would_be_wrong():
    # the trap the reference warns about: x/w, y/h misplaces the box on a non-square image
    width, height = SIZES["cot/flickr30k/1021439420.jpg"]
    norm = json.loads(FLICKR[0]["conversations"][1]["value"])
    naive_y1 = norm[1] * height
    assert abs(naive_y1 - 96) > 20


def test_image_path_prefix_and_renames():
    assert image_path("cot/textcap/a.jpg", "cot/", {"textcap/": "textvqa/"}) == "textvqa/a.jpg"
    assert image_path("cot/v7w/b.jpg###[1, 2, 3, 4]", "cot/", {"v7w/": "visual7w/"}) == "visual7w/b.jpg"
    assert image_path("other/c.jpg", "cot/", {}) == "other/c.jpg"


@pytest.mark.parametrize("item, reason", [
    ({"image": ["cot/x.jpg"], "conversations": [{"value": "q"}]}, "missing_key"),
    ({"conversations": []}, "missing_key"),
    ("just a string", "bad_record"),
    ({"image": ["cot/x.jpg"], "conversations": [{"value": "q"}, {"value": "no box"}, {"value": ""}, {"value": "a"}]},
     "no_boxes"),
    (JsonError("truncated_json", "ends early"), "truncated_json"),
])
def test_malformed_records(item, reason):
    r = parse_llava("f.json", 99, item)
    assert r.rejection.reason == reason and r.rejection.stage == "read"


def test_dataset_filter_marks_filtered():
    r = select_dataset(parse_llava("f.json", 0, GQA[0]), None, ["gqa"])
    assert r.filtered and r.rejection.reason == "dataset_not_selected"
    assert not select_dataset(parse_llava("f.json", 0, GQA[0]), ["gqa"], []).filtered
    assert select_dataset(parse_llava("f.json", 0, FLICKR[0]), ["gqa"], []).filtered


def test_multi_box_record_becomes_the_union_in_the_llava_form():
    # A docvqa-style metadata record with two boxes, and its LLaVA form as upstream writes it:
    # the ###[..] box is the union of the boxes, truncated to int.
    meta_boxes = [[100.4, 200.7, 300.2, 240.9], [120.0, 500.5, 410.8, 560.0]]
    union = [int(min(b[0] for b in meta_boxes)), int(min(b[1] for b in meta_boxes)),
             int(max(b[2] for b in meta_boxes)), int(max(b[3] for b in meta_boxes))]
    item = {"dataset": "docvqa", "split": "train", "question_id": 5,
            "image": ["cot/docvqa/d.png", f"cot/docvqa/d.png###{union}"],
            "conversations": [{"from": "human", "value": "<image>\nWhat is the total? " + SUFFIX},
                              {"from": "gpt", "value": "[0.1, 0.2, 0.3, 0.4]"},
                              {"from": "human", "value": "<image>"}, {"from": "gpt", "value": "$12"}]}
    r = parse_llava("viscot_363k.json", 0, item)
    assert r.gt_boxes == [[100.0, 200.0, 410.0, 560.0]]
    assert r.question == "What is the total?"
