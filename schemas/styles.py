"""Grammars of the other trajectory styles (REFERENCE.md section 3); ``cot`` has SIF's.

- textual (iVGR's textual stream): ``<think>..</think><answer>..</answer>``, no coordinates.
- mgpo: turn 1 is a fenced JSON ``[{"bbox_2d": [x1, y1, x2, y2], "label": ..}]`` in whole
  pixels of the frame the model sees; turn 2 reasons and gives ``\\boxed{answer}``.
- aperture (TikArt's Think-Aperture-Observe): every turn but the last ends with one action,
  ``<zoom>[x1, y1, x2, y2]</zoom>`` (a rectangle) or ``<segment>[..]</segment>`` (a mask
  crop), boxes normalised; every turn after an action starts with ``<observe>..</observe>``;
  the last turn ends with ``<answer>..</answer>``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from groundcot.schemas.cot import CotError

_COORDS = re.compile(r"\[\s*-?\d+(\.\d+)?\s*,\s*-?\d+(\.\d+)?\s*,")
_TEXTUAL = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.S)
_FENCED_JSON = re.compile(r"\s*```json\s*\n(.*?)\n?```\s*", re.S)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_TAG = re.compile(r"</?[A-Za-z_][\w-]*>")
_TURN = re.compile(r"\s*(?:<observe>(?P<observe>.*?)</observe>)?\s*<think>(?P<think>.*?)</think>\s*"
                   r"<(?P<action>zoom|segment)>(?P<box>.*?)</(?P=action)>\s*", re.S)
_LAST = re.compile(r"\s*<observe>(?P<observe>.*?)</observe>\s*(?:<think>(?P<think>.*?)</think>\s*)?"
                   r"<answer>(?P<answer>.*?)</answer>\s*", re.S)


def _text(raw: str | None, what: str) -> str:
    text = (raw or "").strip()
    if not text:
        raise CotError(f"empty_{what}")
    if tag := _TAG.search(text):
        raise CotError("unexpected_tag", f"{tag.group(0)} inside <{what}>")
    return text


def parse_textual(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a textual trajectory."""
    m = _TEXTUAL.fullmatch(text)
    if m is None:
        raise CotError("not_think_then_answer", "expected <think>...</think><answer>...</answer>")
    think = _text(m.group(1), "think")
    if _COORDS.search(think) or "bbox" in think:
        raise CotError("coordinates_in_text", "the textual style has no coordinates")
    return think, _text(m.group(2), "answer")


@dataclass(frozen=True)
class Region:
    box: tuple[int, int, int, int]
    label: str


def parse_mgpo(turn1: str, turn2: str, frame: tuple[int, int]) -> tuple[list[Region], str]:
    """(regions in the frame, answer) of a two-turn MGPO trajectory."""
    m = _FENCED_JSON.fullmatch(turn1)
    if m is None:
        raise CotError("region_not_fenced_json", "turn 1 must be only a ```json fenced block")
    try:
        items = json.loads(m.group(1))
    except json.JSONDecodeError as err:
        raise CotError("region_not_json", err.msg) from err
    if not isinstance(items, list) or not items:
        raise CotError("region_not_list")
    regions = []
    for item in items:
        box = item.get("bbox_2d") if isinstance(item, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) for v in box)):
            raise CotError("region_box_not_4_ints", repr(item)[:100])
        x1, y1, x2, y2 = box
        if not (0 <= x1 < x2 <= frame[0] and 0 <= y1 < y2 <= frame[1]):
            raise CotError("region_box_outside_frame", f"{box} in a {frame[0]}x{frame[1]} frame")
        regions.append(Region((x1, y1, x2, y2), str(item.get("label", ""))))
    boxed = _BOXED.findall(turn2)
    if len(boxed) != 1:
        raise CotError("not_one_boxed_answer", f"{len(boxed)} \\boxed{{}} in turn 2")
    _text(_BOXED.sub("", turn2), "reasoning")
    return regions, _text(boxed[0], "answer")


@dataclass(frozen=True)
class Action:
    kind: str  # zoom | segment
    box: tuple[float, float, float, float]


def _norm_box(raw: str) -> tuple[float, float, float, float]:
    try:
        box = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CotError("action_box_not_json", raw[:60]) from err
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise CotError("action_box_not_4_numbers", raw[:60])
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
        raise CotError("action_box_out_of_range", raw[:60])
    return x1, y1, x2, y2


def parse_aperture(turns: list[str]) -> tuple[list[Action], str]:
    """(actions, answer) of a Think-Aperture-Observe trajectory (the assistant turns)."""
    if len(turns) < 2:
        raise CotError("no_actions", "at least one action turn and a final turn")
    actions = []
    for i, turn in enumerate(turns[:-1]):
        m = _TURN.fullmatch(turn)
        if m is None:
            raise CotError("bad_action_turn", f"turn {i + 1}: expected [<observe>] <think> <zoom|segment>")
        if (m.group("observe") is None) != (i == 0):
            raise CotError("observe_misplaced", f"turn {i + 1}: observe after every action, not before the first")
        if i:
            _text(m.group("observe"), "observe")
        _text(m.group("think"), "think")
        actions.append(Action(m.group("action"), _norm_box(m.group("box"))))
    last = _LAST.fullmatch(turns[-1])
    if last is None:
        raise CotError("bad_final_turn", "expected <observe> [<think>] <answer>")
    _text(last.group("observe"), "observe")
    return actions, _text(last.group("answer"), "answer")


def split_aperture(reply: str) -> list[str]:
    """One reply holding the whole trajectory -> its assistant turns (cut after each action)."""
    parts = re.split(r"(?<=</zoom>)|(?<=</segment>)", reply.strip())
    return [p.strip() for p in parts if p.strip()]
