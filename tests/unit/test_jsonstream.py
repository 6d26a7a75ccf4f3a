import json

import pytest
from apache_beam.io import source_test_utils as stu

from groundcot.transforms.sources.jsonstream import JsonError, JsonItemsSource

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


def write_bytes(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("container", ["array", "object"])
def test_a_bad_byte_is_one_bad_encoding_item_and_reading_goes_on(tmp_path, container):
    good = [{"image": [f"{i}.jpg"], "conversations": [], "q": "café"} for i in range(6)]
    parts = [json.dumps(r, ensure_ascii=False).encode() for r in good]
    parts[2] = parts[2].replace("café".encode(), b"caf\xe9")  # latin-1, not UTF-8
    parts[4] = parts[4].replace("café".encode(), b"\\ud800")  # a lone surrogate escape
    if container == "array":
        data = b"[" + b",\n".join(parts) + b"]"
    else:
        data = b"{" + b",\n".join(b'"%d": ' % i + p for i, p in enumerate(parts)) + b"}"
    source = JsonItemsSource(write_bytes(tmp_path, "a.json", data), container, REQUIRED)
    got = [(offset, item) for _, offset, item in stu.read_from_source(source)]
    errors = [(offset, item) for offset, item in got if isinstance(item, JsonError)]
    assert [e.reason for _, e in errors] == ["bad_encoding", "bad_encoding"]
    assert "0xe9" in errors[0][1].detail and f"at byte {errors[0][0]}" in errors[0][1].detail
    assert "\\u escape" in errors[1][1].detail
    kept = [item if container == "array" else item[1] for _, item in got if not isinstance(item, JsonError)]
    assert kept == [good[i] for i in (0, 1, 3, 5)]
    splits = [(s.source, s.start_position, s.stop_position) for s in source.split(desired_bundle_size=60)]
    stu.assert_sources_equal_reference_source((source, None, None), splits)


def test_a_byte_order_mark_is_skipped(tmp_path):
    data = b"\xef\xbb\xbf" + json.dumps(RECORDS[:3]).encode()
    assert items(JsonItemsSource(write_bytes(tmp_path, "a.json", data), "array", REQUIRED)) == RECORDS[:3]
    obj = {"1": {"imageId": "1", "question": "q"}}
    data = b"\xef\xbb\xbf\n" + json.dumps(obj).encode()
    source = JsonItemsSource(write_bytes(tmp_path, "q.json", data), "object", ("imageId", "question"))
    assert [tuple(kv) for kv in items(source)] == list(obj.items())


def test_lines_keep_their_bytes_and_offsets_across_any_split(tmp_path):
    from groundcot.transforms.sources.common import LinesSource

    lines = [b"\xef\xbb\xbf{\"a\": 1}\n", b"caf\xe9\n", b"\n", b"{\"b\": \"\xc3\xa9\"}\r\n", b"last without newline"]
    path = write_bytes(tmp_path, "a.jsonl", b"".join(lines))
    source = LinesSource(path)
    got = [(offset, line) for _, offset, line in stu.read_from_source(source)]
    starts = [sum(map(len, lines[:i])) for i in range(len(lines))]
    assert got == list(zip(starts, lines))
    splits = [(s.source, s.start_position, s.stop_position) for s in source.split(desired_bundle_size=7)]
    assert len(splits) > 3
    stu.assert_sources_equal_reference_source((source, None, None), splits)
    stu.assert_split_at_fraction_exhaustive(source)
