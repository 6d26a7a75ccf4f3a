"""MGPO's rewards. ``boxed_answer``: 1 if the single ``\\boxed{}`` answer of the last turn matches the GT,
as MGPO's released reward (xinyu1205/verl, branch mgpo, ``verl/utils/reward_score/high_resolution.py``:
accuracy of the boxed answer, nothing else). For the multi-turn rollout also ``mgpo_format``: the
trajectory has MGPO's shape (one ``crop`` call with a usable box in the first turn, then one
``\\boxed{}`` answer and no more calls), and ``grounding_iou`` (off unless weighted): the IoU of the
cropped box with the box enclosing the GT boxes.
"""
from __future__ import annotations

import re

from groundcot.schemas import boxes as B
from groundcot.schemas.answers import answers_match
from groundcot.trainer.rewards.text import assistant_texts, calls_of

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
MIN_SIDE, MAX_RATIO = 28, 100  # MGPO's rollout: a box is cropped only if > 28 px a side and aspect < 100


def usable(box, frame) -> bool:
    """MGPO's check of a grounding box (integer pixels) in a (w, h) frame."""
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, int) for v in box)):
        return False
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return (0 <= x1 < x2 <= frame[0] and 0 <= y1 < y2 <= frame[1] and w > MIN_SIDE and h > MIN_SIDE
            and max(w / h, h / w) < MAX_RATIO)


def boxed_answer_reward(completions, answer, **kwargs) -> list[float]:
    """MGPO's reward: 1 if the \\boxed{} answer of the last turn matches the GT."""
    out = []
    for c, gt in zip(completions, answer):
        texts = assistant_texts(c)
        boxed = _BOXED.findall(texts[-1]) if texts else []
        out.append(float(len(boxed) == 1 and answers_match(boxed[0], gt)))
    return out


def _first_crop(completion) -> dict | None:
    turns = calls_of(completion)
    calls = turns[0] if turns else []
    return calls[0]["arguments"] if len(calls) == 1 and calls[0]["name"] == "crop" else None


def mgpo_format_reward(completions, frame, **kwargs) -> list[float]:
    """1 if the rollout is MGPO's two turns: a usable crop, then one \\boxed{} answer and no call."""
    out = []
    for c, fr in zip(completions, frame):
        crop, turns, texts = _first_crop(c), calls_of(c), assistant_texts(c)
        ok = (crop is not None and usable(crop.get("bbox_2d"), fr) and len(turns) == 2 and not turns[1]
              and len(_BOXED.findall(texts[1])) == 1)
        out.append(float(ok))
    return out


def grounding_iou_reward(completions, frame, gt_boxes, **kwargs) -> list[float]:
    """IoU of the first turn's usable crop box (in the frame) with the box enclosing the GT boxes; 0 without."""
    out = []
    for c, (fw, fh), gt in zip(completions, frame, gt_boxes):
        crop = _first_crop(c)
        box = crop.get("bbox_2d") if crop else None
        if not usable(box, (fw, fh)):
            out.append(0.0)
            continue
        x1, y1, x2, y2 = box
        out.append(B.iou([x1 / fw, y1 / fh, x2 / fw, y2 / fh], B.enclosing(gt)))
    return out
