"""Teachers write the CoT for a record's chain. ``template`` is the offline baseline.

Every teacher has ``name`` (stored in the ``teacher`` column) and ``write(record) -> str``.
The VLM teacher behind an OpenAI-compatible API plugs in here later.
"""
from __future__ import annotations

from schemas.cot import Area, Cot, Step, render_cot
from schemas.record import ChainStep, Record

STAGE = "teacher"


def position(box: list[float]) -> str:
    """Where a normalised box sits: 'upper left', 'centre', 'lower middle', ..."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row = "upper" if cy < 1 / 3 else "lower" if cy > 2 / 3 else "middle"
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "middle"
    return "centre" if row == col == "middle" else f"{row} {col}"


def distance(depth: float | None) -> str:
    if depth is None:
        return ""
    word = "near" if depth < 1 / 3 else "far" if depth > 2 / 3 else "at middle distance"
    return f", {word} (depth {depth:.3f})"


def _what(record: Record) -> str:
    return " and ".join(f"the {label}" for label in dict.fromkeys(record.labels)) or "the evidence"


def observe(step: ChainStep, record: Record) -> str:
    """One short observation for a chain step, from what the record knows."""
    box = step.boxes[0]
    depth = step.depths[0] if step.depths else None
    where = f"the {position(box)}{distance(depth)}"
    if step.kind == "full":
        return f"The question is: {record.question} I look at the whole image first."
    if step.kind == "distractor":
        return f"The region at {where} does not show {_what(record)}, so I look elsewhere."
    if step.kind == "union":
        return f"The evidence spreads over several regions, together spanning {where}."
    if step.kind == "expansion":
        return f"I narrow the focus to {where}, around {_what(record)}."
    n, what = len(step.boxes), _what(record)
    parts = "is in this region" if n == 1 else f"is in these {n} regions"
    return f"{what[0].upper()}{what[1:]} {parts}, at {where}; the answer follows from it."


class TemplateTeacher:
    """Deterministic and offline: one observation per chain step, then the GT answer."""

    name = "template"

    def write(self, record: Record) -> str:
        steps = []
        for step in record.chain:
            depths = step.depths or [None] * len(step.boxes)
            areas = tuple(Area(tuple(b), d) for b, d in zip(step.boxes, depths))
            steps.append(Step(areas, observe(step, record)))
        return render_cot(Cot(tuple(steps), record.answer))


def make_teacher(kind: str):
    if kind == "template":
        return TemplateTeacher()
    raise ValueError(f"unknown teacher kind {kind!r}; known: template")


def teach(record: Record, teacher) -> Record:
    record.cot, record.teacher = teacher.write(record), teacher.name
    return record
