"""Your own grounded-VQA data: JSON lines, a JSON array or Parquet, fields named by a mapping.

Each row gives an image (a path under ``image_root``, raw bytes, or a Hugging Face Image struct
``{bytes, path}``), a question, an answer and its evidence boxes in ``box_format``: pixel
``xyxy``, pixel ``xywh`` or ``xyxy_norm`` (0..1 of the image, turned into pixels once the image
stage knows its size). The ``card`` block is all the dataset card says of the data's origin.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import partial
from typing import Literal, Optional

import apache_beam as beam
from apache_beam.io.fileio import MatchFiles
from pydantic import Field

from groundcot.schemas.record import Record, stable_id
from groundcot.transforms.sources.base import Provenance, Section, Source, SourceBase, patterns
from groundcot.transforms.sources.common import (
    count_lines,
    decode_line,
    local_files,
    read_json_items,
    read_lines,
    require_text,
    text,
    unreadable,
)
from groundcot.transforms.sources.jsonstream import BadEncoding, JsonError, check_text

SOURCE = "grounded"
FORMATS = {".parquet": "parquet", ".json": "json"}  # anything else: JSON lines


class Fields(Section):
    image: str = Field("image", description="Image: a path under image_root, bytes, or an Image struct {bytes, path}.")
    question: str = Field("question", description="Question text.")
    answer: str = Field("answer", description="Answer text.")
    boxes: str = Field("boxes", description="Evidence boxes: a list of 4-number boxes (or one box) in box_format.")
    labels: str = Field("labels", description="Optional: one label per box.")
    split: str = Field("split", description="Optional: the row's split (default: the source's split).")
    dataset: str = Field("dataset", description="Optional: the row's sub-dataset (default: the source's dataset).")
    id: str = Field("id", description="Optional: the row's own id, kept as source_id.")


class Card(Section):
    license: Optional[str] = Field(description="Hub licence id of the data (e.g. cc-by-4.0); null when its terms "
                                               "are no standard licence (the card then says `other`).")
    name: str = Field(description="The data's name, as the card's License section and counts call it.")
    source_datasets: list[str] = Field(default_factory=list, description="Hub ids or names the card's "
                                       "source_datasets lists (default: name).")
    citation: Optional[str] = Field(None, description="BibTeX entry the card cites.")
    description: str = Field("", description="The terms in a sentence (default: `<name>: <license>`).")


class GroundedConfig(SourceBase):
    kind: Literal["grounded"] = Field(description="Your own grounded-VQA data (JSONL, JSON array or Parquet).")
    format: Literal["auto", "jsonl", "json", "parquet"] = Field(
        "auto", description="auto: by each pattern's extension (.parquet, .json, else JSON lines).")
    fields: Fields = Fields()
    box_format: Literal["xyxy", "xywh", "xyxy_norm"] = Field(
        "xyxy", description="xyxy / xywh: pixels of the upright image; xyxy_norm: 0..1 of its width and height.")
    split: str = Field("", description="Split of rows that name none (empty: train).")
    dataset: str = Field("grounded", description="Sub-dataset of rows that name none.")
    card: Card = Field(description="Provenance for the dataset card: license, name, source_datasets, citation.")


def file_format(cfg: GroundedConfig, pattern: str) -> str:
    return cfg.format if cfg.format != "auto" else FORMATS.get(os.path.splitext(pattern)[1].lower(), "jsonl")


# --- one row -> one Record ----------------------------------------------------------------------

def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def boxes_of(value, box_format: str) -> list[list[float]] | None:
    """Boxes as ``[x1, y1, x2, y2]`` (normalised for xyxy_norm), or None when malformed."""
    if isinstance(value, list) and len(value) == 4 and all(map(_number, value)):
        value = [value]  # one box
    if not isinstance(value, list) or not all(
            isinstance(b, list) and len(b) == 4 and all(map(_number, b)) for b in value):
        return None
    boxes = [[float(v) for v in b] for b in value]
    if box_format == "xywh":
        return [[x, y, x + w, y + h] for x, y, w, h in boxes]
    if box_format == "xyxy_norm" and not all(0 <= v <= 1 for b in boxes for v in b):
        return None
    return boxes


def image_of(value) -> tuple[str, bytes | None] | None:
    """(path, bytes or None) of an image field, or None when it names no image."""
    if isinstance(value, dict):  # Hugging Face Image struct
        data, path = value.get("bytes"), value.get("path")
        if isinstance(data, (bytes, bytearray)) and data:  # the path only names it: no folder shown anywhere
            return os.path.basename(str(path or "")), bytes(data)
        value = path
    if isinstance(value, (bytes, bytearray)) and value:
        return "", bytes(value)
    if isinstance(value, str) and value.strip():
        return value.strip(), None
    return None


def parse_row(where: str, row, cfg: GroundedConfig) -> Record:
    """One row (``where`` names its place) -> a Record, rejected with a reason when malformed."""
    f = cfg.fields
    bad = Record(id=stable_id(SOURCE, where), source=SOURCE, source_id=where, dataset=cfg.dataset, split=cfg.split)
    if not isinstance(row, dict):
        return bad.reject("read", "bad_record", f"{where}: not an object")
    if missing := [k for k in (f.image, f.question, f.answer, f.boxes) if row.get(k) is None]:
        return bad.reject("read", "missing_key", f"{where}: missing {', '.join(missing)}")
    image, raw_boxes = image_of(row[f.image]), row[f.boxes]
    path, data = image or ("", None)
    dataset, split = text(row.get(f.dataset)) or cfg.dataset, text(row.get(f.split)) or cfg.split
    key = (dataset, hashlib.sha1(data).hexdigest() if data else path, row[f.question], row[f.answer], raw_boxes)
    record = Record(id=stable_id(SOURCE, *key), source=SOURCE, source_id=text(row.get(f.id)), dataset=dataset,
                    split=split, question=text(row[f.question]), answer=text(row[f.answer]),
                    image_path=path, image=data)
    record.source_id = record.source_id or f"{where.split('@')[0]}#{record.id.rsplit('-', 1)[1][:8]}"
    if require_text(record).rejection:
        return record
    if image is None:
        return record.reject("read", "bad_image", f"{where}: {f.image} is not a path, bytes or {{bytes, path}}")
    boxes = boxes_of(raw_boxes, cfg.box_format)
    if boxes is None:
        return record.reject("read", "bad_boxes", f"{where}: {f.boxes} must be {cfg.box_format} boxes "
                                                  f"[a, b, c, d], got {raw_boxes!r}"[:300])
    if not boxes:
        return record.reject("read", "no_boxes", f"{where}: {f.boxes} is empty")
    if cfg.box_format == "xyxy_norm":
        record.norm_boxes = boxes  # pixels once the image size is known
    else:
        record.gt_boxes = boxes
    labels = row.get(f.labels)
    if isinstance(labels, list) and len(labels) == len(boxes) and all(isinstance(x, str) for x in labels):
        record.labels = labels
    return record


def parse_line(file_name: str, offset: int, line: bytes, cfg: GroundedConfig) -> Record:
    where = f"{os.path.basename(file_name)}@{offset}"
    try:
        value = json.loads(decode_line(line))
        check_text(value, line)
    except BadEncoding as err:
        return unreadable(SOURCE, file_name, offset, JsonError("bad_encoding", str(err)))
    except json.JSONDecodeError as err:
        return unreadable(SOURCE, file_name, offset, JsonError("bad_json", f"{err.msg} at column {err.colno}"))
    return parse_row(where, value, cfg)


def parse_item(file_name: str, offset: int, item, cfg: GroundedConfig) -> Record:
    if isinstance(item, JsonError):
        return unreadable(SOURCE, file_name, offset, item)
    return parse_row(f"{os.path.basename(file_name)}@{offset}", item, cfg)


def parquet_rows(file_name: str, columns: list[str]):
    """(file_name, row number, row) of one Parquet file, a record batch at a time (a file is one task);
    a file that cannot be read is one ``bad_parquet`` item at the row where reading stopped."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    n = 0
    try:
        with FileSystems.open(file_name) as handle:
            pf = pq.ParquetFile(handle)
            wanted = [c for c in columns if c in pf.schema_arrow.names]
            for batch in pf.iter_batches(batch_size=256, columns=wanted):
                for row in batch.to_pylist():
                    yield file_name, n, row
                    n += 1
    except (pa.ArrowException, OSError) as err:
        yield file_name, n, JsonError("bad_parquet", f"row {n}: {type(err).__name__}: {err}"[:300])


class ReadGrounded(beam.PTransform):
    """Every pattern read in its format; every row a Record or a rejection saying why."""

    def __init__(self, src: GroundedConfig):
        super().__init__()
        self.src = src

    def expand(self, pbegin):
        src, parts = self.src, []
        for i, pattern in enumerate(patterns(src.path)):
            fmt, label = file_format(src, pattern), f"P{i}"
            if fmt == "parquet":
                columns = list(src.fields.model_dump().values())
                items = (pbegin
                         | f"{label}Match" >> MatchFiles(pattern)
                         | f"{label}Names" >> beam.Map(lambda m: m.path)
                         | f"{label}Spread" >> beam.Reshuffle()
                         | f"{label}Rows" >> beam.FlatMap(parquet_rows, columns))
                parse = partial(parse_item, cfg=src)
            elif fmt == "json":
                f = src.fields
                items = read_json_items(pbegin, pattern, f"{label}Json", "array", (f.question, f.answer))
                parse = partial(parse_item, cfg=src)
            else:
                items = read_lines(pbegin, pattern, f"{label}Lines")
                parse = partial(parse_line, cfg=src)
            parts.append(items | f"{label}Parse" >> beam.MapTuple(parse))
        return parts[0] if len(parts) == 1 else parts | "Merge" >> beam.Flatten()


# --- the source ---------------------------------------------------------------------------------

def parquet_rows_count(path: str) -> int | None:
    import pyarrow.parquet as pq

    files = local_files(path)
    return None if files is None else sum(pq.ParquetFile(name).metadata.num_rows for name in files)


class Grounded(Source):
    kind, Config = SOURCE, GroundedConfig

    def read(self, cfg):
        return ReadGrounded(cfg)

    def count(self, cfg):
        total = 0
        for pattern in patterns(cfg.path):
            fmt = file_format(cfg, pattern)
            n = None if fmt == "json" else (parquet_rows_count if fmt == "parquet" else count_lines)(pattern)
            if n is None:
                return None
            total += n
        return total

    def card(self, cfg, datasets_seen):
        c = cfg.card
        return Provenance(c.license, f"{c.name}: {c.description or (c.license or 'see its terms')}",
                          tuple(c.source_datasets) or (c.name,), (c.citation,) if c.citation else ())
