"""``groundcot eval MODEL --run RUN``: a model answers a run's held-out rows; the trainer's reward code scores it.

The model is a local folder (transformers; a LoRA adapter folder from ``groundcot train`` goes on its base
model through peft) or, with ``--base-url``, a model an OpenAI-compatible endpoint serves (a vLLM server).
Single-turn styles answer their RL prompt (``trainer.data.rl_prompt``); mgpo and aperture roll out through
``groundcot.trainer.envs.rollout``. Written to OUT:

    generations.jsonl   every row's prompt text, completion, tool calls and reward columns (no image bytes)
    eval.json           per style: rows, the mean of each of its reward parts (``style.reward_parts`` through
                        ``rewards.registry.get_reward``, no progress bonus), HIoU of the last boxes written,
                        tool calls per answer (multi-turn)
    eval.html, eval.png a table and a bar chart of the same figures
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

log = logging.getLogger("groundcot")
SAVED = ("id", "answer", "question", "gt_boxes", "twin_text")  # the reward columns saved with each generation


class EvalError(ValueError):
    """Nothing to evaluate, or a model that cannot be used (one line)."""


# --- the rows ------------------------------------------------------------------------------------------

def eval_rows(run: str, split: str, styles: list[str] | None, limit: int | None) -> dict[str, list[dict]]:
    """Style -> the run's rows of ``split`` (at most ``limit`` per style)."""
    from groundcot.schemas.runs import read_run, split_of, style_shards

    shards = style_shards(run)
    missing = [s for s in styles or () if s not in shards]
    if missing:
        raise EvalError(f"--style {missing[0]}: the run has no such style (it has {', '.join(shards)})")
    have = sorted({split_of(p) for s, paths in shards.items() if not styles or s in styles for p in paths})
    if split not in have:
        raise EvalError(f"--split {split}: {run} has no rows in it (splits: {', '.join(have)}); hold one out with "
                        "`groundcot generate ... --set split.test_fraction=0.2`")
    rows: dict[str, list[dict]] = {}
    for row in read_run(run, styles=styles, splits=[split]):
        if limit is None or len(rows.get(row["style"], [])) < limit:
            rows.setdefault(row["style"], []).append(row)
    return rows


# --- the model -------------------------------------------------------------------------------------------

def images_of(messages: list[dict]) -> list:
    return [p["image"] for m in messages if isinstance(m["content"], list) for p in m["content"]
            if p.get("type") == "image" and p.get("image") is not None]


def plain(messages: list[dict]) -> list[dict]:
    """The messages with their image parts as bare ``{"type": "image"}`` placeholders."""
    return [{**m, "content": [{"type": "image"} if p.get("type") == "image" else p for p in m["content"]]}
            if isinstance(m["content"], list) else m for m in messages]


def pil(image):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(image["bytes"])).convert("RGB") if isinstance(image, dict) else image


def local_model(path: str, max_new_tokens: int):
    """``generate(messages) -> text`` with transformers, greedy; a LoRA adapter folder goes on its base model."""
    import torch

    from groundcot.trainer.models import device_precision, load_model, load_processor

    adapter = Path(path) / "adapter_config.json"
    precision = device_precision("auto")
    try:
        if adapter.is_file() and not (Path(path) / "config.json").is_file():
            base = json.loads(adapter.read_text())["base_model_name_or_path"]
            model = load_model(base, precision, init_adapter=path)
        else:
            model = load_model(path, precision)
        processor = load_processor(path)
    except (OSError, ValueError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise EvalError(f"{path}: cannot load a model there ({first}); give a model folder, a LoRA adapter folder "
                        "or a Hub id, or --base-url for a model an endpoint serves") from None
    model = model.to("cuda" if torch.cuda.is_available() else "cpu").eval()

    def generate(messages: list[dict]) -> str:
        text = processor.apply_chat_template(plain(messages), add_generation_prompt=True)
        images = [pil(i) for i in images_of(messages)]
        inputs = processor(text=[text], images=images or None, return_tensors="pt").to(model.device)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        return processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]

    return generate


def endpoint_model(base_url: str, model: str, api_key_env: str | None, max_new_tokens: int):
    """``generate(messages) -> text`` from an OpenAI-compatible endpoint, temperature 0, images as data URLs."""
    import openai

    from groundcot.transforms.styles.pictures import data_url, picture
    from groundcot.transforms.teach.connection import Connection, EndpointError, check_endpoint, make_client

    conn = Connection(base_url=base_url, model=model, api_key_env=api_key_env)
    try:  # one look before the rows: an endpoint that is down fails at once, not after the client's retries
        check_endpoint(conn, what="--base-url", model_key="MODEL", key_setting="--api-key-env")
    except EndpointError as err:
        raise EvalError(str(err)) from None
    client = make_client(conn, asynchronous=False)

    def part(p: dict) -> dict:
        return picture(data_url(pil(p["image"]), "png")) if p.get("type") == "image" else p

    def generate(messages: list[dict]) -> str:
        # a tool's result (text, and the crop it made) goes back as a user turn: OpenAI's tool messages hold no image
        sent = [{"role": "user" if m["role"] == "tool" else m["role"],
                 "content": [part(p) for p in m["content"]] if isinstance(m["content"], list) else m["content"]}
                for m in messages]
        try:
            reply = client.chat.completions.create(model=model, messages=sent, max_tokens=max_new_tokens,
                                                   temperature=0)
        except openai.OpenAIError as err:  # after the client's retries; never the key
            raise EvalError(conn.redact(f"--base-url {base_url}: {type(err).__name__}: {err}")[:400]) from None
        return reply.choices[0].message.content or ""

    return generate


# --- answering and scoring -----------------------------------------------------------------------------

def single_turn(row: dict, generate) -> dict:
    """The row's RL prompt, its images in their placeholders' parts, answered in one turn."""
    from groundcot.trainer.data import rl_prompt

    prompt, images = rl_prompt(row)
    shown = iter(images)
    messages = [{**m, "content": [{**p, "image": next(shown)} if p["type"] == "image" else p for p in m["content"]]}
                for m in prompt]
    return {"messages": messages, "completion": generate(messages), "tool_calls": 0, "failed_tool_calls": 0}


def answer(row: dict, generate, max_turns: int) -> dict:
    """One rollout of ``row``: ``messages`` (prompt and turns), ``completion``, tool calls."""
    from groundcot.transforms.styles import get_style

    style = get_style(row["style"])
    if style.single_turn:
        return single_turn(row, generate)
    from groundcot.trainer.envs import rollout

    return rollout(style.name, row, generate, max_turns)


def text_only(messages: list[dict]) -> list[dict]:
    """Messages as saved: text parts kept, images as placeholders."""
    return [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str) else
             [{"type": "image"} if p.get("type") != "text" else {"type": "text", "text": p["text"]}
              for p in m["content"]]} for m in messages]


def mean(values: list) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return round(sum(kept) / len(kept), 6) if kept else None


def last_hiou(completion, gt_boxes) -> float:
    """HIoU of the last area the completion wrote against the GT boxes (0 when it wrote none)."""
    from groundcot.schemas.boxes import hiou
    from groundcot.trainer.rewards.format import cot_of

    cot = cot_of(completion)
    return hiou([list(a.box) for a in cot.steps[-1].areas], gt_boxes) if cot and cot.steps else 0.0


def score(style: str, generations: list[dict], depth_maps: list[bytes | None]) -> dict:
    """A style's figures from its generations: each reward part's mean (None values, such as depth without a
    map, left out), HIoU where the style writes boxes, tool calls per answer where it calls tools."""
    from groundcot.trainer.rewards.registry import get_reward, style_parts
    from groundcot.transforms.styles import get_style

    parts = style_parts(style)
    completions = [g["completion"] for g in generations]
    columns = {k: [g[k] for g in generations] for k in SAVED} | {"depth_map": depth_maps}
    figures = {"rows": len(generations),
               "rewards": {p: mean(get_reward(p, progress_bonus=False)(completions, **columns)) for p in parts}}
    if "box" in parts:
        figures["hiou"] = mean([last_hiou(c, gt) for c, gt in zip(completions, columns["gt_boxes"])])
    if not get_style(style).single_turn:
        figures["tool_calls_per_answer"] = mean([g["tool_calls"] for g in generations])
        figures["failed_tool_calls_per_answer"] = mean([g["failed_tool_calls"] for g in generations])
    return figures


def evaluate(model: str, run: str, out: str, split: str = "test", styles: list[str] | None = None,
             limit: int | None = None, base_url: str | None = None, api_key_env: str | None = "OPENAI_API_KEY",
             max_new_tokens: int = 512, max_turns: int = 4) -> dict:
    """Answer the run's ``split`` rows with ``model``, score them, write OUT; the eval.json dict."""
    from groundcot.trainer.data import reward_columns

    rows = eval_rows(run, split, styles, limit)
    generate = (endpoint_model(base_url, model, api_key_env, max_new_tokens) if base_url
                else local_model(model, max_new_tokens))
    os.makedirs(out, exist_ok=True)
    result = {"model": model if base_url else os.path.basename(os.path.normpath(model)),
              "backend": "endpoint" if base_url else "transformers", "run": os.path.basename(os.path.normpath(run)),
              "split": split, "max_new_tokens": max_new_tokens, "max_turns": max_turns, "styles": {}}
    with open(os.path.join(out, "generations.jsonl"), "w", encoding="utf-8") as saved:
        for style, style_rows in rows.items():
            generations, depth_maps = [], []
            for row in style_rows:
                done = answer(row, generate, max_turns)
                columns = reward_columns(row)  # twin_text: the row's own cot (no part eval scores reads it)
                generation = {"style": style, "split": split, "source": row["source"], **{k: columns[k] for k in SAVED},
                              "prompt": text_only(done["messages"][:1]), "completion": done["completion"],
                              "tool_calls": done.get("tool_calls", 0), "failed_tool_calls": done.get("failed_tool_calls", 0)}
                saved.write(json.dumps(generation, ensure_ascii=False) + "\n")
                generations.append(generation)
                depth_maps.append(columns["depth_map"])
            result["styles"][style] = score(style, generations, depth_maps)
            log.info("eval %s: %s", style, json.dumps(result["styles"][style]))
    with open(os.path.join(out, "eval.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
    summary(result, out)
    return result


# --- the summary and the comparison ----------------------------------------------------------------------

def figures_of(result: dict) -> list[tuple[str, str, float | None]]:
    """(style, figure, value) for every figure of an eval.json."""
    found = []
    for style, entry in result["styles"].items():
        found += [(style, part, v) for part, v in entry["rewards"].items()]
        found += [(style, k, v) for k, v in entry.items() if k not in ("rows", "rewards")]
    return found


def summary(result: dict, out: str) -> None:
    """OUT/eval.png (a bar per figure) and OUT/eval.html (a table and the chart)."""
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = figures_of(result)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(found) + 1), 3.2))
    ax.bar(range(len(found)), [v or 0 for _, _, v in found], color="#4c72b0")
    ax.set_xticks(range(len(found)), [f"{s}\n{k}" for s, k, _ in found], fontsize=7, rotation=45, ha="right")
    ax.set_title(f"{result['model']} on {result['run']} ({result['split']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "eval.png"), dpi=100)
    plt.close(fig)
    rows = "".join(f"<tr><td>{html.escape(s)}</td><td>{html.escape(k)}</td><td>{'' if v is None else f'{v:.4f}'}</td></tr>"
                   for s, k, v in found)
    counts = ", ".join(f"{s} {e['rows']}" for s, e in result["styles"].items())
    page = (f"<!doctype html><meta charset='utf-8'><title>groundcot eval</title>"
            f"<h1>{html.escape(result['model'])} on {html.escape(result['run'])} ({html.escape(result['split'])})</h1>"
            f"<p>{result['backend']}, rows per style: {html.escape(counts)}</p>"
            f"<table border='1' cellpadding='4'><tr><th>style</th><th>figure</th><th>value</th></tr>{rows}</table>"
            "<p><img src='eval.png' alt='figures'></p>")
    Path(out, "eval.html").write_text(page, encoding="utf-8")


def read_eval(path: str) -> dict:
    """An eval.json, given as the file or the folder holding it."""
    file = os.path.join(path, "eval.json") if os.path.isdir(path) else path
    try:
        return json.loads(Path(file).read_text())
    except (OSError, ValueError) as err:
        raise EvalError(f"--compare {path}: not an eval.json ({type(err).__name__}: {err})".replace("\n", " ")) from None


def compare(this: dict, other: dict) -> str:
    """Both evals' figures side by side, with the difference."""
    def shown(v):
        return "-" if v is None else f"{v:.4f}"

    a = {(s, k): v for s, k, v in figures_of(this)}
    b = {(s, k): v for s, k, v in figures_of(other)}
    lines = [f"{'style':<10} {'figure':<30} {this['model'][:14]:>14} {other['model'][:14]:>14} {'diff':>8}"]
    for key in list(a) + [k for k in b if k not in a]:
        x, y = a.get(key), b.get(key)
        diff = f"{x - y:+.4f}" if x is not None and y is not None else "-"
        lines.append(f"{key[0]:<10} {key[1]:<30} {shown(x):>14} {shown(y):>14} {diff:>8}")
    return "\n".join(lines)


def default_out(run: str, model: str) -> str:
    return f"{run.rstrip('/')}/eval/{re.sub(r'[^A-Za-z0-9._-]+', '_', os.path.basename(os.path.normpath(model)))}"
