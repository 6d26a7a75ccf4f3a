"""Box geometry on ``[x1, y1, x2, y2]`` boxes and HIoU (REFERENCE.md section 2).

>>> hiou([[0, 0, 10, 10]], [[0, 0, 10, 10]])
1.0
>>> to_norm([10, 20, 30, 40], 100, 100)
[0.1, 0.2, 0.3, 0.4]
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Box = Sequence[float]
DECIMALS = 3


def is_degenerate(box: Box) -> bool:
    """True unless the box has four finite numbers with x2 > x1 and y2 > y1."""
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        return True
    return not (box[2] > box[0] and box[3] > box[1])


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def clip(box: Box, width: float, height: float) -> list[float]:
    """Clip a pixel box to the image; the result may be degenerate."""
    x1, y1, x2, y2 = box
    return [min(max(x1, 0.0), width), min(max(y1, 0.0), height),
            min(max(x2, 0.0), width), min(max(y2, 0.0), height)]


def _round_out(value: float, up: bool) -> float:
    scaled = round(value * 10**DECIMALS, 6)  # drop float noise before floor/ceil
    return (math.ceil(scaled) if up else math.floor(scaled)) / 10**DECIMALS


def to_norm(box: Box, width: float, height: float) -> list[float]:
    """Pixel box -> normalised box with 3 decimals, rounded outward.

    Rounding outward keeps containment (a box inside another stays inside after
    rounding) and keeps any non-degenerate box non-degenerate.
    """
    x1, y1, x2, y2 = box
    out = [_round_out(x1 / width, False), _round_out(y1 / height, False),
           _round_out(x2 / width, True), _round_out(y2 / height, True)]
    return [min(max(v, 0.0), 1.0) for v in out]


def to_pixel(box: Box, width: float, height: float) -> list[float]:
    x1, y1, x2, y2 = box
    return [x1 * width, y1 * height, x2 * width, y2 * height]


def to_padded_square(box: Box, width: float, height: float) -> list[float]:
    """Pixel box -> normalised to the image padded to a square (VisCoT's LLaVA form).

    >>> [round(v, 3) for v in to_padded_square([303, 96, 486, 289], 500, 333)]
    [0.606, 0.358, 0.972, 0.744]
    """
    x1, y1, x2, y2 = box
    if width > height:
        pad = (width - height) // 2
        return [x1 / width, (y1 + pad) / width, x2 / width, (y2 + pad) / width]
    pad = (height - width) // 2
    return [(x1 + pad) / height, y1 / height, (x2 + pad) / height, y2 / height]


def from_padded_square(box: Box, width: float, height: float) -> list[float]:
    """Undo :func:`to_padded_square`: back to pixels of the unpadded image."""
    x1, y1, x2, y2 = box
    if width > height:
        pad = (width - height) // 2
        return [x1 * width, y1 * width - pad, x2 * width, y2 * width - pad]
    pad = (height - width) // 2
    return [x1 * height - pad, y1 * height, x2 * height - pad, y2 * height]


def enclosing(boxes: Sequence[Box]) -> list[float]:
    """The smallest box containing all ``boxes``."""
    arr = np.asarray(boxes, dtype=float)
    return [float(arr[:, 0].min()), float(arr[:, 1].min()),
            float(arr[:, 2].max()), float(arr[:, 3].max())]


def contains(outer: Box, inner: Box, tol: float = 1e-9) -> bool:
    return (outer[0] <= inner[0] + tol and outer[1] <= inner[1] + tol
            and outer[2] >= inner[2] - tol and outer[3] >= inner[3] - tol)


def iou(a: Box, b: Box) -> float:
    inter = area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def _cover(boxes: Sequence[Box], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Boolean grid of the elementary cells (between sorted xs/ys) that boxes cover."""
    grid = np.zeros((len(ys) - 1, len(xs) - 1), dtype=bool)
    for x1, y1, x2, y2 in boxes:
        i1, i2 = np.searchsorted(xs, [x1, x2])
        j1, j2 = np.searchsorted(ys, [y1, y2])
        grid[j1:j2, i1:i2] = True
    return grid


def _drawable(boxes: Sequence[Box]) -> list[list[float]]:
    """The boxes that cover some area (degenerate ones add nothing to a union)."""
    return [list(map(float, b)) for b in boxes if not is_degenerate(b)]


def _empty_sides(pred: Sequence[Box], gt: Sequence[Box]) -> float | None:
    if not len(pred) and not len(gt):
        return 1.0
    if not len(pred) or not len(gt):
        return 0.0
    return None


def global_iou(pred: Sequence[Box], gt: Sequence[Box]) -> float:
    """IoU of the true unions of two sets of rectangles (not their bounding boxes).

    Degenerate boxes add nothing to a union; a side with boxes that are all degenerate
    counts as empty (both empty -> 1, one empty -> 0), as SIFThinker's shapely unions do.
    """
    pred, gt = _drawable(pred), _drawable(gt)
    if (edge := _empty_sides(pred, gt)) is not None:
        return edge
    coords = np.asarray(pred + gt)
    xs = np.unique(np.concatenate([coords[:, 0], coords[:, 2]]))
    ys = np.unique(np.concatenate([coords[:, 1], coords[:, 3]]))
    cells = np.outer(np.diff(ys), np.diff(xs))
    p, g = _cover(pred, xs, ys), _cover(gt, xs, ys)
    union = float(cells[p | g].sum())
    return float(cells[p & g].sum()) / union if union > 0 else 0.0


def pair_iou(pred: Sequence[Box], gt: Sequence[Box]) -> float:
    """Sum of IoUs over a Hungarian matching that maximises total IoU, divided by min(|P|, |G|).

    Degenerate boxes stay in the matrix (IoU 0 with everything) and in the count.
    """
    if (edge := _empty_sides(pred, gt)) is not None:
        return edge
    matrix = np.array([[0.0 if is_degenerate(p) or is_degenerate(g) else iou(p, g) for g in gt] for p in pred])
    if min(matrix.shape) == 1:  # one box on a side: the best match is the largest IoU (no solver needed)
        return float(matrix.max())
    from scipy.optimize import linear_sum_assignment  # here: importing from a package costs CPU per call

    rows, cols = linear_sum_assignment(matrix, maximize=True)
    return float(matrix[rows, cols].sum()) / min(len(pred), len(gt))


def hiou(pred: Sequence[Box], gt: Sequence[Box]) -> float:
    """HIoU = (GlobalIoU + PairIoU) / 2; both empty -> 1, one empty -> 0.

    SIFThinker's definition (its GRPO-SIF reward code): a degenerate box (zero or negative
    width or height) adds nothing to the unions but stays in the pairing with IoU 0 and
    counts in min(|P|, |G|).

    >>> round(hiou([[0, 0, 2, 2]], [[0, 0, 1, 2]]), 3)
    0.5
    """
    return (global_iou(pred, gt) + pair_iou(pred, gt)) / 2


QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 56 * 56, 28 * 28 * 16384  # Qwen2.5-VL's preprocessor defaults


def qwen_resize(height: int, width: int, factor: int = 28, min_pixels: int = QWEN_MIN_PIXELS,
                max_pixels: int = QWEN_MAX_PIXELS) -> tuple[int, int]:
    """(h, w) as Qwen2-VL's ``smart_resize`` (transformers' image processor) gives them: here so the
    teacher's ledger and the mgpo frame import no transformers (and torch) on every worker; a unit
    test holds it equal to the original."""
    h, w = round(height / factor) * factor, round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w
