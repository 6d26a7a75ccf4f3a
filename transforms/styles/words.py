"""Plain-language observations the template teacher writes, from what a record knows."""
from __future__ import annotations

from groundcot.schemas.record import ChainStep, Record


def position(box: list[float]) -> str:
    """Where a normalised box sits.

    >>> position([0.0, 0.0, 0.2, 0.2]), position([0.4, 0.4, 0.6, 0.6]), position([0.4, 0.8, 0.6, 1.0])
    ('upper left', 'centre', 'lower middle')
    """
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row = "upper" if cy < 1 / 3 else "lower" if cy > 2 / 3 else "middle"
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "middle"
    return "centre" if row == col == "middle" else f"{row} {col}"


def distance(depth: float | None, numbers: bool = True) -> str:
    if depth is None:
        return ""
    word = "near" if depth < 1 / 3 else "far" if depth > 2 / 3 else "at middle distance"
    return f", {word} (depth {depth:.3f})" if numbers else f", {word}"


def what(record: Record) -> str:
    """'the ball and the sign', or 'the evidence' when the source names nothing."""
    return " and ".join(f"the {label}" for label in dict.fromkeys(record.labels)) or "the evidence"


def observe(step: ChainStep, record: Record, numbers: bool = True) -> str:
    """One short observation for a chain step."""
    box = step.boxes[0]
    depth = step.depths[0] if step.depths else None
    where = f"the {position(box)}{distance(depth, numbers)}"
    if step.kind == "full":
        return f"The question is: {record.question} I look at the whole image first."
    if step.kind == "distractor":
        return f"The region at {where} does not show {what(record)}, so I look elsewhere."
    if step.kind == "union":
        return f"The evidence spreads over several regions, together spanning {where}."
    if step.kind == "expansion":
        return f"I narrow the focus to {where}, around {what(record)}."
    n, name = len(step.boxes), what(record)
    parts = "is in this region" if n == 1 else f"is in these {n} regions"
    return f"{name[0].upper()}{name[1:]} {parts}, at {where}; the answer follows from it."
