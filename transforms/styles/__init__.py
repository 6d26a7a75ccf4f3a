"""Trajectory styles: one module per style, and the registry every stage looks them up in.

Each style (see ``base.Style``) plans its frame, actions and crops, writes the template
teacher's turns, builds a VLM teacher's request and reads its reply, checks a written
trajectory, and lays out the training conversation. Adding a style is one module here
and one entry in ``STYLES``. The grammars themselves are in ``groundcot.schemas``.
"""
from __future__ import annotations

import copy
import io

from PIL import Image

from groundcot.schemas.record import Record
from groundcot.transforms.styles.aperture import Aperture
from groundcot.transforms.styles.base import Checks, CropSettings, Style
from groundcot.transforms.styles.mgpo import Mgpo
from groundcot.transforms.styles.sif import Sif
from groundcot.transforms.styles.textual import Textual

STYLES: dict[str, Style] = {s.name: s for s in (Sif(), Mgpo(), Aperture(), Textual())}
NAMES = tuple(STYLES)
STAGE = "styles"

__all__ = ["STYLES", "NAMES", "Checks", "CropSettings", "Style", "style_of", "fan_out", "plan"]


def style_of(record: Record) -> Style:
    return STYLES[record.style or "sif"]


def fan_out(record: Record, styles: list[str]) -> list[Record]:
    """One record per style; a rejected record stays one record (it is rejected for all)."""
    if record.rejection is not None:
        record.style = ""  # rejected for every style
        return [record]
    out = []
    for name in styles:
        twin = copy.copy(record)  # shared lists are never mutated in place downstream
        twin.style = name
        out.append(twin)
    return out


def plan(record: Record, **crops) -> Record:
    """Attach the style's frame, actions and crops (``crops``: the config's crops section)."""
    style = style_of(record)
    image = Image.open(io.BytesIO(record.image)).convert("RGB") if style.plans_crops else None
    style.plan(record, image, CropSettings(**crops))
    return record
