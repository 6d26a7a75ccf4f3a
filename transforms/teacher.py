"""Teachers write the assistant turns of a record's style. ``template`` is the offline baseline.

A teacher has ``name`` (stored in the ``teacher`` column) and writes ``record.turns``;
``transforms.openai_teacher`` is the VLM teacher behind an OpenAI-compatible API.
"""
from __future__ import annotations

import json

from groundcot.schemas.cot import Cot, Step, render_cot
from groundcot.schemas.record import ChainStep, Record

STAGE = "teacher"


def position(box: list[float]) -> str:
    """Where a normalised box sits: 'upper left', 'centre', 'lower middle', ..."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row = "upper" if cy < 1 / 3 else "lower" if cy > 2 / 3 else "middle"
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "middle"
    return "centre" if row == col == "middle" else f"{row} {col}"


def distance(depth: float | None, numbers: bool = True) -> str:
    if depth is None:
        return ""
    word = "near" if depth < 1 / 3 else "far" if depth > 2 / 3 else "at middle distance"
    return f", {word} (depth {depth:.3f})" if numbers else f", {word}"


def _what(record: Record) -> str:
    return " and ".join(f"the {label}" for label in dict.fromkeys(record.labels)) or "the evidence"


def observe(step: ChainStep, record: Record, numbers: bool = True) -> str:
    """One short observation for a chain step, from what the record knows."""
    box = step.boxes[0]
    depth = step.depths[0] if step.depths else None
    where = f"the {position(box)}{distance(depth, numbers)}"
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
    """Deterministic and offline: observations from what the record knows, for every style."""

    name = "template"

    def write(self, record: Record) -> list[str]:
        """The assistant turns for the record's style."""
        return getattr(self, f"_{record.style or 'sif'}")(record)

    def _sif(self, record: Record) -> list[str]:
        steps = []
        for step in record.chain:
            steps.append(Step(step.areas(), observe(step, record)))
        return [render_cot(Cot(tuple(steps), record.answer))]

    def _textual(self, record: Record) -> list[str]:
        focus = [s for s in record.chain if s.kind != "distractor"]
        thoughts = " ".join(observe(s, record, numbers=False) for s in focus)
        return [f"<think>{thoughts}</think>\n<answer>{record.answer}</answer>"]

    def _mgpo(self, record: Record) -> list[str]:
        region = record.actions[0]
        turn1 = "```json\n" + json.dumps([{"bbox_2d": region["bbox_2d"], "label": region["label"]}]) + "\n```"
        what = _what(record)
        turn2 = (f"The crop shows {what} up close, at the {position(record.chain[-1].boxes[0])} of the image. "
                 f"It settles the question: \\boxed{{{record.answer}}}")
        return [turn1, turn2]

    def _aperture(self, record: Record) -> list[str]:
        turns, said = [], f"The question is: {record.question}"
        for action in record.actions:
            box = ", ".join(f"{v:.3f}" for v in action["bbox_2d"])
            how = "segment the object" if action["action"] == "segment" else "zoom in"
            lead = f"The question is: {record.question}" if not turns else "To see more,"
            think = f"{lead} I {how} at the {position(action['bbox_2d'])}."
            opening = "" if not turns else f"<observe>{said}</observe>\n"
            turns.append(f"{opening}<think>{think}</think>\n<{action['action']}>[{box}]</{action['action']}>")
            what = _what(record)
            said = (f"The crop shows {what}." if action["step"] == "gt"
                    else f"The crop brings {what} closer{distance(action.get('depth'), numbers=False)}.")
        turns.append(f"<observe>{said}</observe>\n<answer>{record.answer}</answer>")
        return turns


def make_teacher(kind: str):
    if kind == "template":
        return TemplateTeacher()
    raise ValueError(f"unknown teacher kind {kind!r}; known: template")


def teach(record: Record, teacher) -> Record:
    record.turns, record.teacher = teacher.write(record), teacher.name
    record.cot = "\n\n".join(record.turns)
    return record
