"""Reverse expansion: GT boxes -> the forward coarse-to-fine chain shown to the teacher.

Chain, coarse to fine: full image -> (distractor, with probability ``distractor_prob``)
-> (the union of the expanded boxes, if there are several) -> first expansion -> GT.
Each expansion grows every side by the remaining margin to the image edge divided by
the remaining steps, so ``steps`` expansions reach the full image. Seeded per record.
"""
from __future__ import annotations

import hashlib
import random
from typing import Sequence

from groundcot.schemas import boxes as B
from groundcot.schemas.codecs import decode_png16
from groundcot.schemas.depth import box_depths
from groundcot.schemas.record import ChainStep, Record

STAGE = "expand"
Boxes = list[list[float]]


def grow(boxes: Boxes, width: float, height: float, remaining: int) -> Boxes:
    """One expansion step: each side moves 1/remaining of the way to the image edge."""
    return [[x1 - x1 / remaining, y1 - y1 / remaining,
             x2 + (width - x2) / remaining, y2 + (height - y2) / remaining]
            for x1, y1, x2, y2 in boxes]


def merge_overlapping(boxes: Boxes) -> Boxes:
    """Replace boxes that overlap by their enclosing box until none overlap."""
    out = [list(b) for b in boxes]
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                if B.iou(out[i], out[j]) > 0:
                    out[i] = B.enclosing([out[i], out[j]])
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return out


def expansion_levels(gt: Boxes, width: float, height: float, steps: int) -> list[Boxes]:
    """All ``steps`` expansion levels, finest first; the last is the full image."""
    levels, current = [], gt
    for k in range(steps):
        current = merge_overlapping(grow(current, width, height, steps - k))
        levels.append([B.clip(b, width, height) for b in current])
    return levels


def place_distractor(target: list[float], width: float, height: float, rng: random.Random,
                     scale: float, jitter: float, max_iou: float = 0.001) -> list[float] | None:
    """A box ~``scale`` x the target, jittered, beside it and inside the image; None if none fits."""
    tw, th = target[2] - target[0], target[3] - target[1]
    w = min(tw * scale * (1 + rng.uniform(-jitter, jitter)), width)
    h = min(th * scale * (1 + rng.uniform(-jitter, jitter)), height)
    gap = 0.01 * max(width, height)
    spaces = {"left": target[0] - gap, "right": width - target[2] - gap,
              "above": target[1] - gap, "below": height - target[3] - gap}
    cx, cy = (target[0] + target[2]) / 2, (target[1] + target[3]) / 2
    candidates = []
    for side, space in spaces.items():
        horizontal = side in ("left", "right")
        bw, bh = (min(w, space), h) if horizontal else (w, min(h, space))
        if bw < max(0.5 * w, 0.05 * width) or bh < max(0.5 * h, 0.05 * height):
            continue  # no room for a box of about the target's size on this side
        if side == "left":
            x1, y1 = target[0] - gap - bw, cy - bh / 2
        elif side == "right":
            x1, y1 = target[2] + gap, cy - bh / 2
        elif side == "above":
            x1, y1 = cx - bw / 2, target[1] - gap - bh
        else:
            x1, y1 = cx - bw / 2, target[3] + gap
        shift = rng.uniform(-jitter, jitter)
        x1 += shift * bw if not horizontal else 0.0
        y1 += shift * bh if horizontal else 0.0
        x1, y1 = min(max(x1, 0.0), width - bw), min(max(y1, 0.0), height - bh)
        box = [x1, y1, x1 + bw, y1 + bh]
        if B.iou(box, target) < max_iou:
            candidates.append(box)
    return rng.choice(candidates) if candidates else None


def record_rng(record_id: str, seed: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def forward_chain(gt: Boxes, width: int, height: int, rng: random.Random, steps: int = 5,
                  distractor_prob: float = 0.5, distractor_scale: float = 1.2,
                  distractor_jitter: float = 0.1) -> list[ChainStep]:
    """The forward chain with normalised boxes (depths not yet set)."""
    first = expansion_levels(gt, width, height, steps)[0]
    pixel_steps: list[tuple[str, Boxes]] = [("full", [[0.0, 0.0, float(width), float(height)]])]
    if rng.random() < distractor_prob:
        box = place_distractor(B.enclosing(first), width, height, rng, distractor_scale, distractor_jitter)
        if box is not None:
            pixel_steps.append(("distractor", [box]))
    if len(first) > 1:
        pixel_steps.append(("union", [B.enclosing(first)]))
    pixel_steps += [("expansion", first), ("gt", gt)]
    chain = [ChainStep(kind, [B.to_norm(b, width, height) for b in bxs]) for kind, bxs in pixel_steps]
    return _drop_repeats(chain)


def _drop_repeats(chain: Sequence[ChainStep]) -> list[ChainStep]:
    """Drop a focus step whose boxes equal the next focus step's (e.g. GT = full image)."""
    focus = [i for i, s in enumerate(chain) if s.kind != "distractor"]
    drop = {i for i, j in zip(focus, focus[1:]) if chain[i].boxes == chain[j].boxes}
    return [s for i, s in enumerate(chain) if i not in drop]


def expand_record(record: Record, seed: int = 0, **params) -> Record:
    """Attach the forward chain, with per-box depths when the record has a depth map."""
    rng = record_rng(record.id, seed)
    record.chain = forward_chain(record.gt_boxes, record.width, record.height, rng, **params)
    if record.depth_map is not None:
        depth = decode_png16(record.depth_map)
        for step in record.chain:
            step.depths = box_depths(depth, step.boxes)
    return record
