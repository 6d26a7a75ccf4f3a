"""How depth maps and masks are stored in a row, shared by the stages, exports and trainer.

- depth: a lossless 16-bit greyscale PNG of the map in [0, 1], 0 = nearest.
- masks: COCO RLE (pycocotools) with the tight box (xyxy), area and predicted score.
"""
from __future__ import annotations

import io

import numpy as np


def encode_png16(depth01: np.ndarray) -> bytes:
    """A depth map in [0, 1] -> 16-bit PNG bytes (values outside are clipped)."""
    from PIL import Image

    buffer = io.BytesIO()
    values = np.round(np.clip(depth01, 0.0, 1.0) * 65535).astype(np.uint16)
    Image.fromarray(values).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png16(data: bytes) -> np.ndarray:
    """16-bit PNG bytes -> the depth map in [0, 1] (float64).

    >>> float(decode_png16(encode_png16(np.full((2, 3), 0.5)))[1, 2])
    0.5000076295109483
    """
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64) / 65535.0


def encode_mask(mask: np.ndarray, score: float) -> dict:
    """A boolean mask -> {size, counts (COCO RLE string), box (xyxy), area, score}.

    >>> m = np.zeros((4, 5), bool); m[1:3, 2:4] = True
    >>> entry = encode_mask(m, 0.91); entry["box"], entry["area"]
    ([2.0, 1.0, 4.0, 3.0], 4)
    >>> bool((decode_mask(entry) == m).all())
    True
    """
    from pycocotools import mask as coco

    rle = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
    x, y, w, h = (float(v) for v in coco.toBbox(rle))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii"),
            "box": [x, y, x + w, y + h], "area": int(coco.area(rle)), "score": round(float(score), 4)}


def decode_mask(entry: dict) -> np.ndarray:
    """The boolean mask of an encoded entry."""
    from pycocotools import mask as coco

    return coco.decode({"size": entry["size"], "counts": entry["counts"].encode("ascii")}).astype(bool)
