"""VisCoT metadata reader: ``<ds>_cot_train.jsonl``, one object per line, pixel boxes."""
from __future__ import annotations

import json
import os

import apache_beam as beam

from schemas.record import Record, stable_id

SOURCE = "viscot"
REQUIRED = ("question", "answer", "image", "width", "height", "bboxs")


def _boxes(value) -> list[list[float]] | None:
    if not isinstance(value, list):
        return None
    boxes = []
    for box in value:
        if not (isinstance(box, list) and len(box) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
            return None
        boxes.append([float(v) for v in box])
    return boxes


def _dataset_from_filename(filename: str) -> str:
    return os.path.basename(filename).split("_cot_")[0]


def parse_line(filename: str, line: str) -> Record:
    """One metadata line -> a Record (rejected with a reason when malformed)."""
    name = os.path.basename(filename)
    bad = Record(stable_id(SOURCE, name, line), SOURCE, name, _dataset_from_filename(filename),
                 "", "", "", "", 0, 0, [])
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as err:
        return bad.reject("read", "bad_json", f"{name}: {err.msg} at column {err.colno}")
    if not isinstance(raw, dict):
        return bad.reject("read", "bad_json", f"{name}: line is not a JSON object")
    if missing := [k for k in REQUIRED if k not in raw]:
        return bad.reject("read", "missing_key", f"{name}: missing {', '.join(missing)}")
    width, height, boxes = raw["width"], raw["height"], _boxes(raw["bboxs"])
    key = (raw.get("dataset"), raw["image"], raw["question"], raw["answer"], raw["bboxs"])
    record = Record(
        id=stable_id(SOURCE, *key), source=SOURCE, source_id="", split=str(raw.get("split", "")),
        dataset=str(raw.get("dataset") or _dataset_from_filename(filename)),
        question=str(raw["question"]).strip(), answer=str(raw["answer"]).strip(),
        image_path=str(raw["image"]), width=0, height=0, gt_boxes=boxes or [])
    record.source_id = f"{name}#{record.id.rsplit('-', 1)[1][:8]}"
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        return record.reject("read", "bad_size", f"width/height must be positive integers, got {width!r}x{height!r}")
    record.width, record.height = width, height
    if boxes is None:
        return record.reject("read", "bad_boxes", f"bboxs must be a list of [x1, y1, x2, y2], got {raw['bboxs']!r}"[:200])
    if not boxes:
        return record.reject("read", "no_boxes", "bboxs is empty")
    return record


class ReadVisCoT(beam.PTransform):
    """Read one or more metadata files (a glob) into Records."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def expand(self, pbegin):
        return (pbegin
                | "ReadLines" >> beam.io.ReadFromTextWithFilename(self.path)
                | "SkipBlank" >> beam.Filter(lambda kv: kv[1].strip() != "")
                | "Parse" >> beam.MapTuple(parse_line))
