"""TallyQA readers: the boxed GRIT-style files (jsonl) and the raw ``train.json``/``test.json``."""
from __future__ import annotations

import os

import apache_beam as beam

from groundcot.schemas.record import Record, stable_id
from groundcot.transforms.jsonstream import JsonError
from groundcot.transforms.sources import read_json_items, read_lines, require_text, text, unreadable
from groundcot.transforms.viscot import parse_line

SOURCE = "tallyqa"
COUNT_ZERO = "count 0: nothing to box; usable only by styles that need no boxes"
RAW_NO_BOXES = "raw TallyQA has no boxes: usable only by styles that need none (use the boxed GRIT files for sif)"


def parse_boxed(file_name: str, line: str | bytes, offset: int | None = None) -> Record:
    """A GRIT-style line: VisCoT metadata layout, one box per counted object."""
    return parse_line(file_name, line, source=SOURCE, no_box_detail=COUNT_ZERO, offset=offset)


def parse_raw(file_name: str, offset: int, item) -> Record:
    """A raw TallyQA question: kept for its text, rejected for sif because it has no boxes."""
    if isinstance(item, JsonError):
        return unreadable(SOURCE, file_name, offset, item)
    name = os.path.basename(file_name)
    if not isinstance(item, dict):
        record = Record(id=stable_id(SOURCE, name, offset), source=SOURCE, source_id=f"{name}@{offset}")
        return record.reject("read", "bad_record", f"{name}@{offset}: not an object")
    qid = item.get("question_id", offset)
    record = Record(id=stable_id(SOURCE, "raw", qid, item.get("image")), source=SOURCE, source_id=str(qid),
                    dataset=str(item.get("data_source") or ""), split=name.split(".")[0],
                    question=text(item.get("question")), answer=text(item.get("answer")),
                    image_path=str(item.get("image") or ""))
    if require_text(record).rejection:
        return record
    return record.reject("read", "no_boxes", RAW_NO_BOXES)


class ReadTallyQA(beam.PTransform):
    def __init__(self, src):
        super().__init__()
        self.src = src

    def expand(self, pbegin):
        if self.src.format == "raw":
            return (read_json_items(pbegin, self.src.path, "ReadJson", "array", ("question", "image"))
                    | "Parse" >> beam.MapTuple(parse_raw))
        return (read_lines(pbegin, self.src.path, "ReadLines")
                | "Parse" >> beam.MapTuple(lambda name, offset, line: parse_boxed(name, line, offset)))
