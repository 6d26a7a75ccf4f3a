"""GRPO-SIF's rewards as SIFThinker's released code computes them (``reward_set: sifthinker``).

Same inputs, same values: the four functions below reproduce ``format``,
``accuracy_w_progress``, ``bboxaccuracy_w_progress`` and ``depth_consistency`` of its
``vlm_modules/qwen_module.py`` (REFERENCE.md section 2), including what its code accepts
that groundcot's stricter set refuses:

- format: tags found by search (text around them is ignored), an empty area list, extra keys
  beside ``bbox_2d``/``depth``, number literals such as ``0.1230`` (read as 0.123).
- box: any ``<area>`` that parses as JSON counts, wherever it is; degenerate boxes stay in
  HIoU's pairing; coordinates go through ``float()`` (numeric strings count) and the unions
  are shapely's, as there, so NaN and Infinity give what its code gives. (groundcot's set
  uses the one HIoU of valid boxes, ``schemas.boxes.hiou``.)
- depth: m is the mean of the map inside the box, not rounded; a stated depth passes when
  |d - m| / m <= 0.1 (m = 0: no credit); a box without a depth is not counted.
- answer: an LLM judge's graded score s in [0, 1] (``GradedJudge``; without a judge, a 0/1
  match), plus s - prev when s >= prev, prev being the previous call's batch mean of this
  reward (bonus included) for the same prompt, kept when that mean is 0.

The depth map is read as SIFThinker reads it back from its 8-bit colour depth image
(256 levels, ``sif_levels``), so stated depths near the 10% boundary get the same verdict.
"""
from __future__ import annotations

import functools
import json
import math
import re
import threading
import warnings

import numpy as np

from groundcot.schemas.answers import answers_match
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


def _iou(a, b) -> float:
    """SIFThinker's ``compute_single_iou``: float() on each coordinate (numeric strings count),
    Python's max/min (a NaN stays where it falls), touching boxes 0."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    left, top, right, bottom = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    if right < left or bottom < top:
        return 0.0
    inter = (right - left) * (bottom - top)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union != 0 else 0.0


def _pair_iou(pred: list, gt: list) -> float:
    """``compute_pair_iou``: a Hungarian matching's IoU sum over min(|P|, |G|) (SciPy raises on a NaN)."""
    from scipy.optimize import linear_sum_assignment

    if not pred and not gt:
        return 1.0
    if not pred or not gt:
        return 0.0
    matrix = np.array([[_iou(p, g) for g in gt] for p in pred])
    rows, cols = linear_sum_assignment(-matrix)
    return float(matrix[rows, cols].sum() / min(len(pred), len(gt)))


def _global_iou(pred: list, gt: list) -> float:
    """``compute_global_iou``: IoU of the shapely unions; a box is left out when x2 <= x1 or
    y2 <= y1, compared as written (strings compare as strings, as there)."""
    try:
        from shapely.geometry import Polygon
        from shapely.ops import unary_union
    except ImportError as err:  # a dependency of groundcot; only this reward set needs it
        raise ImportError("reward_set sifthinker needs shapely (pip install shapely)") from err

    def union(boxes):
        polygons = [Polygon([(x1, y1), (x2, y1), (x2, y2), (x1, y2)])
                    for x1, y1, x2, y2 in boxes if not (x2 <= x1 or y2 <= y1)]
        return unary_union(polygons) if polygons else Polygon()

    a, b = union(pred), union(gt)
    if a.is_empty and b.is_empty:
        return 1.0
    if a.is_empty or b.is_empty:
        return 0.0
    inter = a.intersection(b).area
    total = a.area + b.area - inter
    return float(inter / total) if total != 0 else 0.0


def _hiou(pred: list, gt: list) -> float:
    """SIFThinker's HIoU: raises where its code raises (a box that is not 4 values, a value
    float() refuses, a NaN in the matching, shapely on NaN coordinates)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (_global_iou(pred, gt) + _pair_iou(pred, gt)) / 2


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
        except Exception:  # noqa: BLE001, S110 - SIFThinker scores any failure as it stands
            pass
        out.append(reward)
    return out


def sif_levels(depth01: np.ndarray, colormap: str = "Spectral_r") -> np.ndarray:
    """The depth map as SIFThinker's ``load_depth_from_color`` reads back the depth image
    groundcot renders with ``colormap`` (``schemas.depth.render_depth``: level = uint8((1 - d) * 255)).

    A colour image: each pixel's nearest Spectral_r entry i gives 1 - i / 255 (for Spectral_r
    itself, the level's own entry). An image whose channels agree within 2 (grey): the blue
    channel / 255, i.e. the level itself (near = 1: SIFThinker reads grey images inverted).
    """
    from groundcot.schemas.depth import GREY, _palette

    level = ((1.0 - np.clip(depth01, 0.0, 1.0)) * 255.0).astype(np.uint8)
    palette = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1) if colormap == GREY else _palette(colormap)
    rgb = palette[np.unique(level)].astype(np.int16)
    if np.abs(rgb[:, 0] - rgb[:, 1]).max() <= 2 and np.abs(rgb[:, 1] - rgb[:, 2]).max() <= 2:
        return palette[level][..., 2].astype(np.float32) / 255.0
    return 1.0 - _nearest_spectral(colormap)[level].astype(np.float32) / 255.0


@functools.lru_cache(maxsize=8)
def _nearest_spectral(colormap: str) -> np.ndarray:
    """For each level of ``colormap``, the index of the nearest Spectral_r entry (SIFThinker's KDTree)."""
    from scipy.spatial import KDTree

    from groundcot.schemas.depth import _palette

    return KDTree(_palette("Spectral_r")[:, ::-1]).query(_palette(colormap)[:, ::-1], k=1)[1]


def box_mean(depth: np.ndarray, box) -> float:
    """Mean depth inside a normalised box: floor/ceil to pixels, clipped; raises when empty."""
    h, w = depth.shape[:2]
    x1, y1, x2, y2 = box
    c1, r1 = max(0, min(math.floor(x1 * w), w - 1)), max(0, min(math.floor(y1 * h), h - 1))
    c2, r2 = max(0, min(math.ceil(x2 * w), w)), max(0, min(math.ceil(y2 * h), h))
    if c2 <= c1 or r2 <= r1:
        raise ValueError("empty box")
    return float(np.mean(depth[r1:r2, c1:c2]))


def _depth_share(completion, depth: np.ndarray) -> float:
    text = text_of(completion)
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


class DepthReward:
    """depth_consistency: the share of stated depths within 10% of the unrounded box mean of the
    map as read back from the depth image drawn with ``colormap`` (None: no map)."""

    __name__ = "depth_reward"

    def __init__(self, colormap: str = "Spectral_r"):
        self.colormap = colormap

    def __call__(self, completions, depth_map, **kwargs) -> list[float | None]:
        return per_depth_map(completions, depth_map,
                             lambda c, png: _depth_share(c, sif_levels(decode_png16(png), self.colormap)))


depth_reward = DepthReward()


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
