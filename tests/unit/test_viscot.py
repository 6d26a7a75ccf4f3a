import json

import pytest

from groundcot.transforms.sources.viscot import parse_line

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


def test_bytes_a_bom_and_bad_encoding():
    line = (FIXTURES / "viscot" / "metadata_vsr_cot_train.head5.jsonl").read_bytes().splitlines()[4]
    assert parse_line("vsr_cot_train.jsonl", b"\xef\xbb\xbf" + line + b"\r\n", offset=0).rejection is None
    bad = parse_line("vsr_cot_train.jsonl", line.replace(b"person", b"pers\xf6n"), offset=120)
    assert bad.rejection.reason == "bad_encoding" and bad.source_id == "vsr_cot_train.jsonl@120"
    assert bad.rejection.detail.startswith("vsr_cot_train.jsonl@120: not UTF-8: byte 0xf6 at column")
    lone = parse_line("vsr_cot_train.jsonl", line.replace(b"person", b"\\udc80"))
    assert lone.rejection.reason == "bad_encoding" and "\\u escape" in lone.rejection.detail


@pytest.mark.parametrize("question, answer, reason", [
    ("", "a", "empty_question"), ("  \n", "a", "empty_question"), (None, "a", "empty_question"),
    ({"q": 1}, "a", "empty_question"), ("q", "", "empty_answer"), ("q", None, "empty_answer"),
    ("q", False, "empty_answer"), ("q", 0, None), ("q", 2.5, None),
])
def test_empty_null_or_non_text_question_or_answer(question, answer, reason):
    line = json.dumps({"question": question, "answer": answer, "image": "x.jpg", "width": 10, "height": 10,
                       "bboxs": [[0, 0, 5, 5]]})
    record = parse_line("toy_cot_train.jsonl", line)
    assert (record.rejection.reason if record.rejection else None) == reason
    assert "None" not in (record.question, record.answer)


def test_copies_of_one_id_keep_one():
    from groundcot.transforms.sources.common import keep_first

    line = (FIXTURES / "viscot" / "metadata_cub_cot_train.head5.jsonl").read_text().splitlines()[0]
    copies = [parse_line(name, line) for name in ("b_cot_train.jsonl", "a_cot_train.jsonl", "c_cot_train.jsonl")]
    out = keep_first(copies[0].id, copies)
    assert [r.rejection is None for r in out] == [True, False, False]
    assert out[0].source_id.startswith("a_cot_train.jsonl")  # a fixed order, not arrival order
    assert {r.rejection.reason for r in out[1:]} == {"duplicate"}
