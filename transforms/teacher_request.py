"""What a VLM teacher is sent: the system prompt, and per chain step a line naming the
boxes and depths plus the image with those boxes drawn on it (as a data URL)."""
from __future__ import annotations

import base64
import io

from PIL import Image, ImageDraw

import prompts
from schemas.cot import Area, render_area
from schemas.record import ChainStep, Record

ROLES = {"full": "the whole image", "distractor": "a distractor: a nearby region without the answer",
         "union": "the region spanning all the evidence", "expansion": "closer to the evidence",
         "gt": "the evidence"}


def step_area(step: ChainStep) -> str:
    depths = step.depths or [None] * len(step.boxes)
    return render_area([Area(tuple(b), d) for b, d in zip(step.boxes, depths)])


def downscale(image_bytes: bytes, max_side: int) -> Image.Image:
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # boxes are normalised: unaffected
    return image


def with_boxes(image: Image.Image, boxes: list[list[float]], fmt: str) -> str:
    """A data URL of ``image`` with the normalised ``boxes`` outlined in red."""
    drawn = image.copy()
    draw = ImageDraw.Draw(drawn)
    w, h = drawn.size
    width = max(2, round(max(w, h) / 200))
    for x1, y1, x2, y2 in boxes:
        draw.rectangle([x1 * w, y1 * h, x2 * w - 1, y2 * h - 1], outline=(255, 0, 0), width=width)
    buffer = io.BytesIO()
    drawn.save(buffer, format="JPEG" if fmt == "jpeg" else "PNG", quality=90)
    return f"data:image/{fmt};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def build_messages(record: Record, max_side: int = 1024, fmt: str = "jpeg") -> list[dict]:
    """The chat messages for one record (OpenAI format, images inline)."""
    image = downscale(record.image, max_side)
    n = len(record.chain)
    content: list[dict] = []
    for i, step in enumerate(record.chain, 1):
        line = prompts.render("teacher_step", index=i, n_steps=n, role=ROLES.get(step.kind, step.kind),
                              area=step_area(step))
        content += [{"type": "text", "text": line},
                    {"type": "image_url", "image_url": {"url": with_boxes(image, step.boxes, fmt)}}]
    system = prompts.render("teacher_system", question=record.question, answer=record.answer, n_steps=n)
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def reask_messages(messages: list[dict], reply: str, reason: str, detail: str) -> list[dict]:
    """The conversation so far plus one request to fix the named violation."""
    fix = prompts.render("teacher_reask", reason=reason, detail=detail)
    return messages + [{"role": "assistant", "content": reply}, {"role": "user", "content": fix}]
