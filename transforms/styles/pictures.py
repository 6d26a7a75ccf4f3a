"""Images as a VLM teacher is sent them: downscaled, boxes drawn, inline data URLs."""
from __future__ import annotations

import base64
import io

from PIL import Image, ImageDraw


def downscale(image_bytes: bytes, max_side: int) -> Image.Image:
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # boxes are normalised: unaffected
    return image


def data_url(image: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if fmt == "jpeg" else "PNG", quality=90)
    return f"data:image/{fmt};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def with_boxes(image: Image.Image, boxes: list[list[float]], fmt: str) -> str:
    """A data URL of ``image`` with the normalised ``boxes`` outlined in red."""
    drawn = image.copy()
    draw = ImageDraw.Draw(drawn)
    w, h = drawn.size
    width = max(2, round(max(w, h) / 200))
    for x1, y1, x2, y2 in boxes:
        draw.rectangle([x1 * w, y1 * h, x2 * w - 1, y2 * h - 1], outline=(255, 0, 0), width=width)
    return data_url(drawn, fmt)


def crop_url(crop_png: bytes, fmt: str) -> str:
    return data_url(Image.open(io.BytesIO(crop_png)).convert("RGB"), fmt)


def picture(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}
