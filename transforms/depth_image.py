"""The depth image a sif model sees beside the image (``sif.depth_input``, SIF-50K's second input).

A pure core (``attach_depth_image``) run per record by a ``Stage`` after validation: only
written sif rows pay for the rendering.
"""
from __future__ import annotations

from groundcot.schemas.codecs import decode_png16
from groundcot.schemas.depth import render_depth
from groundcot.schemas.record import Record


def attach_depth_image(record: Record, depth_input: bool = True, depth_colormap: str = "Spectral_r") -> Record:
    """Render a sif record's depth map as its ``depth_image`` (nothing for other styles, when
    ``depth_input`` is off, or when the record has no depth map)."""
    if record.style == "sif" and depth_input and record.depth_map is not None:
        record.depth_image = render_depth(decode_png16(record.depth_map), depth_colormap)
    return record
