"""What a VLM teacher is sent, per style, and how its reply becomes the style's turns.

sif and textual: the system prompt, and per chain step a line naming the boxes and depths
plus the image with those boxes drawn on it (data URLs). mgpo: the image with its region
drawn and the region's crop. aperture: the image, then each planned action with its crop.
"""
from __future__ import annotations

import base64
import io
import json

from PIL import Image, ImageDraw

from groundcot import prompts
from groundcot.schemas.cot import extract_cot, render_area
from groundcot.schemas.record import Record
from groundcot.schemas.styles import split_aperture

ROLES = {"full": "the whole image", "distractor": "a distractor: a nearby region without the answer",
         "union": "the region spanning all the evidence", "expansion": "closer to the evidence",
         "gt": "the evidence"}


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
    return data_url(drawn, fmt)


def data_url(image: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if fmt == "jpeg" else "PNG", quality=90)
    return f"data:image/{fmt};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def _picture(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def build_messages(record: Record, max_side: int = 1024, fmt: str = "jpeg") -> list[dict]:
    """The chat messages for one record in its style (OpenAI format, images inline)."""
    return BUILDERS[record.style or "sif"](record, max_side, fmt)


def _chain_messages(record: Record, max_side: int, fmt: str, system_prompt: str) -> list[dict]:
    image = downscale(record.image, max_side)
    n = len(record.chain)
    content: list[dict] = []
    for i, step in enumerate(record.chain, 1):
        line = prompts.render("teacher_step", index=i, n_steps=n, role=ROLES.get(step.kind, step.kind),
                              area=render_area(step.areas()))
        content += [{"type": "text", "text": line}, _picture(with_boxes(image, step.boxes, fmt))]
    system = prompts.render(system_prompt, question=record.question, answer=record.answer, n_steps=n)
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def _sif(record: Record, max_side: int, fmt: str) -> list[dict]:
    return _chain_messages(record, max_side, fmt, "teacher_system")


def _textual(record: Record, max_side: int, fmt: str) -> list[dict]:
    return _chain_messages(record, max_side, fmt, "teacher_textual")


def _mgpo(record: Record, max_side: int, fmt: str) -> list[dict]:
    region = record.actions[0]
    fw, fh = record.frame
    x1, y1, x2, y2 = region["bbox_2d"]
    image = downscale(record.image, max_side)
    crop = Image.open(io.BytesIO(record.crops[0])).convert("RGB")
    system = prompts.render("teacher_mgpo", question=record.question, answer=record.answer,
                            region=json.dumps([{"bbox_2d": region["bbox_2d"], "label": region["label"]}]))
    content = [_picture(with_boxes(image, [[x1 / fw, y1 / fh, x2 / fw, y2 / fh]], fmt)), _picture(data_url(crop, fmt))]
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def _aperture(record: Record, max_side: int, fmt: str) -> list[dict]:
    content = [_picture(data_url(downscale(record.image, max_side), fmt))]
    for i, (action, crop) in enumerate(zip(record.actions, record.crops), 1):
        box = "[" + ", ".join(f"{v:.3f}" for v in action["bbox_2d"]) + "]"
        line = prompts.render("teacher_action", index=i, n_actions=len(record.actions), action=action["action"], box=box)
        content += [{"type": "text", "text": line}, _picture(data_url(Image.open(io.BytesIO(crop)).convert("RGB"), fmt))]
    system = prompts.render("teacher_aperture", question=record.question, answer=record.answer)
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


BUILDERS = {"sif": _sif, "textual": _textual, "mgpo": _mgpo, "aperture": _aperture}


def reply_turns(record: Record, reply: str) -> list[str]:
    """A teacher reply -> the assistant turns of the record's style."""
    style = record.style or "sif"
    if style == "mgpo":  # turn 1 is the planned region, as the model should say it
        region = record.actions[0]
        turn1 = "```json\n" + json.dumps([{"bbox_2d": region["bbox_2d"], "label": region["label"]}]) + "\n```"
        return [turn1, reply.strip()]
    text = extract_cot(reply)
    return split_aperture(text) if style == "aperture" else [text]


def reask_messages(messages: list[dict], reply: str, reason: str, detail: str) -> list[dict]:
    """The conversation so far plus one request to fix the named violation."""
    fix = prompts.render("teacher_reask", reason=reason, detail=detail)
    return messages + [{"role": "assistant", "content": reply}, {"role": "user", "content": fix}]
