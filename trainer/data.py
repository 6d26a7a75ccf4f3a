"""groundcot runs -> the rows TRL's trainers read."""
from __future__ import annotations

import io

from PIL import Image

from groundcot.schemas import boxes as B
from groundcot.schemas.codecs import decode_png16
from groundcot.schemas.depth import render_depth, with_depth_input, without_depth_input
from groundcot.schemas.runs import read_run
from groundcot.transforms.styles import STYLES, get_style

# The RL prompt's depth image, for both RL paths (`groundcot train grpo`'s data.rl_depth_image and
# `groundcot export --format trl/verl --rl-depth-image`). Off, as in GRPO-SIF: its policy rolls out
# on the RGB image alone and only the reward reads the depth map (REFERENCE.md section 2).
RL_DEPTH_IMAGE = False


def read_runs(data):
    """The rows of the job's runs (local folders or bucket prefixes), filtered as ``data`` says."""
    return read_run(data.runs, styles=data.styles, sources=data.sources, limit=data.limit, splits=data.splits)


def _pil(image: dict) -> Image.Image:
    return Image.open(io.BytesIO(image["bytes"])).convert("RGB")


def sft_row(row: dict, depth_image: bool = False, colormap: str = "Spectral_r") -> dict:
    """``images`` + ``messages``, images in placeholder order: the image, the depth image (sif rows
    written with ``sif.depth_input``), then the crops. With ``depth_image``, a sif row written without
    one gets its depth map rendered (``colormap``) and labelled as SIF-50K does."""
    images, messages = [row["image"], *row["crops"]], row["messages"]
    if row.get("depth_image") is not None:
        images.insert(1, _pil(row["depth_image"]))
    elif depth_image and "depth_image" in get_style(row["style"]).columns and row["depth_map"] is not None:
        images.insert(1, _pil({"bytes": render_depth(decode_png16(row["depth_map"]["bytes"]), colormap)}))
        first = messages[0]
        messages = [{**first, "content": with_depth_input(first["content"][-1]["text"])}, *messages[1:]]
    return {"images": images, "messages": messages}


def rl_prompt(row: dict, depth_image: bool = RL_DEPTH_IMAGE) -> tuple[list[dict], list]:
    """A single-turn row's RL prompt (its first user turn) and that turn's images, as the row holds
    them. Without ``depth_image`` a sif row's depth image is left out (RGB only, as in GRPO-SIF)."""
    content = row["messages"][0]["content"]
    if not depth_image:
        content = without_depth_input(content)
    shown = [row["image"], *([row["depth_image"]] if row.get("depth_image") else [])]
    return [{"role": "user", "content": content}], shown[:sum(p["type"] == "image" for p in content)]


def grpo_row(row: dict, twins: dict[str, str] | None = None, depth_image: bool = RL_DEPTH_IMAGE,
             decode: bool = True) -> dict:
    """A conversational ``prompt`` (``rl_prompt``), its ``images`` (PIL with ``decode``, else as the
    row holds them), and what the rewards need."""
    if not get_style(row["style"]).single_turn:
        single = ", ".join(name for name, style in STYLES.items() if style.single_turn)
        raise ValueError(f"a single-turn RL row cannot hold style {row['style']!r}, which needs several turns "
                         f"(its rows go through multiturn_row; single-turn styles: {single})")
    prompt, images = rl_prompt(row, depth_image)
    return {"prompt": prompt, "images": [_pil(i) if decode and isinstance(i, dict) else i for i in images],
            **reward_columns(row, twins)}


def reward_columns(row: dict, twins: dict[str, str] | None = None) -> dict:
    """What the reward functions read of a row, of any style (``groundcot eval`` scores multi-turn rows too)."""
    return {
        "answer": row["answer"], "id": row["id"],
        "question": row["question"],
        "gt_boxes": [B.to_norm(b, row["width"], row["height"]) for b in row["gt_boxes"]],
        "depth_map": row["depth_map"]["bytes"] if row["depth_map"] else None,
        "twin_text": (twins or {}).get(row["id"], row["cot"]),  # textual rows: their grounded (sif) twin
    }


def multiturn_row(row: dict, decode: bool = True) -> dict:
    """A multi-turn style's RL row: the prompt (the image and the style's tool words), the original
    image (the environment crops from it; PIL with ``decode``, else as the row holds it), the frame
    the model's boxes are in, and what the rewards need."""
    style = get_style(row["style"])
    if style.single_turn or not getattr(style, "multiturn_prompt", ""):
        raise ValueError(f"row {row['id']}: style {row['style']!r} has no multi-turn environment")
    frame = list(row.get("frame") or (row["width"], row["height"]))
    text = style.prompt(style.multiturn_prompt, question=row["question"], width=frame[0], height=frame[1])
    return {
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}],
        "images": [_pil(row["image"]) if decode and isinstance(row["image"], dict) else row["image"]],
        "answer": row["answer"], "id": row["id"], "question": row["question"], "frame": frame,
        "gt_boxes": [B.to_norm(b, row["width"], row["height"]) for b in row["gt_boxes"]],
    }


def sft_dataset(data):
    ds = read_runs(data)
    return ds.map(lambda r: sft_row(r, data.depth_image, data.depth_colormap), remove_columns=ds.column_names)


def grpo_dataset(data):
    ds = read_runs(data)
    if not all(get_style(s).single_turn for s in data.styles):
        return ds.map(multiturn_row, remove_columns=ds.column_names)
    twins = None
    paired = sorted({get_style(s).twin for s in data.styles} - {None})  # e.g. textual rows pair with sif's
    if paired:
        grounded = read_runs(data.model_copy(update={"styles": paired, "limit": None}))
        twins = dict(zip(grounded["id"], grounded["cot"]))
    return ds.map(lambda r: grpo_row(r, twins, data.rl_depth_image), remove_columns=ds.column_names)
