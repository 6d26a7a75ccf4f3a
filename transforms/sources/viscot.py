"""VisCoT readers: metadata form (``<ds>_cot_train.jsonl``) and LLaVA form (one JSON array)."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from functools import partial
from typing import Literal, Optional

import apache_beam as beam
from pydantic import Field

from groundcot.schemas.record import Record, stable_id
from groundcot.transforms.sources import flickr30k, gqa
from groundcot.transforms.sources.base import Provenance, Section, Source, SourceBase
from groundcot.transforms.sources.common import (
    count_lines,
    decode_line,
    read_json_items,
    read_lines,
    require_text,
    select_dataset,
    text,
    unreadable,
)
from groundcot.transforms.sources.jsonstream import BadEncoding, JsonError, check_text

CITATION = ("@inproceedings{shao2024visualcot,\n  title={Visual CoT: Advancing Multi-Modal Language Models with a "
            "Comprehensive Dataset and Benchmark for Chain-of-Thought Reasoning},\n  author={Shao, Hao and Qian, "
            "Shengju and Xiao, Han and Song, Guanglu and Zong, Zhuofan and Wang, Letian and Liu, Yu and Li, "
            "Hongsheng},\n  booktitle={NeurIPS Datasets and Benchmarks Track},\n  year={2024}\n}")
PROVENANCE = Provenance(
    None, ("Visual-CoT: its code is Apache-2.0, and its README states that the data is intended solely for research "
           "and reproducibility (any deployed use, commercial or otherwise, is out of scope); the images come from "
           "the datasets Visual-CoT was built on, each under its own terms."),
    ("deepcs233/Visual-CoT",),
    (CITATION,))
# Sub-datasets (the `dataset` column) that are sources of their own: cited, and their terms noted when restrictive.
MIXED_IN = {"gqa": gqa.PROVENANCE, "flickr30k": flickr30k.PROVENANCE}
REQUIRED = ("question", "answer", "image", "width", "height", "bboxs")
SUFFIX = "Please provide the bounding box coordinate of the region that can help you answer the question better."


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _boxes(value) -> list[list[float]] | None:
    if not isinstance(value, list):
        return None
    if not all(isinstance(b, list) and len(b) == 4 and all(map(_number, b)) for b in value):
        return None
    return [[float(v) for v in b] for b in value]


def _dataset_from_filename(filename: str) -> str:
    return os.path.basename(filename).split("_cot_")[0]


# --- metadata form ---------------------------------------------------------------------

def _json_line(line: str | bytes):
    """The JSON value of one line (bytes as read, or text); a leading byte order mark is skipped."""
    line = decode_line(line) if isinstance(line, bytes) else line.removeprefix("\ufeff")
    value = json.loads(line)
    check_text(value, line)
    return value


def parse_line(filename: str, line: str | bytes, source: str = "viscot",
               no_box_detail: str = "bboxs is empty", offset: int | None = None) -> Record:
    """One metadata line (at byte ``offset`` of its file) -> a Record, rejected with a reason when malformed."""
    name = os.path.basename(filename)
    where = name if offset is None else f"{name}@{offset}"
    bad = Record(id=stable_id(source, name, offset, line), source=source, source_id=where,
                 dataset=_dataset_from_filename(filename))
    try:
        raw = _json_line(line)
    except BadEncoding as err:
        return bad.reject("read", "bad_encoding", f"{where}: {err}")
    except json.JSONDecodeError as err:
        return bad.reject("read", "bad_json", f"{where}: {err.msg} at column {err.colno}")
    if not isinstance(raw, dict):
        return bad.reject("read", "bad_json", f"{where}: line is not a JSON object")
    if missing := [k for k in REQUIRED if k not in raw]:
        return bad.reject("read", "missing_key", f"{where}: missing {', '.join(missing)}")
    width, height, boxes = raw["width"], raw["height"], _boxes(raw["bboxs"])
    key = (raw.get("dataset"), raw["image"], raw["question"], raw["answer"], raw["bboxs"])
    record = Record(
        id=stable_id(source, *key), source=source, source_id="", split=str(raw.get("split") or ""),
        dataset=str(raw.get("dataset") or _dataset_from_filename(filename)),
        question=text(raw["question"]), answer=text(raw["answer"]),
        image_path=str(raw["image"]), width=0, height=0, gt_boxes=boxes or [])
    record.source_id = f"{name}#{record.id.rsplit('-', 1)[1][:8]}"
    if require_text(record).rejection:
        return record
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        return record.reject("read", "bad_size", f"width/height must be positive integers, got {width!r}x{height!r}")
    record.width, record.height = width, height
    if boxes is None:
        return record.reject("read", "bad_boxes", f"bboxs must be a list of [x1, y1, x2, y2], got {raw['bboxs']!r}"[:200])
    if not boxes:
        return record.reject("read", "no_boxes", no_box_detail)
    return record


class ReadVisCoT(beam.PTransform):
    """Metadata files (one JSON object per line) into Records."""

    def __init__(self, src):
        super().__init__()
        self.src = src

    def expand(self, pbegin):
        f = self.src.filters
        return (read_lines(pbegin, self.src.path, "ReadLines")
                | "Parse" >> beam.MapTuple(lambda name, offset, line: parse_line(name, line, offset=offset))
                | "SelectDatasets" >> beam.Map(select_dataset, f.datasets, f.exclude_datasets))


# --- LLaVA form ------------------------------------------------------------------------

def _question(text: str) -> str:
    text = text.replace("<image>", "").strip()
    return text[: -len(SUFFIX)].strip() if text.endswith(SUFFIX) else text


def _pixel_box(image_field) -> list[float] | None:
    """The ``###[x1, y1, x2, y2]`` pixel box of the image list, if there is a usable one."""
    for entry in image_field if isinstance(image_field, list) else []:
        if isinstance(entry, str) and "###" in entry:
            try:
                box = json.loads(entry.split("###", 1)[1])
            except json.JSONDecodeError:
                return None
            return [float(v) for v in box] if isinstance(box, list) and len(box) == 4 and all(map(_number, box)) else None
    return None


def image_path(path: str, prefix: str, path_map: dict[str, str]) -> str:
    """``cot/<ds>/<file>`` -> path under the image root: drop ``prefix``, apply renames."""
    path = path.split("###", 1)[0]
    if prefix and path.startswith(prefix):
        path = path[len(prefix):]
    for old, new in path_map.items():
        if path.startswith(old):
            return new + path[len(old):]
    return path


def parse_llava(file_name: str, offset: int, item, prefix: str = "cot/",
                path_map: dict[str, str] | None = None) -> Record:
    """One LLaVA-form record -> a Record; the pixel box is preferred over the normalised one."""
    if isinstance(item, JsonError):
        return unreadable("viscot_llava", file_name, offset, item)
    name = os.path.basename(file_name)
    bad = Record(id=stable_id("viscot_llava", name, offset), source="viscot_llava", source_id=f"{name}@{offset}")
    if not isinstance(item, dict):
        return bad.reject("read", "bad_record", f"{name}@{offset}: not an object")
    images, turns = item.get("image"), item.get("conversations")
    if not (isinstance(images, list) and images and isinstance(images[0], str)
            and isinstance(turns, list) and len(turns) >= 4
            and all(isinstance(t, dict) and isinstance(t.get("value"), str) for t in turns[:4])):
        return bad.reject("read", "missing_key", f"{name}@{offset}: needs image [..] and 4 conversation turns")
    dataset, qid = str(item.get("dataset", "")), item.get("question_id", offset)
    record = Record(id=stable_id("viscot_llava", dataset, qid, images[0]), source="viscot_llava",
                    source_id=str(qid), dataset=dataset, split=str(item.get("split") or ""),
                    question=_question(turns[0]["value"]), answer=turns[3]["value"].strip(),
                    image_path=image_path(images[0], prefix, path_map or {}))
    if require_text(record).rejection:
        return record
    pixel = _pixel_box(images)
    if pixel is not None:
        record.gt_boxes = [pixel]
        return record
    try:
        square = json.loads(turns[1]["value"])
    except json.JSONDecodeError:
        square = None
    if isinstance(square, list) and len(square) == 4 and all(_number(v) and 0 <= v <= 1 for v in square):
        record.square_boxes = [[float(v) for v in square]]  # pixels once the image size is known
        return record
    return record.reject("read", "no_boxes", "neither a ###[..] pixel box nor a normalised box in turn 2")


class ReadVisCoTLlava(beam.PTransform):
    """``viscot_363k.json`` / benchmark ``<ds>.json`` (one JSON array), streamed and split."""

    def __init__(self, src):
        super().__init__()
        self.src = src

    def expand(self, pbegin):
        f = self.src.filters
        parse = partial(parse_llava, prefix=self.src.image_prefix, path_map=self.src.path_map)
        return (read_json_items(pbegin, self.src.path, "ReadJson", "array", ("image", "conversations"))
                | "Parse" >> beam.MapTuple(parse)
                | "SelectDatasets" >> beam.Map(select_dataset, f.datasets, f.exclude_datasets))


# --- the two source kinds ----------------------------------------------------------------

class DatasetFilters(Section):
    datasets: Optional[list[str]] = Field(None, description="Keep only these sub-datasets.")
    exclude_datasets: list[str] = Field(default_factory=list, description="Drop these sub-datasets "
                                        "(SIF-50K dropped the document sets).")


class VisCoTConfig(SourceBase):
    kind: Literal["viscot"] = Field(description="VisCoT metadata files `<ds>_cot_train.jsonl`.")
    filters: DatasetFilters = DatasetFilters()


class VisCoTLlavaConfig(SourceBase):
    kind: Literal["viscot_llava"] = Field(description="VisCoT LLaVA form: `viscot_363k.json`, benchmark `<ds>.json`.")
    image_prefix: str = Field("cot/", description="Dropped from the record's image path before image_root.")
    path_map: dict[str, str] = Field(default_factory=dict, description="Image path prefix renames, e.g. "
                                     "`{textcap/: textvqa/}` (textcap images live under textvqa).")
    filters: DatasetFilters = DatasetFilters()


class VisCoT(Source):
    kind, Config, provenance = "viscot", VisCoTConfig, PROVENANCE

    def read(self, cfg):
        return ReadVisCoT(cfg)

    def count(self, cfg):
        return count_lines(cfg.path)

    def card(self, cfg, datasets_seen):
        mixed = [MIXED_IN[d] for d in sorted(datasets_seen) if d in MIXED_IN]
        return replace(PROVENANCE, citations=PROVENANCE.citations + tuple(c for p in mixed for c in p.citations),
                       restricted=tuple(p.terms for p in mixed if p.license is None))


class VisCoTLlava(VisCoT):
    kind, Config = "viscot_llava", VisCoTLlavaConfig

    def read(self, cfg):
        return ReadVisCoTLlava(cfg)

    def count(self, cfg):
        return None
