"""TallyQA readers: the boxed GRIT-style files (jsonl) and the raw ``train.json``/``test.json``."""
from __future__ import annotations

import os
from typing import Literal

import apache_beam as beam
from pydantic import Field

from groundcot.schemas.record import Record, stable_id
from groundcot.transforms.sources.base import Provenance, Source, SourceBase
from groundcot.transforms.sources.common import count_lines, read_json_items, read_lines, require_text, text, unreadable
from groundcot.transforms.sources.jsonstream import JsonError
from groundcot.transforms.sources.viscot import parse_line

SOURCE = "tallyqa"
COUNT_ZERO = "count 0: nothing to box; usable only by styles that need no boxes"
CITATION = ("@inproceedings{acharya2019tallyqa,\n  title={TallyQA: Answering Complex Counting Questions},\n"
            "  author={Acharya, Manoj and Kafle, Kushal and Kanan, Christopher},\n  booktitle={AAAI},\n  year={2019}\n}")
PROVENANCE = Provenance(
    None, "TallyQA: see its release's terms; its images are Visual Genome's and COCO's.", ("TallyQA",),
    (CITATION,))
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


class TallyQAConfig(SourceBase):
    kind: Literal["tallyqa"] = Field(description="TallyQA.")
    format: Literal["boxed", "raw"] = Field("boxed", description="boxed: GRIT-style jsonl with a box per "
                                            "counted object; raw: train.json/test.json (no boxes).")


class TallyQA(Source):
    kind, Config, provenance = SOURCE, TallyQAConfig, PROVENANCE

    def read(self, cfg):
        return ReadTallyQA(cfg)

    def count(self, cfg):
        return count_lines(cfg.path) if cfg.format == "boxed" else None
