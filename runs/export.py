"""``groundcot export``: a run's rows in the layout a trainer reads, one writer per format.

Every writer has the same interface, ``write(rows, dest, rl_depth_image) -> rows written``, where ``rows`` is
the run's ``datasets.Dataset`` with images left as ``{"bytes", "path"}`` (copied out as they
are, never decoded and re-encoded).

- ``trl``: for SFTTrainer, ``data/``: ``images`` (the image, the depth image of sif rows, then the
  crops) + ``messages`` with ``{"type": "image"}`` placeholders in the same order; for GRPOTrainer,
  ``grpo/`` (single-turn rows): a conversational ``prompt`` with its ``images`` (``trainer.data.rl_prompt``)
  and the columns groundcot's reward functions read (``answer``, ``gt_boxes``, ``depth_map``, ...). Parquet.
- ``llamafactory``: per style a sharegpt JSON file whose contents are strings with one
  ``<image>`` per image, an ``images/`` folder, and the ``dataset_info.json`` entries.
- ``verl``: an RL prompt (``trainer.data.rl_prompt``, ``<image>`` in the text), its ``images`` and
  ``reward_model.ground_truth``; ``extra_info`` carries what ``trainer.verl_reward`` needs (the
  GT boxes as lists, the depth map's PNG bytes). Single-turn styles only unless asked; a multi-turn
  style asked for (mgpo, aperture) goes to ``<style>/``: rows for verl's tool agent loop (``agent_name``
  ``tool_agent``, the style's tool prompt, ``extra_info.tools_kwargs`` with the original image for its
  tools) and ``tool_config.yaml`` naming ``trainer.verl_tools.GroundcotTool``.

>>> flat_messages([{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "Hi"}]}])
[{'role': 'user', 'content': '<image>Hi'}]
"""
from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from groundcot.schemas import boxes as B
from groundcot.schemas.runs import read_run
from groundcot.trainer.data import RL_DEPTH_IMAGE, grpo_row, multiturn_row, rl_prompt
from groundcot.transforms.styles import STYLES, get_style

log = logging.getLogger("groundcot")


def images_of(row: dict) -> list[dict]:
    """The row's images in its placeholders' order: the image, the depth image (sif), the crops."""
    depth = [row["depth_image"]] if row.get("depth_image") else []
    return [row["image"], *depth, *row["crops"]]


def flat_messages(messages: list[dict]) -> list[dict]:
    """Structured contents -> strings with ``<image>`` where each image goes."""
    return [{"role": m["role"], "content": "".join("<image>" if p["type"] == "image" else p["text"]
                                                   for p in m["content"])} for m in messages]


def image_suffix(data: bytes) -> str:
    fmt = Image.open(io.BytesIO(data)).format or "PNG"
    return {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}.get(fmt, ".png")


class TrlWriter:
    """TRL's conversational vision rows: ``data/`` for SFTTrainer (``images`` + ``messages``) and, for
    the single-turn rows, ``grpo/`` for GRPOTrainer (``prompt`` + ``images`` + the reward columns)."""

    name = "trl"

    @staticmethod
    def row(row: dict) -> dict:
        return {"id": row["id"], "style": row["style"], "images": images_of(row), "messages": row["messages"]}

    def write(self, rows, dest: Path, rl_depth_image: bool = RL_DEPTH_IMAGE) -> int:
        import datasets

        from groundcot.schemas.columns import features

        full = features()
        images = datasets.List(datasets.Image())
        target = datasets.Features({"id": full["id"], "style": full["style"], "images": images,
                                    "messages": full["messages"]})
        out = rows.map(self.row, remove_columns=rows.column_names, features=target)
        (dest / "data").mkdir(parents=True, exist_ok=True)
        out.to_parquet(str(dest / "data" / "train-00000-of-00001.parquet"))
        single = rows.filter(lambda style: get_style(style).single_turn, input_columns=["style"])
        if len(single):
            paired = {get_style(s).twin for s in set(single["style"])} - {None}  # e.g. textual pairs with sif
            twins = {r["id"]: r["cot"] for r in single if r["style"] in paired}
            text = datasets.Value("string")
            grpo = single.map(lambda r: {**grpo_row(r, twins, rl_depth_image, decode=False), "style": r["style"]},
                              remove_columns=rows.column_names, features=datasets.Features({
                                  "prompt": full["messages"], "images": images, "answer": text, "id": text,
                                  "question": text, "gt_boxes": datasets.List(datasets.List(datasets.Value("float64"))),
                                  "depth_map": datasets.Value("binary"), "twin_text": text, "style": text}))
            (dest / "grpo").mkdir(parents=True, exist_ok=True)
            grpo.to_parquet(str(dest / "grpo" / "train-00000-of-00001.parquet"))
        return len(out)


class LlamaFactoryWriter:
    """LLaMA-Factory's sharegpt multimodal datasets, one file per style, with their dataset_info.json."""

    name = "llamafactory"

    @staticmethod
    def entry(row: dict, image_paths: list[str]) -> dict:
        return {"messages": flat_messages(row["messages"]), "images": image_paths}

    @staticmethod
    def info(name: str, file_name: str) -> dict:
        """The dataset_info.json entry for one exported file (sharegpt, multimodal)."""
        return {name: {"file_name": file_name, "formatting": "sharegpt",
                       "columns": {"messages": "messages", "images": "images"},
                       "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                "assistant_tag": "assistant", "system_tag": "system"}}}

    def write(self, rows, dest: Path, rl_depth_image: bool = RL_DEPTH_IMAGE) -> int:
        (dest / "images").mkdir(parents=True, exist_ok=True)
        entries: dict[str, list] = {}
        for row in rows:
            paths = []
            for k, image in enumerate(images_of(row)):
                name = f"images/{row['id']}-{row['style']}-{k}{image_suffix(image['bytes'])}"
                (dest / name).write_bytes(image["bytes"])
                paths.append(name)
            entries.setdefault(row["style"], []).append(self.entry(row, paths))
        info = {}
        for style, items in entries.items():
            file_name = f"groundcot_{style}.json"
            (dest / file_name).write_text(json.dumps(items, ensure_ascii=False, indent=1))
            info.update(self.info(f"groundcot_{style}", file_name))
        (dest / "dataset_info.json").write_text(json.dumps(info, indent=2))
        return sum(len(v) for v in entries.values())


class VerlWriter:
    """verl's RL rows: the first user turn as the prompt, the answer as the rule reward's ground truth."""

    name = "verl"

    @staticmethod
    def row(row: dict, index: int, rl_depth_image: bool = RL_DEPTH_IMAGE) -> dict:
        gt = [B.to_norm(b, row["width"], row["height"]) for b in row["gt_boxes"]]
        prompt, images = rl_prompt(row, rl_depth_image)
        return {
            "data_source": f"groundcot/{row['source']}/{row['dataset']}",
            "prompt": flat_messages(prompt),
            "images": images,
            "ability": f"grounded_vqa/{row['style']}",
            "reward_model": {"style": "rule", "ground_truth": row["answer"]},
            "extra_info": {"index": index, "id": row["id"], "style": row["style"], "split": row["split"],
                           "question": row["question"], "answer": row["answer"],
                           "gt_boxes": gt, "frame": row["frame"] or [],
                           "depth_map": row["depth_map"]["bytes"] if row.get("depth_map") else None},
        }

    @staticmethod
    def multiturn_row(row: dict, index: int) -> dict:
        """A multi-turn style's row for verl's tool agent loop: its tools get the original image."""
        from groundcot.trainer.verl_tools import tool_schemas

        rl = multiturn_row(row, decode=False)
        create = {"image": row["image"]["bytes"], "frame": rl["frame"], "question": row["question"]}
        return {
            "data_source": f"groundcot/{row['source']}/{row['dataset']}", "agent_name": "tool_agent",
            "prompt": flat_messages(rl["prompt"]), "images": rl["images"],
            "ability": f"grounded_vqa/{row['style']}",
            "reward_model": {"style": "rule", "ground_truth": row["answer"]},
            "extra_info": {"index": index, "id": row["id"], "style": row["style"], "split": row["split"],
                           "question": row["question"], "answer": row["answer"], "gt_boxes": rl["gt_boxes"],
                           "frame": rl["frame"], "multiturn": True, "need_tools_kwargs": True,
                           "tools_kwargs": {s["function"]["name"]: {"create_kwargs": create}
                                            for s in tool_schemas(row["style"])}},
        }

    def write(self, rows, dest: Path, rl_depth_image: bool = RL_DEPTH_IMAGE) -> int:
        single = [s for s in sorted(set(rows["style"])) if get_style(s).single_turn]
        n = self.write_single(rows.filter(lambda r: r["style"] in single), dest, rl_depth_image) if single else 0
        for style in sorted(set(rows["style"]) - set(single)):
            n += self.write_multiturn(rows.filter(lambda r, s=style: r["style"] == s), dest / style, style)
        return n

    def write_multiturn(self, rows, dest: Path, style: str) -> int:
        import datasets
        import yaml

        from groundcot.trainer.verl_tools import tool_config, tool_schemas

        text, ints = datasets.Value("string"), datasets.List(datasets.Value("int32"))
        create = {"create_kwargs": {"image": datasets.Value("binary"), "frame": ints, "question": text}}
        target = datasets.Features({
            "data_source": text, "agent_name": text, "prompt": datasets.List({"role": text, "content": text}),
            "images": datasets.List(datasets.Image()), "ability": text,
            "reward_model": {"style": text, "ground_truth": text},
            "extra_info": {**{k: text for k in ("id", "style", "split", "question", "answer")},
                           "index": datasets.Value("int64"),
                           "gt_boxes": datasets.List(datasets.List(datasets.Value("float64"))), "frame": ints,
                           "multiturn": datasets.Value("bool"), "need_tools_kwargs": datasets.Value("bool"),
                           "tools_kwargs": {s["function"]["name"]: create for s in tool_schemas(style)}}})
        out = rows.map(self.multiturn_row, with_indices=True, remove_columns=rows.column_names, features=target)
        dest.mkdir(parents=True, exist_ok=True)
        out.to_parquet(str(dest / "train.parquet"))
        (dest / "tool_config.yaml").write_text(yaml.safe_dump(tool_config(style), sort_keys=False))
        return len(out)

    def write_single(self, rows, dest: Path, rl_depth_image: bool = RL_DEPTH_IMAGE) -> int:
        import datasets

        text = datasets.Value("string")
        target = datasets.Features({
            "data_source": text, "prompt": datasets.List({"role": text, "content": text}),
            "images": datasets.List(datasets.Image()), "ability": text,
            "reward_model": {"style": text, "ground_truth": text},
            "extra_info": {**{k: text for k in ("id", "style", "split", "question", "answer")},
                           "index": datasets.Value("int64"), "gt_boxes": datasets.List(datasets.List(datasets.Value("float64"))),
                           "frame": datasets.List(datasets.Value("int32")), "depth_map": datasets.Value("binary")}})
        out = rows.map(lambda r, i: self.row(r, i, rl_depth_image), with_indices=True,
                       remove_columns=rows.column_names, features=target)
        dest.mkdir(parents=True, exist_ok=True)
        out.to_parquet(str(dest / "train.parquet"))
        return len(out)


WRITERS = {w.name: w for w in (TrlWriter(), LlamaFactoryWriter(), VerlWriter())}
FORMATS = tuple(WRITERS)


def export(run: str, fmt: str, dest: str | None = None, styles: Sequence[str] | None = None,
           rl_depth_image: bool = RL_DEPTH_IMAGE) -> tuple[Path, int]:
    """Write ``run``'s rows (only ``styles``, when given) as ``fmt`` to ``dest`` (default RUN/exports/FMT);
    ``rl_depth_image``: the RL prompts (verl, trl's grpo/) show sif rows' depth image too.

    Raises ``RunNotFound`` when ``run`` holds no shards, ValueError when no row has the styles asked for.
    """
    import datasets

    datasets.disable_progress_bars()
    if fmt == "verl" and not styles:
        styles = [name for name, style in STYLES.items() if style.single_turn]  # a single-turn rollout cannot produce the multi-turn styles
    rows = read_run(run, styles=styles, decode_images=False)
    if not len(rows):
        have = sorted(set(read_run(run, decode_images=False)["style"])) if styles else []
        raise ValueError(f"{run}: no rows of style {', '.join(styles)} (it has {', '.join(have) or 'none'})"
                         if styles else f"{run}: the run has no rows")
    target = Path(dest or f"{run.rstrip('/')}/exports/{fmt}")
    n = WRITERS[fmt].write(rows, target, rl_depth_image)
    log.info("exported %d rows as %s to %s", n, fmt, target)
    return target, n
