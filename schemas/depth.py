"""Depth per box and depth agreement (shared by the stages and the depth reward), the depth map drawn
as the sif input image, and the SIF-50K labels of that image in a user turn."""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

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


GREY = "grey"


def check_colormap(name: str) -> str:
    """``name`` if ``render_depth`` can draw with it (grey or a matplotlib colour map), else ValueError."""
    import matplotlib

    if name != GREY and name not in matplotlib.colormaps:
        raise ValueError(f"unknown colour map {name!r}: use grey or a matplotlib colour map such as Spectral_r")
    return name


@functools.lru_cache(maxsize=8)
def _palette(colormap: str) -> np.ndarray:
    """The colour map's RGB entry for each 8-bit level (uint8, 256 x 3): what it gives a uint8 image."""
    import matplotlib

    return (matplotlib.colormaps[colormap](np.arange(256, dtype=np.uint8))[..., :3] * 255).astype(np.uint8)


def render_depth(depth01: np.ndarray, colormap: str = "Spectral_r") -> bytes:
    """A depth map (0 = nearest) as the colour PNG Depth-Anything-V2's ``run.py`` writes.

    As there: the inverse depth scaled to 0..255 and cut to uint8 (nearest = 255), then
    looked up in a matplotlib colour map (``Spectral_r``: near red, far blue), or repeated
    into three equal channels for ``grey`` (near white).

    >>> import io; from PIL import Image
    >>> im = Image.open(io.BytesIO(render_depth(np.array([[0.0, 1.0]]))))
    >>> im.mode, im.getpixel((0, 0)), im.getpixel((1, 0))
    ('RGB', (158, 1, 66), (94, 79, 162))
    """
    import io

    from PIL import Image

    level = ((1.0 - np.clip(depth01, 0.0, 1.0)) * 255.0).astype(np.uint8)
    if colormap == GREY:
        rgb = np.repeat(level[..., None], 3, axis=-1)
    else:
        rgb = _palette(colormap)[level]  # a lookup per pixel: the same bytes as the colour map applied to level
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()


ORIGINAL_LABEL, DEPTH_LABEL = "Original image: ", "\nDepth image: "
_IMAGE = {"type": "image", "text": None}


def with_depth_input(text: str) -> list[dict]:
    """A user turn's content with the depth image as SIF-50K labels it:
    ``Original image: <image>\\nDepth image: <image>\\n`` then ``text``."""
    return [{"type": "text", "text": ORIGINAL_LABEL}, dict(_IMAGE), {"type": "text", "text": DEPTH_LABEL},
            dict(_IMAGE), {"type": "text", "text": "\n" + text}]


def without_depth_input(content: list[dict]) -> list[dict]:
    """The inverse of :func:`with_depth_input` (the image, then the text); other contents as they are."""
    if len(content) == 5 and content[0].get("text") == ORIGINAL_LABEL and content[2].get("text") == DEPTH_LABEL:
        return [dict(_IMAGE), {"type": "text", "text": content[4]["text"][1:]}]
    return content
