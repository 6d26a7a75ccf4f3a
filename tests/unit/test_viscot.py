import json

import pytest

from groundcot.transforms.viscot import parse_line

from support import FIXTURES

REAL = sorted((FIXTURES / "viscot").glob("metadata_*_cot_train.head5.jsonl"))


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_metadata_records(path):
    for line in path.read_text().splitlines():
        raw = json.loads(line)
        record = parse_line(str(path), line)
        assert record.rejection is None
        assert record.gt_boxes == [[float(v) for v in b] for b in raw["bboxs"]]
        assert (record.width, record.height) == (raw["width"], raw["height"])
        assert record.dataset == raw["dataset"] and record.image_path == raw["image"]
        assert record.source == "viscot" and record.id.startswith("viscot-")


def test_exact_values_of_a_real_record():
    line = (FIXTURES / "viscot" / "metadata_vsr_cot_train.head5.jsonl").read_text().splitlines()[4]
    record = parse_line("vsr_cot_train.jsonl", line)
    assert record.question == "Is the person in the bus?" and record.answer == "No"
    assert record.gt_boxes == [[215.33, 275.52, 255.98000000000002, 340.22999999999996]]
    assert (record.width, record.height) == (640, 426)


def test_ids_are_stable_and_content_based():
    line = (FIXTURES / "viscot" / "metadata_cub_cot_train.head5.jsonl").read_text().splitlines()[0]
    assert parse_line("a.jsonl", line).id == parse_line("b/c.jsonl", line).id
    lines = (FIXTURES / "viscot" / "metadata_cub_cot_train.head5.jsonl").read_text().splitlines()
    assert len({parse_line("a", ln).id for ln in lines}) == len(lines)


@pytest.mark.parametrize("line, reason", [
    ('{"question": "q", "answer": "a", "image": "x.jpg", "width": 10', "bad_json"),
    ('[1, 2]', "bad_json"),
    ('{"question": "q", "image": "x.jpg", "width": 10, "height": 10, "bboxs": [[0, 0, 1, 1]]}', "missing_key"),
    ('{"question": "q", "answer": "a", "image": "x.jpg", "width": -5, "height": 10, "bboxs": [[0, 0, 1, 1]]}', "bad_size"),
    ('{"question": "q", "answer": "a", "image": "x.jpg", "width": "10", "height": 10, "bboxs": [[0, 0, 1, 1]]}', "bad_size"),
    ('{"question": "q", "answer": "a", "image": "x.jpg", "width": 10, "height": 10, "bboxs": [[0, 0, 1]]}', "bad_boxes"),
    ('{"question": "q", "answer": "a", "image": "x.jpg", "width": 10, "height": 10, "bboxs": []}', "no_boxes"),
])
def test_malformed_lines_are_rejected_with_a_reason(line, reason):
    record = parse_line("toy_cot_train.jsonl", line)
    assert record.rejection is not None
    assert record.rejection.reason == reason
    assert record.rejection.stage == "read"
    assert "toy_cot_train.jsonl" in record.source_id or record.rejection.detail
