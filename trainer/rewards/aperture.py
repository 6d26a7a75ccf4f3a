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
            box = [float(v) for v in json.loads(raw)]
            out.append(box if len(box) == 4 and all(0 <= v <= 1 for v in box) and not B.is_degenerate(box) else None)
        except (ValueError, TypeError):
            out.append(None)
    return out


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
        a = float(bool(match) and answers_match(match[-1].strip(), gt))
        actions, evidence = _action_boxes(text), B.enclosing(boxes)
        h = B.iou(actions[-1], evidence) if actions and actions[-1] else 0.0
        wasted = sum(b is None or B.iou(b, evidence) == 0 for b in actions) / len(actions) if actions else 0.0
        out.append(a * (1 + h) / 2 - wasted / 2)
    return out
