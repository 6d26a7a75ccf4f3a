"""What every reader shares: file patterns, line and JSON-stream reading, text checks,
filter marks and duplicate removal."""
from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.io.filebasedsource import FileBasedSource
from apache_beam.io.filesystems import FileSystems

from groundcot.schemas.record import Record, stable_id
from groundcot.transforms.sources.base import patterns
from groundcot.transforms.sources.jsonstream import BOM, BadEncoding, JsonError, JsonItemsSource


def local_files(path: str | list[str]) -> list[str] | None:
    """The files the patterns match, or None when one pattern or file is a bucket URL (not read to count)."""
    if any("://" in p for p in patterns(path)):
        return None
    files = [m.path for p in patterns(path) for m in FileSystems.match([p])[0].metadata_list]
    return None if any("://" in f for f in files) else files


def count_lines(path: str | list[str]) -> int | None:
    """Non-blank lines of the local files ``path`` matches; None for buckets."""
    files = local_files(path)
    if files is None:
        return None
    lines = 0
    for name in files:
        with open(name, "rb") as handle:
            lines += sum(1 for line in handle if line.strip())
    return lines


def read_each(pbegin, paths, label: str, make_read):
    """Apply ``make_read(pattern)`` to every pattern and flatten the results."""
    parts = [pbegin | f"{label}{i}" >> make_read(p) for i, p in enumerate(patterns(paths))]
    return parts[0] if len(parts) == 1 else parts | f"{label}Merge" >> beam.Flatten()


def read_json_items(pbegin, paths, label: str, container: str, required: tuple[str, ...]):
    """(file_name, offset, item) for every item of huge JSON documents, split by byte range."""
    return read_each(pbegin, paths, label,
                     lambda p: beam.io.Read(JsonItemsSource(p, container, required)))


class LinesSource(FileBasedSource):
    """Lines of text files as raw bytes, with the byte offset where each starts.

    Decoding is the reader's job, so one undecodable line is one rejected record, not a
    failed job. A line belongs to the range its first byte is in.
    """

    def read_records(self, file_name, range_tracker):
        start = offset = range_tracker.start_position()
        with self.open_file(file_name) as handle:
            if start:
                handle.seek(start - 1)
                offset = start - 1 + len(handle.readline())  # finish the line the range before owns
            while range_tracker.try_claim(offset):
                line = handle.readline()
                if not line:
                    return
                yield file_name, offset, line
                offset += len(line)


def read_lines(pbegin, paths, label: str):
    """(file_name, offset, bytes) for every non-blank line of text files, split by byte range."""
    return (read_each(pbegin, paths, label, lambda p: beam.io.Read(LinesSource(p)))
            | f"{label}SkipBlank" >> beam.Filter(lambda item: item[2].removeprefix(BOM).strip() != b""))


def decode_line(line: bytes) -> str:
    """A line as text, without a leading byte order mark or the line end; BadEncoding if not UTF-8."""
    line = line.removeprefix(BOM).rstrip(b"\r\n")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadEncoding(f"not UTF-8: byte 0x{line[err.start]:02x} at column {err.start + 1}") from None


def text(value) -> str:
    """A question or answer as text: strings stripped, numbers as written, "" for null or anything else."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def require_text(record: Record) -> Record:
    """Reject a record whose question or answer is empty, blank or null (never written as "None")."""
    if record.rejection is None:
        for field in ("question", "answer"):
            if not getattr(record, field).strip():
                return record.reject("read", f"empty_{field}", f"{record.source_id}: the {field} is empty, "
                                                              "blank, null or not text")
    return record


def keep_first(record_id: str, records) -> list[Record]:
    """Records sharing one id: the first (in a fixed order) kept, the others rejected as ``duplicate``."""
    ordered = sorted(records, key=lambda r: (r.source_id, r.question, r.answer, r.image_path, repr(r.gt_boxes)))
    for copy in ordered[1:]:
        copy.reject("read", "duplicate", f"{copy.source_id}: same id {record_id} as {ordered[0].source_id}, "
                                         "written once")
    return ordered


class DropDuplicates(beam.PTransform):
    """One record per id goes on; its copies are rejected as ``duplicate``, so counts still add up."""

    def expand(self, records):
        fresh, rejected = records | "Split" >> beam.Partition(lambda r, _: int(r.rejection is not None), 2)
        kept = (fresh
                | "ById" >> beam.Map(lambda r: (r.id, r))
                | "Group" >> beam.GroupByKey()
                | "KeepFirst" >> beam.FlatMapTuple(keep_first))
        return (kept, rejected) | "Merge" >> beam.Flatten()


def unreadable(source: str, file_name: str, offset: int, error: JsonError) -> Record:
    """A rejected record standing for input that could not be parsed."""
    name = os.path.basename(file_name)
    record = Record(id=stable_id(source, name, offset), source=source, source_id=f"{name}@{offset}")
    return record.reject("read", error.reason, f"{name}: {error.detail}")


def select_dataset(record: Record, include: list[str] | None, exclude: list[str]) -> Record:
    """Mark records of sub-datasets not selected as filtered (counted, not rejected)."""
    if record.rejection is None and (record.dataset in exclude or (include and record.dataset not in include)):
        record.reject("filter", "dataset_not_selected", record.dataset)
    return record
