"""The SIF chain-of-thought grammar: parse and render (REFERENCE.md section 2).

``<think>`` then one or more ``<area>[...]</area><text>...</text>`` pairs, ``</think>``,
then ``<answer>...</answer>``. Each area is a JSON list of
``{"bbox_2d": [x1, y1, x2, y2], "depth": d}`` with normalised values, at most 3 decimals.

>>> cot = parse_cot('<think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0.5}]</area>'
...                 '<text>The whole image.</text></think><answer>yes</answer>')
>>> cot.steps[0].areas[0].box, cot.answer
((0.0, 0.0, 1.0, 1.0), 'yes')
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

_OUTER = re.compile(r"\s*<think>(?P<think>.*)</think>\s*<answer>(?P<answer>.*)</answer>\s*", re.S)
_PAIR = re.compile(r"\s*<area>(?P<area>.*?)</area>\s*<text>(?P<text>.*?)</text>", re.S)
_TAG = re.compile(r"</?[A-Za-z_][\w-]*>")
MAX_DECIMALS = 3


class CotError(ValueError):
    """A grammar violation; ``rule`` is a snake_case name of the rule broken."""

    def __init__(self, rule: str, detail: str = ""):
        super().__init__(f"{rule}: {detail}" if detail else rule)
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True)
class Area:
    box: tuple[float, float, float, float]
    depth: float | None = None


@dataclass(frozen=True)
class Step:
    areas: tuple[Area, ...]
    text: str


@dataclass(frozen=True)
class Cot:
    steps: tuple[Step, ...]
    answer: str


def _number(token: str) -> float:
    try:
        exponent = Decimal(token).as_tuple().exponent
    except InvalidOperation as err:
        raise CotError("area_not_json", f"bad number {token!r}") from err
    if isinstance(exponent, int) and exponent < -MAX_DECIMALS:
        raise CotError("too_many_decimals", f"{token} has more than {MAX_DECIMALS} decimals")
    return float(token)


def _unit(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CotError(f"{what}_not_number", repr(value))
    if not 0.0 <= value <= 1.0:
        raise CotError(f"{what}_out_of_range", f"{value} not in [0, 1]")
    return float(value)


def _parse_area(raw: str, require_depth: bool) -> tuple[Area, ...]:
    try:
        items = json.loads(raw, parse_float=_number)
    except json.JSONDecodeError as err:
        raise CotError("area_not_json", f"{raw.strip()[:60]!r}: {err.msg}") from err
    if not isinstance(items, list) or not items:
        raise CotError("area_not_list", "an area is a non-empty JSON list")
    areas = []
    for item in items:
        allowed = {"bbox_2d", "depth"}
        if not isinstance(item, dict) or "bbox_2d" not in item or set(item) - allowed:
            raise CotError("area_item_keys", f'expected {{"bbox_2d", "depth"}}, got {item!r}'[:120])
        box = item["bbox_2d"]
        if not isinstance(box, list) or len(box) != 4:
            raise CotError("box_not_4_numbers", repr(box))
        x1, y1, x2, y2 = (_unit(v, "box") for v in box)
        if not (x2 > x1 and y2 > y1):
            raise CotError("box_degenerate", f"{box}: need x2 > x1 and y2 > y1")
        if "depth" not in item and require_depth:
            raise CotError("depth_missing", repr(item))
        depth = _unit(item["depth"], "depth") if "depth" in item else None
        areas.append(Area((x1, y1, x2, y2), depth))
    return tuple(areas)


def plain_text(raw: str | None, what: str) -> str:
    """The stripped text of a ``<what>`` element: not empty, no tags inside (every style's grammar)."""
    text = (raw or "").strip()
    if not text:
        raise CotError(f"empty_{what}")
    if tag := _TAG.search(text):
        raise CotError("unexpected_tag", f"{tag.group(0)} inside <{what}>")
    return text


def parse_cot(text: str, require_depth: bool = True) -> Cot:
    """Parse a CoT or raise :class:`CotError` naming the rule broken."""
    outer = _OUTER.fullmatch(text)
    if outer is None:
        raise CotError("not_think_then_answer", "expected <think>...</think><answer>...</answer>")
    body, pos, steps = outer["think"], 0, []
    if _TAG.search(outer["answer"]) or "<think>" in body or "</think>" in body:
        raise CotError("unexpected_tag", "nested <think> or tags in <answer>")
    while match := _PAIR.match(body, pos):
        areas = _parse_area(match["area"], require_depth)
        steps.append(Step(areas, plain_text(match["text"], "text")))
        pos = match.end()
    rest = body[pos:].strip()
    if rest:
        rule = "no_steps" if not steps and "<area>" not in rest else "bad_step_order"
        raise CotError(rule, f"unexpected {rest[:60]!r} inside <think>")
    if not steps:
        raise CotError("no_steps", "<think> needs at least one <area><text> pair")
    return Cot(tuple(steps), plain_text(outer["answer"], "answer"))


_FENCED = re.compile(r"```[\w-]*\s*\n?(.*?)```", re.S)
_BARE = re.compile(r"<think>.*</answer>", re.S)


def extract_cot(text: str) -> str:
    r"""The CoT inside a model reply: a fenced block holding <think>, else the bare span.

    >>> extract_cot("Sure!\n```xml\n<think>x</think><answer>y</answer>\n```")
    '<think>x</think><answer>y</answer>'
    """
    for block in _FENCED.findall(text):
        if "<think>" in block:
            return block.strip()
    match = _BARE.search(text)
    return match.group(0) if match else text.strip()


def _fmt(value: float) -> str:
    return f"{value:.{MAX_DECIMALS}f}"


def render_area(areas: tuple[Area, ...] | list[Area]) -> str:
    items = []
    for a in areas:
        box = ", ".join(_fmt(v) for v in a.box)
        depth = "" if a.depth is None else f', "depth": {_fmt(a.depth)}'
        items.append(f'{{"bbox_2d": [{box}]{depth}}}')
    return "[" + ", ".join(items) + "]"


def render_cot(cot: Cot) -> str:
    """Write a :class:`Cot` in canonical form; ``parse_cot(render_cot(c)) == c``."""
    lines = ["<think>"]
    for step in cot.steps:
        lines.append(f"<area>{render_area(step.areas)}</area>")
        lines.append(f"<text>{step.text}</text>")
    lines.append("</think>")
    lines.append(f"<answer>{cot.answer}</answer>")
    return "\n".join(lines)
