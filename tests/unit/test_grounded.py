"""The source for one's own data: every file format, every box format, bad rows as reasons."""
import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to

from groundcot.transforms.images import load_image
from groundcot.transforms.sources import get_source
from groundcot.transforms.sources.grounded import GroundedConfig, ReadGrounded, parse_line, parse_row

from support import png_bytes

CARD = {"name": "mine", "license": "cc-by-4.0"}
ROWS = [{"id": "a", "image": "a.png", "question": "Where is the cat?", "answer": "left", "boxes": [[1, 2, 10, 20]]},
        {"id": "b", "image": "b.png", "question": "How many?", "answer": "2", "boxes": [[0, 0, 5, 5], [6, 6, 4, 4]]}]


def config(path, **extra) -> GroundedConfig:
    return GroundedConfig(kind="grounded", path=str(path), image_root="/nowhere", card=CARD, **extra)


def run_reader(cfg, expected):
    with beam.Pipeline("DirectRunner") as p:
        out = p | ReadGrounded(cfg) | beam.Map(
            lambda r: (r.source_id, r.rejection.reason if r.rejection else r.gt_boxes, r.image is not None))
        assert_that(out, equal_to(expected))


def test_jsonl_json_array_and_parquet_read_alike(tmp_path):
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "\n")
    (tmp_path / "rows.json").write_text(json.dumps(ROWS, indent=2))
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "rows.parquet")
    boxes = [("a", [[1.0, 2.0, 10.0, 20.0]], False), ("b", [[0.0, 0.0, 5.0, 5.0], [6.0, 6.0, 4.0, 4.0]], False)]
    for name in ("rows.jsonl", "rows.json", "rows.parquet"):
        run_reader(config(tmp_path / name), boxes)
    assert get_source("grounded").count(config(tmp_path / "rows.jsonl")) == 2
    assert get_source("grounded").count(config(tmp_path / "rows.parquet")) == 2
    assert get_source("grounded").count(config(tmp_path / "rows.json")) is None  # not read to count


def test_parquet_image_bytes_and_hub_image_structs(tmp_path):
    image = png_bytes(64, 48)
    rows = [{"image": {"bytes": image, "path": "/home/me/x.png"}, "question": "q?", "answer": "a", "boxes": [[1, 1, 9, 9]]}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "structs.parquet")
    pq.write_table(pa.Table.from_pylist([{**rows[0], "image": image}]), tmp_path / "raw.parquet")
    for name in ("structs.parquet", "raw.parquet"):
        (record,) = [parse_row("r", row, config(tmp_path / name))
                     for row in pq.read_table(tmp_path / name).to_pylist()]
        assert record.image == image and record.image_path == ("x.png" if name == "structs.parquet" else "")
        loaded = load_image(record, image_root="/nowhere")  # no file is read: the bytes came with the row
        assert loaded.rejection is None and (loaded.width, loaded.height) == (64, 48)
        assert loaded.gt_boxes == [[1.0, 1.0, 9.0, 9.0]]


@pytest.mark.parametrize("box_format, given, pixels", [
    ("xyxy", [[4, 6, 30, 40]], [[4.0, 6.0, 30.0, 40.0]]),
    ("xywh", [[4, 6, 26, 34]], [[4.0, 6.0, 30.0, 40.0]]),
    ("xywh", [4, 6, 26, 34], [[4.0, 6.0, 30.0, 40.0]]),  # one box, not in a list
    ("xyxy_norm", [[0.0625, 0.125, 0.5, 0.75]], [[4.0, 6.0, 32.0, 36.0]]),
])
def test_each_box_format_comes_out_as_pixel_xyxy(tmp_path, box_format, given, pixels):
    (tmp_path / "a.png").write_bytes(png_bytes(64, 48))
    row = {"image": "a.png", "question": "q?", "answer": "a", "boxes": given}
    record = parse_row("r", row, config(tmp_path / "x.jsonl", box_format=box_format))
    assert record.rejection is None
    assert load_image(record, image_root=str(tmp_path)).gt_boxes == pixels


def test_fields_are_mapped_and_split_and_dataset_default(tmp_path):
    cfg = config(tmp_path / "x.jsonl", fields={"image": "file", "boxes": "bbox", "question": "q"},
                 split="val", dataset="shapes")
    row = {"file": "a.png", "q": "What?", "answer": "that", "bbox": [[1, 1, 5, 5]], "labels": ["ball"]}
    record = parse_row("x.jsonl@0", row, cfg)
    assert (record.image_path, record.question, record.split, record.dataset) == ("a.png", "What?", "val", "shapes")
    assert record.labels == ["ball"] and record.source_id.startswith("x.jsonl#")
    own = parse_row("x.jsonl@0", {**row, "split": "test", "dataset": "d1"}, cfg)
    assert (own.split, own.dataset) == ("test", "d1") and own.id != record.id
    assert parse_row("x.jsonl@9", dict(row), cfg).id == record.id  # ids depend on content, not place


@pytest.mark.parametrize("row, reason, detail", [
    ("a string", "bad_record", "not an object"),
    ({"image": "a.png", "question": "q?", "answer": "a"}, "missing_key", "missing boxes"),
    ({"image": "a.png", "question": "q?", "answer": "a", "boxes": [[1, 2, 3]]}, "bad_boxes", "[[1, 2, 3]]"),
    ({"image": "a.png", "question": "q?", "answer": "a", "boxes": "1,2,3,4"}, "bad_boxes", "xyxy boxes"),
    ({"image": "a.png", "question": "q?", "answer": "a", "boxes": []}, "no_boxes", "boxes is empty"),
    ({"image": "a.png", "question": " ", "answer": "a", "boxes": [[1, 2, 3, 4]]}, "empty_question", "empty"),
    ({"image": 7, "question": "q?", "answer": "a", "boxes": [[1, 2, 3, 4]]}, "bad_image", "not a path"),
])
def test_bad_rows_are_rejected_with_their_reason(tmp_path, row, reason, detail):
    record = parse_row("rows.jsonl@12", row, config(tmp_path / "rows.jsonl"))
    assert record.rejection.reason == reason and detail in record.rejection.detail
    assert "rows.jsonl" in record.rejection.detail and record.image is None


def test_normalised_boxes_outside_0_1_and_bad_lines_are_rejected(tmp_path):
    row = {"image": "a.png", "question": "q?", "answer": "a", "boxes": [[10, 20, 30, 40]]}
    cfg = config(tmp_path / "rows.jsonl", box_format="xyxy_norm")
    assert parse_row("r", row, cfg).rejection.reason == "bad_boxes"
    assert parse_line("rows.jsonl", 0, b"{not json\n", cfg).rejection.reason == "bad_json"
    bad = parse_line("rows.jsonl", 40, b'{"question": "caf\xe9"}\n', cfg)
    assert bad.rejection.reason == "bad_encoding" and bad.source_id == "rows.jsonl@40"


def test_a_bad_line_among_good_ones_is_one_rejected_record(tmp_path):
    lines = [json.dumps(ROWS[0]), "{broken", json.dumps({**ROWS[1], "boxes": None})]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    offset = len(lines[0]) + 1
    run_reader(config(tmp_path / "rows.jsonl"), [("a", [[1.0, 2.0, 10.0, 20.0]], False),
                                                 (f"rows.jsonl@{offset}", "bad_json", False),
                                                 (f"rows.jsonl@{offset + 8}", "missing_key", False)])


def test_a_file_that_is_no_parquet_is_one_rejected_record(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    run_reader(config(tmp_path / "bad.parquet"), [("bad.parquet@0", "bad_parquet", False)])
