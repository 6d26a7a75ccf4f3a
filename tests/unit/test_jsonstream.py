import json

import pytest
from apache_beam.io import source_test_utils as stu

from groundcot.transforms.jsonstream import JsonError, JsonItemsSource

RECORDS = [{"dataset": "gqa", "image": [f"cot/gqa/{i}.jpg"], "question_id": i,
            "conversations": [{"from": "human", "value": 'tricky: }, {"image": [1], "conversations": 2} é 中'}]}
           for i in range(40)]
REQUIRED = ("image", "conversations")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def items(source):
    return [item for _, _, item in stu.read_from_source(source)]


@pytest.mark.parametrize("dump", [
    lambda r: json.dumps(r, indent=4),  # the LLaVA files' layout
    lambda r: json.dumps(r),  # one long line
    lambda r: json.dumps(r, ensure_ascii=False, indent=1),  # raw UTF-8 bytes
], ids=["indent4", "compact", "utf8"])
def test_array_reads_every_item_once_across_any_split(tmp_path, dump):
    source = JsonItemsSource(write(tmp_path, "a.json", dump(RECORDS)), "array", REQUIRED)
    assert items(source) == RECORDS
    splits = [(s.source, s.start_position, s.stop_position) for s in source.split(desired_bundle_size=500)]
    assert len(splits) > 5
    stu.assert_sources_equal_reference_source((source, None, None), splits)


def test_dynamic_splits_at_every_fraction(tmp_path):
    source = JsonItemsSource(write(tmp_path, "a.json", json.dumps(RECORDS[:6], indent=2)), "array", REQUIRED)
    stu.assert_split_at_fraction_exhaustive(source)


def test_object_members_across_splits(tmp_path):
    obj = {f"{i:08d}": {"imageId": str(i), "question": "a {b}: c", "annotations": {"answer": {"0": str(i)}}}
           for i in range(60)}
    source = JsonItemsSource(write(tmp_path, "q.json", json.dumps(obj)), "object", ("imageId", "question"))
    assert [tuple(kv) for kv in items(source)] == list(obj.items())
    splits = [(s.source, s.start_position, s.stop_position) for s in source.split(desired_bundle_size=300)]
    stu.assert_sources_equal_reference_source((source, None, None), splits)


def test_truncated_file_ends_with_an_error_item(tmp_path):
    text = json.dumps(RECORDS[:5])
    got = items(JsonItemsSource(write(tmp_path, "t.json", text[:-40]), "array", REQUIRED))
    assert got[:4] == RECORDS[:4]
    assert isinstance(got[4], JsonError) and got[4].reason == "truncated_json"


def test_malformed_item_is_reported_and_reading_goes_on(tmp_path):
    text = json.dumps(RECORDS[:5]).replace('"question_id": 2', '"question_id": 2,,', 1)
    got = items(JsonItemsSource(write(tmp_path, "m.json", text), "array", REQUIRED))
    assert got[:2] == RECORDS[:2] and got[3:] == RECORDS[3:5]
    assert isinstance(got[2], JsonError) and got[2].reason == "bad_json"


def test_not_an_array(tmp_path):
    got = items(JsonItemsSource(write(tmp_path, "o.json", '{"a": 1}'), "array", REQUIRED))
    assert len(got) == 1 and got[0].reason == "bad_json"


def test_empty_array(tmp_path):
    assert items(JsonItemsSource(write(tmp_path, "e.json", " [ ] "), "array", REQUIRED)) == []


def test_oversized_item_is_an_error_not_a_memory_blowup(tmp_path):
    text = json.dumps([{"image": ["x"], "conversations": ["y" * 5000]}, RECORDS[0]])
    got = items(JsonItemsSource(write(tmp_path, "big.json", text[:-2000]), "array", REQUIRED, max_item_bytes=1000))
    assert isinstance(got[0], JsonError)


def test_gzipped_file_reads_whole(tmp_path):
    import gzip

    path = tmp_path / "a.json.gz"
    path.write_bytes(gzip.compress(json.dumps(RECORDS).encode()))
    assert items(JsonItemsSource(str(path), "array", REQUIRED)) == RECORDS
