"""What each trainer reads, from a groundcot row (images as ``{"bytes", "path"}`` dicts).

- TRL: ``images`` (the image, then the crops) + ``messages`` with ``{"type": "image"}``
  placeholders in the same order.
- LLaMA-Factory: sharegpt ``messages`` whose contents are strings with one ``<image>`` per
  image, plus an ``images`` list of file paths.
- verl: an RL prompt (the first user turn, ``<image>`` in the text), ``images``, and
  ``reward_model.ground_truth``; the GT boxes travel in ``extra_info`` for box rewards.
"""
from __future__ import annotations

import io
import json

from PIL import Image

from groundcot.schemas import boxes as B


def images_of(row: dict) -> list[dict]:
    return [row["image"], *row["crops"]]


def trl_row(row: dict) -> dict:
    return {"id": row["id"], "style": row["style"], "images": images_of(row), "messages": row["messages"]}


def flat_messages(messages: list[dict]) -> list[dict]:
    """Structured contents -> strings with ``<image>`` where each image goes."""
    return [{"role": m["role"], "content": "".join("<image>" if p["type"] == "image" else p["text"]
                                                   for p in m["content"])} for m in messages]


def image_suffix(data: bytes) -> str:
    fmt = Image.open(io.BytesIO(data)).format or "PNG"
    return {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}.get(fmt, ".png")


def sharegpt_entry(row: dict, image_paths: list[str]) -> dict:
    return {"messages": flat_messages(row["messages"]), "images": image_paths}


def verl_row(row: dict, index: int) -> dict:
    first_user = flat_messages(row["messages"][:1])
    gt = [B.to_norm(b, row["width"], row["height"]) for b in row["gt_boxes"]]
    return {
        "data_source": f"groundcot/{row['source']}/{row['dataset']}",
        "prompt": first_user,
        "images": [row["image"]],
        "ability": f"grounded_vqa/{row['style']}",
        "reward_model": {"style": "rule", "ground_truth": row["answer"]},
        "extra_info": {"index": index, "id": row["id"], "style": row["style"], "split": row["split"],
                       "question": row["question"], "answer": row["answer"],
                       "gt_boxes": json.dumps(gt), "frame": json.dumps(row["frame"])},
    }


def llamafactory_info(name: str, file_name: str) -> dict:
    """The dataset_info.json entry for one exported file (sharegpt, multimodal)."""
    return {name: {"file_name": file_name, "formatting": "sharegpt",
                   "columns": {"messages": "messages", "images": "images"},
                   "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                            "assistant_tag": "assistant", "system_tag": "system"}}}
