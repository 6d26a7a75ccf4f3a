"""Trajectory styles from one run: fan each record out per style, then plan its crops.

- sif, textual: no crops.
- mgpo: the GT region in whole pixels of the frame the model sees (its own size, or
  Qwen2.5-VL's resize), one crop of it from the full-resolution image.
- aperture: one action per focus step of the chain (union, expansion, GT): ``segment``
  (a SAM2 mask crop) for a single irregular GT object, ``zoom`` (a rectangle) otherwise.
"""
from __future__ import annotations

import copy
import io
import math

from PIL import Image

from groundcot.schemas import boxes as B
from groundcot.schemas.codecs import decode_mask
from groundcot.schemas.record import Record
from groundcot.transforms.crops import crop, png

STAGE = "styles"
FOCUS = ("union", "expansion", "gt")


def fan_out(record: Record, styles: list[str]) -> list[Record]:
    """One record per style; a rejected record stays one record (it is rejected for all)."""
    if record.rejection is not None:
        record.style = ""  # rejected for every style
        return [record]
    out = []
    for style in styles:
        twin = copy.copy(record)  # shared lists are never mutated in place downstream
        twin.style = style
        out.append(twin)
    return out


def model_frame(width: int, height: int, frame: str, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    if frame == "original":
        return width, height
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    h, w = smart_resize(height, width, factor=28, min_pixels=min_pixels, max_pixels=max_pixels)
    return w, h


def label_of(record: Record) -> str:
    return " and ".join(dict.fromkeys(record.labels)) or "evidence"


def plan_mgpo(record: Record, image: Image.Image, frame: str, min_pixels: int, max_pixels: int,
              min_side: int, max_aspect: float) -> None:
    fw, fh = model_frame(record.width, record.height, frame, min_pixels, max_pixels)
    x1, y1, x2, y2 = B.enclosing(record.gt_boxes)
    sx, sy = fw / record.width, fh / record.height
    region = [max(0, math.floor(x1 * sx)), max(0, math.floor(y1 * sy)),
              min(fw, math.ceil(x2 * sx)), min(fh, math.ceil(y2 * sy))]
    piece, _ = crop(image, region, frame=(fw, fh), min_side=min_side, max_aspect=max_aspect)
    record.frame, record.crops = [fw, fh], [png(piece)]
    record.actions = [{"bbox_2d": region, "label": label_of(record)}]


def _irregular(mask: dict, box: list[float]) -> bool:
    """A mask that fills little of its box: a segment crop shows it better than a rectangle."""
    return mask["area"] > 0 and mask["area"] < 0.8 * max(B.area(box), 1.0)


def plan_aperture(record: Record, image: Image.Image, min_side: int, max_aspect: float) -> None:
    steps = [s for s in record.chain if s.kind in FOCUS] or record.chain[-1:]
    actions, crops = [], []
    for step in steps:
        box = B.enclosing(step.boxes)
        mask = record.masks[0] if (step.kind == "gt" and record.masks and len(record.masks) == 1) else None
        if mask is not None and _irregular(mask, record.gt_boxes[0]):
            piece, _ = crop(image, box, mask=decode_mask(mask), min_side=min_side, max_aspect=max_aspect)
            kind = "segment"
        else:
            piece, _ = crop(image, box, min_side=min_side, max_aspect=max_aspect)
            kind = "zoom"
        actions.append({"action": kind, "bbox_2d": box, "step": step.kind,
                        "depth": step.depths[0] if step.depths else None})
        crops.append(png(piece))
    record.actions, record.crops = actions, crops


def plan(record: Record, frame: str = "original", min_pixels: int = 3136, max_pixels: int = 12845056,
         min_side: int = 28, max_aspect: float = 4.0) -> Record:
    """Attach the style's frame, actions and crops."""
    if record.style not in ("mgpo", "aperture"):
        return record
    image = Image.open(io.BytesIO(record.image)).convert("RGB")
    if record.style == "mgpo":
        plan_mgpo(record, image, frame, min_pixels, max_pixels, min_side, max_aspect)
    else:
        plan_aperture(record, image, min_side, max_aspect)
    return record
