"""Output: Hub-ready Parquet shards, rejected records as JSON lines, per-outcome counts."""
from __future__ import annotations

import json

import apache_beam as beam

from groundcot.schemas.columns import REJECTED_COLUMNS, TRAIN_COLUMNS, features
from groundcot.schemas.record import Record
from groundcot.transforms.styles import style_of


def _image(data: bytes | None) -> dict | None:
    return None if data is None else {"bytes": data, "path": None}


def _actions(record: Record) -> list[dict]:
    return [{"kind": a.get("action", "region"), "label": a.get("label"), "bbox_2d": [float(v) for v in a["bbox_2d"]]}
            for a in record.actions]


def to_row(record: Record) -> dict:
    """A written record as a dict with exactly the TRAIN_COLUMNS."""
    row = {
        "id": record.id, "source": record.source, "source_id": record.source_id,
        "dataset": record.dataset, "split": record.split, "question": record.question,
        "answer": record.answer, "image": _image(record.image),
        "image_path": record.image_path, "width": record.width, "height": record.height,
        "gt_boxes": record.gt_boxes, "labels": record.labels,
        "chain": [{"kind": s.kind, "boxes": s.boxes, "depths": s.depths} for s in record.chain],
        "masks": record.masks, "cot": record.cot, "messages": style_of(record).conversation(record), "style": record.style,
        "frame": record.frame, "actions": _actions(record), "crops": [_image(c) for c in record.crops],
        "teacher": record.teacher, "hiou": record.hiou, "depth_map": _image(record.depth_map),
    }
    assert row.keys() == TRAIN_COLUMNS.keys(), "to_row and schemas.columns disagree"
    return row


def to_rejected(record: Record) -> str:
    """A rejected record as one JSON line with exactly the REJECTED_COLUMNS."""
    why = record.rejection
    row = {"id": record.id, "source": record.source, "source_id": record.source_id,
           "dataset": record.dataset, "image_path": record.image_path, "question": record.question,
           "answer": record.answer, "gt_boxes": record.gt_boxes, "cot": record.cot, "style": record.style,
           "stage": why.stage, "reason": why.reason, "detail": why.detail}
    assert row.keys() == REJECTED_COLUMNS.keys(), "to_rejected and schemas.columns disagree"
    return json.dumps(row, ensure_ascii=False)


def outcome(record: Record) -> tuple[str, str, str, str]:
    """The counting key: (source, 'written' | 'rejected', reason, style)."""
    if record.rejection is None:
        return record.source, "written", "", record.style
    return record.source, "rejected", record.rejection.reason, record.style


class WriteOutputs(beam.PTransform):
    """Write records to OUT/data (Parquet) and OUT/rejected (JSONL); emit outcome keys."""

    def __init__(self, out: str, num_shards: int = 0, row_group_size: int = 256, buffer_mb: int = 32):
        super().__init__()
        self.out, self.num_shards = out.rstrip("/"), num_shards
        self.row_group_size, self.buffer_mb = row_group_size, buffer_mb

    def expand(self, records):
        written, rejected = records | "Route" >> beam.Partition(
            lambda r, _: int(r.rejection is not None), 2)
        (written
         | "ToRow" >> beam.Map(to_row)
         | "WriteParquet" >> beam.io.WriteToParquet(
             f"{self.out}/data/train", schema=features().arrow_schema, file_name_suffix=".parquet",
             num_shards=self.num_shards, record_batch_size=self.row_group_size,
             row_group_buffer_size=self.buffer_mb << 20))
        (rejected
         | "ToJson" >> beam.Map(to_rejected)
         | "WriteRejected" >> beam.io.WriteToText(f"{self.out}/rejected/rejected",
                                                  file_name_suffix=".jsonl"))
        return (records
                | "Outcome" >> beam.Map(lambda r: ("\t".join(outcome(r)), 1)))
