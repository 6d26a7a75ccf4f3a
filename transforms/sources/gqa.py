"""GQA reader: questions (one huge JSON object) joined with scene graphs by ``imageId``.

Evidence boxes are the scene-graph objects named in ``annotations`` (answer first, then
question, then fullAnswer, each in token order), xywh -> xyxy, labelled with the
object's name. Clipping to the image happens in the image stage.
"""
from __future__ import annotations

import logging
import os
from functools import partial
from typing import Literal, Optional, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from pydantic import Field

from groundcot.schemas.record import Record, stable_id
from groundcot.transforms.sources.base import Provenance, Section, Source, SourceBase
from groundcot.transforms.sources.common import patterns, read_json_items, require_text, text, unreadable
from groundcot.transforms.sources.jsonstream import JsonError

SOURCE = "gqa"
CITATION = ("@inproceedings{hudson2019gqa,\n  title={GQA: A New Dataset for Real-World Visual Reasoning and "
            "Compositional Question Answering},\n  author={Hudson, Drew A. and Manning, Christopher D.},\n"
            "  booktitle={CVPR},\n  year={2019}\n}")
PROVENANCE = Provenance(
    "cc-by-4.0", "GQA questions and scene graphs are CC BY 4.0; its images are Visual Genome's (CC BY 4.0).",
    ("GQA",),
    (CITATION,))
ANNOTATION_ORDER = ("answer", "question", "fullAnswer")
log = logging.getLogger("groundcot")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def slim_graph(file_name: str, offset: int, item):
    """[(imageId, {width, height, objects: {id: [name, x, y, w, h]}})], or [] if unreadable.

    The questions of a graph that cannot be read are rejected later as ``unknown_image_id``;
    the graph's own failure is logged and counted (``read.gqa_scene_graph.<reason>``).
    """
    if isinstance(item, JsonError) or not isinstance(item[1], dict):
        reason = item.reason if isinstance(item, JsonError) else "bad_record"
        log.warning("scene graphs %s at byte %d: %s", os.path.basename(file_name), offset, reason)
        Metrics.counter("groundcot", f"read.gqa_scene_graph.{reason}").inc()
        return []
    image_id, graph = item
    objects = {str(oid): [str(o.get("name") or ""), o["x"], o["y"], o["w"], o["h"]]
               for oid, o in _dict(graph.get("objects")).items()
               if isinstance(o, dict) and all(_number(o.get(k)) for k in ("x", "y", "w", "h"))}
    return [(str(image_id), {"width": graph.get("width"), "height": graph.get("height"), "objects": objects})]


def _token_start(key: str) -> int:
    try:
        return int(key.split(":")[0])
    except ValueError:
        return 1 << 30


def evidence_ids(annotations) -> list[str]:
    """Object ids named in the annotations: answer, question, fullAnswer; token order; no repeats."""
    ids: list[str] = []
    for part in ANNOTATION_ORDER:
        mapping = _dict(_dict(annotations).get(part))
        for key in sorted(mapping, key=_token_start):
            if str(mapping[key]) not in ids:
                ids.append(str(mapping[key]))
    return ids


def keep_question(q: dict, f) -> str | None:
    """The filter a question fails (a reason), or None to keep it."""
    types = _dict(q.get("types"))
    if f.balanced_only and not q.get("isBalanced", False):
        return "not_balanced"
    for kind in ("structural", "semantic", "detailed"):
        wanted = getattr(f, kind)
        if wanted and types.get(kind) not in wanted:
            return f"{kind}_type_not_selected"
    return None


def parse_question(file_name: str, offset: int, item, split: str, filters) -> Record:
    if isinstance(item, JsonError):
        return unreadable(SOURCE, file_name, offset, item)
    qid, q = item
    record = Record(id=stable_id(SOURCE, qid), source=SOURCE, source_id=str(qid), dataset=SOURCE, split=split)
    if not isinstance(q, dict):
        return record.reject("read", "bad_record", f"question {qid}: not an object")
    record.question, record.answer = text(q.get("question")), text(q.get("answer"))
    record.image_path = f"{q.get('imageId')}.jpg"
    record.labels = evidence_ids(q.get("annotations"))  # object ids until joined
    if missing := [k for k in ("imageId", "question", "answer") if k not in q or k == "imageId" and not q[k]]:
        return record.reject("read", "missing_key", f"question {qid}: missing {', '.join(missing)}")
    if require_text(record).rejection:
        return record
    if reason := keep_question(q, filters):
        return record.reject("filter", reason)
    return record


def join_graph(record: Record, graphs: dict) -> Record:
    """Attach size, evidence boxes and labels from the record's scene graph."""
    if record.rejection is not None:
        return record
    image_id = record.image_path[: -len(".jpg")]
    graph = graphs.get(image_id)
    if graph is None:
        return record.reject("read", "unknown_image_id", f"no scene graph for imageId {image_id}")
    width, height = graph.get("width"), graph.get("height")
    if not all(isinstance(v, int) and v > 0 for v in (width, height)):
        return record.reject("read", "bad_size", f"scene graph {image_id}: size {width!r}x{height!r}")
    record.width, record.height = width, height
    ids, boxes, labels = record.labels, [], []
    for oid in ids:
        if oid in graph["objects"]:
            name, x, y, w, h = graph["objects"][oid]
            boxes.append([float(x), float(y), float(x + w), float(y + h)])
            labels.append(name)
    record.gt_boxes, record.labels = boxes, labels
    if not boxes:
        detail = f"annotated objects {ids} not in scene graph {image_id}" if ids else "no annotated objects"
        return record.reject("read", "no_evidence_boxes", detail)
    return record


def split_from_filename(path: str) -> str:
    return os.path.basename(path).split("_")[0]


class ReadGqa(beam.PTransform):
    """Questions streamed and split by byte range; scene graphs slimmed to boxes, joined as a side input."""

    def __init__(self, src):
        super().__init__()
        self.src = src

    def expand(self, pbegin):
        graphs = (read_json_items(pbegin, self.src.scene_graphs, "ReadGraphs", "object", ("objects",))
                  | "SlimGraphs" >> beam.FlatMapTuple(slim_graph))
        split = self.src.split or split_from_filename(patterns(self.src.path)[0])
        return (read_json_items(pbegin, self.src.path, "ReadQuestions", "object", ("imageId", "question"))
                | "Parse" >> beam.MapTuple(partial(parse_question, split=split, filters=self.src.filters))
                | "JoinGraphs" >> beam.Map(join_graph, graphs=beam.pvalue.AsDict(graphs)))


class GqaFilters(Section):
    balanced_only: bool = Field(False, description="Keep only questions with isBalanced.")
    structural: Optional[list[str]] = Field(None, description="Keep only these types.structural (e.g. query, verify).")
    semantic: Optional[list[str]] = Field(None, description="Keep only these types.semantic (e.g. rel, attr).")
    detailed: Optional[list[str]] = Field(None, description="Keep only these types.detailed.")


class GqaConfig(SourceBase):
    kind: Literal["gqa"] = Field(description="GQA questions (`path`) joined with scene graphs.")
    scene_graphs: Union[str, list[str]] = Field(description="`<split>_sceneGraphs.json` file(s).")
    split: Optional[str] = Field(None, description="Split name; default: the questions file's prefix.")
    filters: GqaFilters = GqaFilters()


class Gqa(Source):
    kind, Config, provenance = SOURCE, GqaConfig, PROVENANCE
    path_keys = ("path", "image_root", "scene_graphs")

    def read(self, cfg):
        return ReadGqa(cfg)

    def paths(self, cfg):
        return {"path": patterns(cfg.path), "scene_graphs": patterns(cfg.scene_graphs)}
