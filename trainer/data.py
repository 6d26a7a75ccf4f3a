"""groundcot runs -> the rows TRL's trainers read."""
from __future__ import annotations

import numpy as np
from PIL import Image

from groundcot.schemas import boxes as B
from groundcot.schemas.codecs import decode_png16
from groundcot.schemas.runs import read_run

SINGLE_TURN = ("sif", "textual")


def read_runs(data):
    """The rows of the job's runs (local folders or bucket prefixes), filtered as ``data`` says."""
    return read_run(data.runs, styles=data.styles, sources=data.sources, limit=data.limit)


def depth_as_image(depth_png: bytes) -> Image.Image:
    """A 16-bit depth map as an 8-bit RGB image (0 = nearest = black)."""
    depth = decode_png16(depth_png)
    return Image.fromarray((depth * 255).round().astype(np.uint8)).convert("RGB")


def sft_row(row: dict, depth_image: bool = False) -> dict:
    """``images`` + ``messages``; with ``depth_image`` the depth map follows the image."""
    images, messages = [row["image"], *row["crops"]], row["messages"]
    if depth_image and row["depth_map"] is not None:
        images.insert(1, depth_as_image(row["depth_map"]["bytes"]))
        first = messages[0]["content"]
        messages = [{**messages[0], "content": first[:1] + [{"type": "image", "text": None}] + first[1:]},
                    *messages[1:]]
    return {"images": images, "messages": messages}


def grpo_row(row: dict, twins: dict[str, str] | None = None) -> dict:
    """A conversational ``prompt`` (the first user turn), its image, and what the rewards need."""
    if row["style"] not in SINGLE_TURN:
        raise ValueError(f"GRPO here rolls out one turn; style {row['style']!r} needs several (use sif or textual)")
    return {
        "prompt": row["messages"][:1], "images": [row["image"]], "answer": row["answer"], "id": row["id"],
        "question": row["question"],
        "gt_boxes": [B.to_norm(b, row["width"], row["height"]) for b in row["gt_boxes"]],
        "depth_map": row["depth_map"]["bytes"] if row["depth_map"] else None,
        "twin_text": (twins or {}).get(row["id"], row["cot"]),  # textual rows: their grounded (sif) twin
    }


def sft_dataset(data):
    ds = read_runs(data)
    return ds.map(lambda r: sft_row(r, data.depth_image), remove_columns=ds.column_names)


def grpo_dataset(data):
    ds = read_runs(data)
    twins = None
    if "textual" in data.styles:
        grounded = read_runs(data.model_copy(update={"styles": ["sif"], "limit": None}))
        twins = dict(zip(grounded["id"], grounded["cot"]))
    return ds.map(lambda r: grpo_row(r, twins), remove_columns=ds.column_names)
