"""The depth image a sif model sees beside the image (``sif.depth_input``, SIF-50K's second input).

A pure core (``attach_depth_image``) run per record by a ``Stage`` after validation: only
written sif rows pay for the rendering.
"""
from __future__ import annotations

from groundcot.schemas.codecs import decode_png16
from groundcot.schemas.depth import render_depth
from groundcot.schemas.record import Record
from groundcot.transforms.styles import style_of


def attach_depth_image(record: Record, depth_input: bool = True, depth_colormap: str = "Spectral_r") -> Record:
    """Render the record's depth map as its ``depth_image`` when its style has that column (sif);
    nothing when ``depth_input`` is off or the record has no depth map."""
    if depth_input and record.depth_map is not None and "depth_image" in style_of(record).columns:
        record.depth_image = render_depth(decode_png16(record.depth_map), depth_colormap)
    return record
