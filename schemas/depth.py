"""Depth agreement shared by validation and the depth reward."""
from __future__ import annotations

ABS_FLOOR = 0.01  # below this true depth, compare against 10% of 0.01 (the 3-decimal grain)


def depth_close(stated: float, true: float, rel_tol: float = 0.1) -> bool:
    """True when ``stated`` is within ``rel_tol`` relative error of ``true``.

    >>> depth_close(0.55, 0.5), depth_close(0.56, 0.5)
    (True, False)
    """
    return abs(stated - true) <= rel_tol * max(abs(true), ABS_FLOOR) + 1e-9
