"""The aperture style's reward, in the spirit of TikArt's AGRPO."""
from __future__ import annotations

import json
import re

from groundcot.schemas import boxes as B
from groundcot.schemas.answers import answers_match
from groundcot.trainer.rewards.text import transcript

_ACTION = re.compile(r"<(zoom|segment)>(.*?)</\1>", re.DOTALL)


def _action_boxes(text: str) -> list[list[float] | None]:
    """The box of each ``<zoom>``/``<segment>`` action (None where it is not 4 numbers in [0, 1])."""
    out = []
    for _, raw in _ACTION.findall(text):
        try:
            out.append(valid_box(json.loads(raw)))
        except ValueError:
            out.append(None)
    return out


def valid_box(raw) -> list[float] | None:
    """An action's box as 4 numbers in [0, 1] with area, or None."""
    try:
        box = [float(v) for v in raw]
    except (ValueError, TypeError):
        return None
    return box if len(box) == 4 and all(0 <= v <= 1 for v in box) and not B.is_degenerate(box) else None


def aperture_score(right: bool, boxes: list[list[float] | None], gt_boxes, unobserved: int = 0) -> float:
    """``a * (1 + H) / 2 - w / 2`` (see ``aperture_reward``); ``unobserved`` actions count as wasted."""
    evidence = B.enclosing(gt_boxes)
    h = B.iou(boxes[-1], evidence) if boxes and boxes[-1] else 0.0
    wasted = sum(b is None or B.iou(b, evidence) == 0 for b in boxes) + unobserved
    return float(right) * (1 + h) / 2 - (min(wasted / len(boxes), 1.0) / 2 if boxes else 0.0)


def aperture_reward(completions, answer, gt_boxes, **kwargs) -> list[float]:
    """Task success coupled with purposeful aperture use: ``a * (1 + H) / 2 - w / 2``.

    a: 1 if the final ``<answer>`` matches the GT; H: IoU of the last action's box with the
    evidence E (the box enclosing the GT boxes), 0 without actions; w: the share of actions
    that are wasted, i.e. malformed or not touching E. Range [-0.5, 1]: a right answer
    without looking gets 0.5, a right answer whose last aperture is exactly E gets 1.
    """
    out = []
    for c, gt, boxes in zip(completions, answer, gt_boxes):
        text = transcript(c)
        match = re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)
        right = bool(match) and answers_match(match[-1].strip(), gt)
        out.append(aperture_score(right, _action_boxes(text), boxes))
    return out
