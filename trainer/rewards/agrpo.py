"""TikArt's AGRPO for the multi-turn aperture rollout: task success plus purposeful aperture use.

The same score as the single-turn ``aperture`` part (``aperture.aperture_score``: ``a * (1 + H) / 2
- w / 2``), read from the rollout: the actions are the ``zoom``/``segment`` tool calls, the answer
is the last assistant turn's ``<answer>``, and an action wasted is one whose box is malformed, misses
the evidence, or is not followed by an ``<observe>`` of its crop (TikArt's observation after every
action).
"""
from __future__ import annotations

import re

from groundcot.schemas.answers import answers_match
from groundcot.trainer.rewards.aperture import aperture_score, valid_box
from groundcot.trainer.rewards.text import assistant_texts, calls_of

ACTIONS = ("zoom", "segment")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_OBSERVE = re.compile(r"<observe>.*?\S.*?</observe>", re.DOTALL)


def agrpo_reward(completions, answer, gt_boxes, **kwargs) -> list[float]:
    out = []
    for c, gt, boxes in zip(completions, answer, gt_boxes):
        texts, turns = assistant_texts(c), calls_of(c)
        found = _ANSWER.findall(texts[-1]) if texts else []
        right = bool(found) and not turns[-1] and answers_match(found[-1].strip(), gt)
        actions, unobserved = [], 0
        for i, calls in enumerate(turns):
            acted = [valid_box(call["arguments"].get("box")) for call in calls if call["name"] in ACTIONS]
            actions += acted
            if acted and not (i + 1 < len(texts) and _OBSERVE.match(texts[i + 1].lstrip())):
                unobserved += 1
        out.append(aperture_score(right, actions, boxes, unobserved))
    return out
