"""GRPO-SIF's rewards as SIFThinker's released code computes them (``reward_set: sifthinker``).

Same inputs, same values: the four functions below reproduce ``format``,
``accuracy_w_progress``, ``bboxaccuracy_w_progress`` and ``depth_consistency`` of its
``vlm_modules/qwen_module.py`` (REFERENCE.md section 2), including what its code accepts
that groundcot's stricter set refuses:

- format: tags found by search (text around them is ignored), an empty area list, extra keys
  beside ``bbox_2d``/``depth``, number literals such as ``0.1230`` (read as 0.123).
- box: any ``<area>`` that parses as JSON counts, wherever it is; degenerate boxes stay in
  HIoU's pairing (the one HIoU, ``schemas.boxes.hiou``).
- depth: m is the mean of the map inside the box, not rounded; a stated depth passes when
  |d - m| / m <= 0.1 (m = 0: no credit); a box without a depth is not counted.
- answer: an LLM judge's graded score s in [0, 1] (``GradedJudge``; without a judge, a 0/1
  match), plus s - prev when s >= prev, prev being the previous call's batch mean of this
  reward (bonus included) for the same prompt, kept when that mean is 0.

The depth map is read as SIFThinker reads it back from its 8-bit colour depth image
(256 levels, ``sif_levels``), so stated depths near the 10% boundary get the same verdict.
"""
from __future__ import annotations

import json
import math
import re
import threading

import numpy as np

from groundcot.schemas.answers import answers_match
from groundcot.schemas.boxes import hiou
from groundcot.schemas.codecs import decode_png16
from groundcot.trainer.rewards.judge import GradedJudge
from groundcot.trainer.rewards.text import per_depth_map, text_of

FULL = [[0, 0, 1, 1]]
_AREA = re.compile(r"<area>(.*?)</area>", re.DOTALL)
_ANSWER = re.compile(r"<answer>\n?(.*?)\n?</answer>", re.DOTALL)


def _number(v) -> bool:
    return isinstance(v, (int, float))


def _item_ok(item) -> bool:
    if not isinstance(item, dict) or "bbox_2d" not in item or "depth" not in item:
        return False
    box, depth = item["bbox_2d"], item["depth"]
    if not (isinstance(box, list) and len(box) == 4) or not all(map(_number, box)) or not _number(depth):
        return False
    if box[2] <= box[0] or box[3] <= box[1] or not all(0.0 <= float(v) <= 1.0 for v in [*box, depth]):
        return False
    # at most 3 decimals, judged on Python's repr of the parsed float (1e-05 has none: refused)
    return all(not isinstance(v, float) or ("." in str(v) and len(str(v).split(".")[1]) <= 3) for v in [*box, depth])


def format_ok(text: str) -> bool:
    """SIFThinker's ``validate_format``: 1 when it would pass."""
    think, answer = re.search(r"<think>(.*?)</think>", text, re.DOTALL), re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    if not think or not answer or not answer.group(1).strip():
        return False
    body = think.group(1).strip()
    tags = re.findall(r"<(/?\w+)>", body)
    if len(tags) % 4 or any(tags[i:i + 4] != ["area", "/area", "text", "/text"] for i in range(0, len(tags), 4)):
        return False
    if not body.startswith("<area>") or not body.endswith("</text>"):
        return False
    pairs = re.findall(r"<area>(.*?)</area>\s*<text>(.*?)</text>", body, re.DOTALL)
    if not pairs:
        return False
    for area, words in pairs:
        try:
            items = json.loads(area.strip())
        except json.JSONDecodeError:
            return False
        if not isinstance(items, list) or not all(map(_item_ok, items)) or not words.strip():
            return False
    return True


def _areas(text: str, key: str) -> list[list]:
    """Per ``<area>``: the values of ``key`` in its items; [[]] for an area that does not parse."""
    out = []
    for raw in _AREA.findall(text):
        values = []
        try:
            data = json.loads(raw)
            for item in data if isinstance(data, list) else [data]:
                if key in item:
                    values.append(item[key])
        except Exception:  # noqa: BLE001 - SIFThinker records a failed area as one empty entry
            values.append([])
        out.append(values)
    return out


def _hiou(pred: list, gt: list) -> float:
    """HIoU; raises on a box that is not 4 numbers, as SIFThinker's geometry code does."""
    if any(not isinstance(b, list) or len(b) != 4 or not all(map(_number, b)) for b in pred):
        raise ValueError("box is not 4 numbers")
    return hiou(pred, gt)


def format_reward(completions, **kwargs) -> list[float]:
    return [float(format_ok(text_of(c))) for c in completions]


def box_reward(completions, gt_boxes, **kwargs) -> list[float]:
    """H_end + max(0, H_end - H_ini); B_ini the first area that is not exactly [[0, 0, 1, 1]]."""
    out = []
    for c, gt in zip(completions, gt_boxes):
        areas, reward = _areas(text_of(c), "bbox_2d"), 0.0
        try:
            start = next((a for a in areas if a != FULL), FULL)
            end = areas[-1]
            if end:
                reward = _hiou(end, gt)
                h_ini = _hiou(start, gt)  # a failure here keeps H_end, as there
                reward += max(0.0, reward - h_ini)
        except (IndexError, ValueError, TypeError):
            pass
        out.append(reward)
    return out


def sif_levels(depth01: np.ndarray) -> np.ndarray:
    """The depth map as SIFThinker reads it back from its colour image: 1 - level / 255, where
    level = uint8((1 - depth) * 255) is the palette entry the rendering used."""
    return 1.0 - ((1.0 - depth01) * 255.0).astype(np.uint8).astype(np.float32) / 255.0


def box_mean(depth: np.ndarray, box) -> float:
    """Mean depth inside a normalised box: floor/ceil to pixels, clipped; raises when empty."""
    h, w = depth.shape[:2]
    x1, y1, x2, y2 = box
    c1, r1 = max(0, min(math.floor(x1 * w), w - 1)), max(0, min(math.floor(y1 * h), h - 1))
    c2, r2 = max(0, min(math.ceil(x2 * w), w)), max(0, min(math.ceil(y2 * h), h))
    if c2 <= c1 or r2 <= r1:
        raise ValueError("empty box")
    return float(np.mean(depth[r1:r2, c1:c2]))


def _depth_share(completion, png: bytes) -> float:
    text, depth = text_of(completion), sif_levels(decode_png16(png))
    boxes, depths = _areas(text, "bbox_2d"), _areas(text, "depth")
    total, reward = sum(map(len, depths)), 0.0
    for i, area in enumerate(boxes):
        for j, box in enumerate(area):
            try:
                m = box_mean(depth, box)
                if abs(m - depths[i][j]) / m <= 0.1:
                    reward += 1 / total
            except Exception:  # noqa: BLE001, S112 - SIFThinker skips a box on any failure
                continue
    return reward


def depth_reward(completions, depth_map, **kwargs) -> list[float | None]:
    """The share of stated depths within 10% of the unrounded box mean (None: no map)."""
    return per_depth_map(completions, depth_map, _depth_share)


def answer_of(text: str) -> str | None:
    match = _ANSWER.search(text)
    return match.group(1).strip() if match else None


class BatchMeanProgress:
    """accuracy_w_progress: s + (s - prev) when s >= prev, prev the previous training step's batch
    mean of this reward (bonus included) for the same prompt (by ``id``); a mean of 0 is not stored.

    Under TRL the step is ``trainer_state.global_step`` (calls within one step share one prev);
    without it each call is a step.
    """

    __name__ = "answer_reward"

    def __init__(self, judge: GradedJudge | None = None, bonus: bool = True):
        self.judge, self.bonus, self.prev, self.step = judge, bonus, {}, None
        self.sums: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def scores(self, completions, answer, question, images) -> list[float]:
        out = []
        for c, gt, q, im in zip(completions, answer, question, images):
            a = answer_of(text_of(c))
            if self.judge is not None:
                out.append(self.judge(q, gt, a, (im[0] if isinstance(im, list) and im else im)))
            else:
                out.append(float(a is not None and answers_match(a, gt)))
        return out

    def _close_step(self) -> None:
        for i, rs in self.sums.items():
            if (mean := sum(rs) / len(rs)) != 0:
                self.prev[i] = mean
        self.sums = {}

    def __call__(self, completions, answer, id=None, question=None, images=None, trainer_state=None,
                 **kwargs) -> list[float]:
        n = len(completions)
        s = self.scores(completions, answer, question or [""] * n, images or [None] * n)
        if not self.bonus or id is None:
            return s
        step = getattr(trainer_state, "global_step", None)
        with self._lock:
            if step is None or step != self.step:
                self._close_step()
                self.step = step
            rewards = [x + (x - self.prev[i]) if i in self.prev and x >= self.prev[i] else x for x, i in zip(s, id)]
            for r, i in zip(rewards, id):
                self.sums.setdefault(i, []).append(r)
            if step is None:
                self._close_step()
        return rewards

    def __getstate__(self):
        return {"judge": self.judge, "bonus": self.bonus, "prev": self.prev, "step": self.step, "sums": self.sums}

    def __setstate__(self, state):
        self.__dict__.update({"bonus": True, **state})
        self._lock = threading.Lock()
