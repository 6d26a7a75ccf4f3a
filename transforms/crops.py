"""Crops for the multi-turn styles: one function, rectangle or mask, any coordinate frame.

A box given in another frame (the resized image a model sees, or normalised [0, 1]) is
scaled to the full-resolution image first. The crop grows around its centre to at least
``min_side`` pixels per side (MGPO: > 28), its aspect ratio is capped, and it is shifted
or clipped into the image. A mask crop sets pixels outside the mask to a neutral
colour and crops to the mask's box.
"""
from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
from PIL import Image

NEUTRAL = (124, 116, 104)  # ImageNet-mean grey: neither black nor white


def to_image_frame(box: Sequence[float], frame: tuple[float, float] | None, width: int, height: int) -> list[float]:
    """``box`` in ``frame`` (w, h); None = normalised [0, 1]) -> pixels of the full image."""
    fw, fh = frame if frame is not None else (1.0, 1.0)
    x1, y1, x2, y2 = box
    return [x1 * width / fw, y1 * height / fh, x2 * width / fw, y2 * height / fh]


def crop_box(box: Sequence[float], width: int, height: int, min_side: int = 28,
             max_aspect: float = 4.0) -> tuple[int, int, int, int]:
    """Integer crop rectangle around ``box``: at least ``min_side``, aspect <= ``max_aspect``, in the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = max(x2 - x1, min_side), max(y2 - y1, min_side)
    w, h = max(w, h / max_aspect), max(h, w / max_aspect)  # widen the narrow side
    w, h = min(math.ceil(w - 1e-9), width), min(math.ceil(h - 1e-9), height)  # whole pixels, once
    left = min(max(math.floor(cx - w / 2), 0), width - w)
    top = min(max(math.floor(cy - h / 2), 0), height - h)
    return (left, top, left + w, top + h)


def crop(image: Image.Image, box: Sequence[float], frame: tuple[float, float] | None = None,
         mask: np.ndarray | None = None, min_side: int = 28, max_aspect: float = 4.0) -> tuple[Image.Image, tuple]:
    """The crop of ``image`` for ``box`` (in ``frame``), or of ``mask``; returns (crop, pixel rectangle)."""
    image = image.convert("RGB")
    if mask is not None:
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            raise ValueError("empty mask")
        pixel_box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        pixels = np.asarray(image).copy()
        pixels[~mask] = NEUTRAL
        image = Image.fromarray(pixels)
    else:
        pixel_box = to_image_frame(box, frame, image.width, image.height)
    rect = crop_box(pixel_box, image.width, image.height, min_side, max_aspect)
    return image.crop(rect), rect


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
