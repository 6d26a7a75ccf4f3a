"""Output: Hub-ready Parquet shards, one config per style, rejected records as JSON lines, per-outcome counts.

    OUT/data/<style>/<split>-NNNNN-of-NNNNN.parquet   a style's rows (only its columns), per split
    OUT/rejected/rejected-*.jsonl                     rejected records with their reason
"""
from __future__ import annotations

import json
import math
import re
from functools import partial

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.options.value_provider import StaticValueProvider

from groundcot import prompts
from groundcot.schemas.columns import REJECTED_COLUMNS, TRAIN_COLUMNS, features
from groundcot.schemas.record import Record
from groundcot.transforms.styles import columns_of, in_order, style_names, style_of


def _image(data: bytes | None) -> dict | None:
    return None if data is None else {"bytes": data, "path": None}


def _actions(record: Record) -> list[dict]:
    return [{"kind": a.get("action", "region"), "label": a.get("label"), "bbox_2d": [float(v) for v in a["bbox_2d"]]}
            for a in record.actions]


def to_row(record: Record) -> dict:
    """A written record as a dict with exactly its style's columns (``columns_of``)."""
    row = {
        "id": record.id, "source": record.source, "source_id": record.source_id,
        "dataset": record.dataset, "split": record.split, "question": record.question,
        "answer": record.answer, "image": _image(record.image),
        "image_path": record.image_path, "width": record.width, "height": record.height,
        "gt_boxes": record.gt_boxes, "labels": record.labels,
        "chain": [{"kind": s.kind, "boxes": s.boxes, "depths": s.depths} for s in record.chain],
        "masks": record.masks, "cot": record.cot, "messages": style_of(record).conversation(record), "style": record.style,
        "frame": record.frame, "actions": _actions(record), "crops": [_image(c) for c in record.crops],
        "teacher": record.teacher, "hiou": record.hiou, "critic_score": record.critic_score,
        "critic_reason": record.critic_reason, "depth_map": _image(record.depth_map),
        "depth_image": _image(record.depth_image),
    }
    assert row.keys() == TRAIN_COLUMNS.keys(), "to_row and schemas.columns disagree"
    return {name: row[name] for name in columns_of(record.style)}


def split_name(split: str) -> str:
    """The split a record's row goes to: the source's, as a valid ``datasets`` split name; train if none."""
    return re.sub(r"\W+", "_", split).strip("_") or "train"


def _size(value) -> int:
    """Rough bytes of a row's value (what bounds a row group's memory)."""
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, dict):
        return sum(_size(v) for v in value.values())
    if isinstance(value, list):
        return sum(_size(v) for v in value)
    return 8


class ShardWriter(pq.ParquetWriter):
    """A shard's writer that, when dropped unclosed (its bundle failed), never writes its footer at
    exit: on a full disk that would print 'Exception ignored ... No space left' after the last line."""

    def __del__(self):
        self.is_open = False


class ParquetRowsSink(fileio.FileSink):
    """Rows of one style -> one Parquet file, a row group every ``row_group_size`` rows or ``buffer_mb``
    MB, whichever comes first (small row groups let the Hub's dataset viewer page through image rows)."""

    def __init__(self, style: str, row_group_size: int, buffer_mb: int):
        self.style, self.row_group_size, self.max_bytes = style, row_group_size, buffer_mb << 20
        self.schema = features(columns_of(style)).arrow_schema  # carries the datasets features (Image)
        self._rows, self._bytes, self._writer = [], 0, None

    def open(self, fh) -> None:
        self._writer = ShardWriter(fh, self.schema)
        self._rows, self._bytes = [], 0

    def write(self, row: dict) -> None:
        self._rows.append(row)
        self._bytes += _size(row)
        if len(self._rows) >= self.row_group_size or self._bytes >= self.max_bytes:
            self._write_group()

    def _write_group(self) -> None:
        if self._rows:
            table = pa.Table.from_pylist(self._rows, schema=self.schema)
            try:
                self._writer.write_table(table, row_group_size=len(self._rows))
            except BaseException:
                self._writer = None  # a failed write (a full disk) drops the writer: nothing is retried
                raise
        self._rows, self._bytes = [], 0

    def flush(self) -> None:
        """Called once before the file is closed: the last row group and the footer."""
        if self._writer is not None:
            self._write_group()
            writer, self._writer = self._writer, None
            writer.close()


def shard_name(window, pane, shard_index, total_shards, compression, destination) -> str:
    """``<split>-00000-of-00002.parquet`` (the destination is the split)."""
    return f"{destination}-{shard_index:05d}-of-{total_shards:05d}.parquet"


def to_rejected(record: Record) -> str:
    """A rejected record as one JSON line with exactly the REJECTED_COLUMNS."""
    why = record.rejection
    row = {"id": record.id, "source": record.source, "source_id": record.source_id,
           "dataset": record.dataset, "image_path": record.image_path, "question": record.question,
           "answer": record.answer, "gt_boxes": record.gt_boxes, "cot": record.cot, "style": record.style,
           "stage": why.stage, "reason": why.reason, "detail": why.detail}
    assert row.keys() == REJECTED_COLUMNS.keys(), "to_rejected and schemas.columns disagree"
    row["gt_boxes"] = [[None if isinstance(v, float) and not math.isfinite(v) else v for v in box]
                       for box in row["gt_boxes"] or []]
    return json.dumps(row, ensure_ascii=False, allow_nan=False)  # standard JSON: NaN/Infinity are null


def _sink(style: str, row_group_size: int, buffer_mb: int, destination: str) -> ParquetRowsSink:
    return ParquetRowsSink(style, row_group_size, buffer_mb)


def outcome(record: Record) -> tuple[str, str, str, str]:
    """The counting key: (source, 'written' | 'rejected', reason, style)."""
    if record.rejection is None:
        return record.source, "written", "", record.style
    return record.source, "rejected", record.rejection.reason, record.style


class WriteOutputs(beam.PTransform):
    """Write records to OUT/data/<style>/ (Parquet, per split) and OUT/rejected (JSONL); emit outcome keys.

    ``styles``: the styles the records can have (the job's); a Parquet writer is built for each of them
    only (every registered style when not given). A live record of another style fails the job."""

    def __init__(self, out: str, num_shards: int = 0, row_group_size: int = 256, buffer_mb: int = 32,
                 prompt_texts: dict[str, str] | None = None, styles: list[str] | None = None):
        super().__init__()
        self.out, self.num_shards = out.rstrip("/"), num_shards
        self.row_group_size, self.buffer_mb = row_group_size, buffer_mb
        self.prompt_texts = prompt_texts or {}  # the job's replaced prompts: rows' conversations use them
        self.styles = styles

    def expand(self, records):
        names = style_names() if self.styles is None else tuple(in_order(set(self.styles)))
        parts = records | "Route" >> beam.Partition(
            lambda r, _: len(names) if r.rejection is not None else names.index(r.style), len(names) + 1)
        for style, written in zip(names, parts):
            (written
             | f"ToRow_{style}" >> beam.Map(prompts.Using(self.prompt_texts, to_row))
             | f"WriteParquet_{style}" >> fileio.WriteToFiles(
                 f"{self.out}/data/{style}", file_naming=shard_name,
                 destination=lambda row: split_name(row["split"]),
                 sink=partial(_sink, style, self.row_group_size, self.buffer_mb),
                 shards=self.num_shards or None, temp_directory=StaticValueProvider(str, f"{self.out}/.beam-temp-{style}"),
                 # num_shards > 0: every row goes through the sharded path, so at most that many files per split
                 max_writers_per_bundle=0 if self.num_shards else 20))
        rejected = parts[len(names)]
        (rejected
         | "ToJson" >> beam.Map(to_rejected)
         | "WriteRejected" >> beam.io.WriteToText(f"{self.out}/rejected/rejected",
                                                  file_name_suffix=".jsonl"))
        return (records
                | "Outcome" >> beam.Map(lambda r: ("\t".join(outcome(r)), 1)))
