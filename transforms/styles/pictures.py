"""Images as a VLM teacher is sent them: downscaled, boxes drawn and numbered, inline data URLs."""
from __future__ import annotations

import base64
import io
from functools import lru_cache

from PIL import Image, ImageDraw

# Distinct outline colours for numbered chain steps, with the names the legend uses.
COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (255, 0, 0)), ("blue", (0, 90, 255)), ("green", (0, 200, 0)), ("orange", (255, 150, 0)),
    ("magenta", (255, 0, 255)), ("cyan", (0, 230, 230)), ("yellow", (255, 255, 0)), ("purple", (140, 60, 200)),
    ("brown", (150, 90, 30)), ("white", (255, 255, 255)), ("black", (0, 0, 0)), ("pink", (255, 150, 200)),
)


def colour(i: int) -> tuple[str, tuple[int, int, int]]:
    """The (name, RGB) of step ``i`` (0-based); colours repeat after twelve steps."""
    return COLOURS[i % len(COLOURS)]


def downscale(image_bytes: bytes, max_side: int) -> Image.Image:
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # boxes are normalised: unaffected
    return image


def data_url(image: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if fmt == "jpeg" else "PNG", quality=90)
    return f"data:image/{fmt};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def line_width(image: Image.Image) -> int:
    return max(2, round(max(image.size) / 200))


def pixel_box(box: list[float], w: int, h: int) -> list[int]:
    """A normalised box as the inclusive pixel rectangle its outline is drawn on."""
    x1, y1, x2, y2 = box
    return [round(x1 * w), round(y1 * h), max(round(x1 * w), round(x2 * w) - 1), max(round(y1 * h), round(y2 * h) - 1)]


@lru_cache(maxsize=256)
def tag(label: str, rgb: tuple[int, int, int]) -> Image.Image:
    """A small filled tag in ``rgb`` with ``label`` inked in black or white (rendered once, then pasted)."""
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = draw.textbbox((0, 0), label)
    out = Image.new("RGB", (right - left + 4, bottom - top + 4), rgb)
    draw = ImageDraw.Draw(out)
    draw.fontmode = "1"  # no anti-aliasing: the tag holds only its colour and its ink
    draw.text((2 - left, 2 - top), label, fill=(0, 0, 0) if sum(rgb) > 380 else (255, 255, 255))
    return out


def draw_boxes(image: Image.Image, boxes: list[list[float]], rgb=(255, 0, 0), label: str | None = None) -> None:
    """Outline the normalised ``boxes`` on ``image`` in place; ``label`` goes in a filled tag at
    each box's top-left corner, inside the box."""
    draw = ImageDraw.Draw(image)
    w, h = image.size
    width = line_width(image)
    for box in boxes:
        x1, y1, x2, y2 = pixel_box(box, w, h)
        draw.rectangle([x1, y1, x2, y2], outline=rgb, width=width)
        if label:
            image.paste(tag(label, tuple(rgb)), (x1, y1))


def numbered(image: Image.Image, steps: list[list[list[float]]]) -> Image.Image:
    """A copy of ``image`` with each step's boxes outlined in its colour and tagged with its number
    (1-based), coarse steps first so finer ones stay visible on top."""
    drawn = image.copy()
    for i, boxes in enumerate(steps):
        draw_boxes(drawn, boxes, colour(i)[1], str(i + 1))
    return drawn


def with_boxes(image: Image.Image, boxes: list[list[float]], fmt: str) -> str:
    """A data URL of ``image`` with the normalised ``boxes`` outlined in red."""
    drawn = image.copy()
    draw_boxes(drawn, boxes)
    return data_url(drawn, fmt)


def crop_url(crop_png: bytes, fmt: str, max_side: int) -> tuple[str, tuple[int, int]]:
    """A crop's data URL, downscaled to ``max_side`` like the image, and its size."""
    image = downscale(crop_png, max_side)
    return data_url(image, fmt), image.size


def picture(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}
