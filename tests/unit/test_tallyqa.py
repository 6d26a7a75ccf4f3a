import json

from groundcot.transforms.sources.jsonstream import JsonError
from groundcot.transforms.sources.tallyqa import parse_boxed, parse_raw


def test_boxed_record_with_several_boxes():
    line = json.dumps({"question": "How many giraffes are there?", "answer": 3, "image": "VG_100K/1.jpg",
                       "width": 500, "height": 333, "dataset": "tallyqa", "split": "train",
                       "bboxs": [[10, 20, 50, 90], [60, 20, 110, 95], [200, 40, 260, 120.5]]})
    r = parse_boxed("tallyqa_train_10.jsonl", line)
    assert r.rejection is None and r.source == "tallyqa"
    assert r.gt_boxes == [[10, 20, 50, 90], [60, 20, 110, 95], [200, 40, 260, 120.5]]
    assert r.answer == "3"


def test_count_zero_has_no_box_and_says_why():
    line = json.dumps({"question": "How many cats?", "answer": 0, "image": "VG_100K/2.jpg",
                       "width": 500, "height": 333, "bboxs": []})
    r = parse_boxed("t.jsonl", line)
    assert r.rejection.reason == "no_boxes" and "count 0" in r.rejection.detail


def test_raw_record_is_kept_but_rejected_for_boxes():
    item = {"answer": 2, "data_source": "imported_genome", "image": "VG_100K_2/3.jpg", "image_id": 3,
            "issimple": True, "question": "How many dogs?", "question_id": 77}
    r = parse_raw("train.json", 0, item)
    assert r.source_id == "77" and r.answer == "2" and r.image_path == "VG_100K_2/3.jpg"
    assert r.rejection.reason == "no_boxes" and "raw TallyQA has no boxes" in r.rejection.detail
    assert parse_raw("train.json", 5, JsonError("truncated_json", "x")).rejection.reason == "truncated_json"


def test_raw_items_that_are_not_objects_or_lack_text():
    assert parse_raw("train.json", 9, "a string").rejection.reason == "bad_record"
    item = {"question": "How many?", "answer": None, "image": "1.jpg", "question_id": 1}
    assert parse_raw("train.json", 0, item).rejection.reason == "empty_answer"


def test_boxed_bytes_with_a_bad_byte():
    line = json.dumps({"question": "How many?", "answer": 3, "image": "1.jpg", "width": 50, "height": 50,
                       "bboxs": [[1, 1, 9, 9]]}).encode().replace(b"How", b"H\xffw")
    r = parse_boxed("t.jsonl", line, 40)
    assert r.rejection.reason == "bad_encoding" and r.rejection.detail.startswith("t.jsonl@40: not UTF-8: byte 0xff")
