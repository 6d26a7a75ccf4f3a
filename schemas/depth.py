"""Depth per box and depth agreement, shared by the stages and the depth reward."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

ABS_FLOOR = 0.01  # below this true depth, compare against 10% of 0.01 (the 3-decimal grain)


def depth_close(stated: float, true: float, rel_tol: float = 0.1) -> bool:
    """True when ``stated`` is within ``rel_tol`` relative error of ``true``.

    >>> depth_close(0.55, 0.5), depth_close(0.56, 0.5)
    (True, False)
    """
    return abs(stated - true) <= rel_tol * max(abs(true), ABS_FLOOR) + 1e-9


def box_depths(depth01: np.ndarray, norm_boxes: Sequence[Sequence[float]]) -> list[float]:
    """Mean depth inside each normalised box (at least one pixel), 3 decimals."""
    h, w = depth01.shape
    out = []
    for x1, y1, x2, y2 in norm_boxes:
        c1, r1 = min(int(x1 * w), w - 1), min(int(y1 * h), h - 1)
        c2, r2 = max(math.ceil(x2 * w), c1 + 1), max(math.ceil(y2 * h), r1 + 1)
        out.append(round(float(depth01[r1:r2, c1:c2].mean()), 3))
    return out
