"""``groundcot inspect RUN``: a static report of a run, one ``index.html`` plus PNGs, opened from disk.

What it shows: the run's counts (stats.json), rejection reasons with a few examples each, the
distributions (HIoU, chain length, GT box area share, depth of the evidence, CoT length), the
critic's score distribution per style and its lowest-scoring rows with their reasons, and a
gallery of sampled rows per style, each drawn with its chain's boxes numbered in step colours, its
depth map, its masks and crops, and its text with every ``<area>``/``<zoom>`` coloured like its box.

Large runs stay cheap: the plots read a few small columns, and the gallery reads only the row
groups that hold its sampled rows.
"""
from __future__ import annotations

import heapq
import html
import io
import json
import os
import random
import re
import sys
from bisect import bisect_right
from collections import defaultdict

from groundcot.schemas.runs import RunChanging, RunNotFound, consistent, style_shards
from groundcot.transforms.styles import STYLES, in_order

MAX_SIDE = 480  # gallery images are downscaled to this (boxes are normalised: unaffected)
STAT_ROWS = 200_000  # rows per style the distributions read at most (whole row groups, first ones)
EXAMPLES_PER_REASON = 3
LOWEST = 5  # the critic's lowest-scoring rows shown per style
SKIPPED = {"messages", "depth_image"}  # never shown: the gallery draws from the other columns
TAGS = re.compile(r"<area>.*?</area>|<zoom>.*?</zoom>|```json.*?```", re.DOTALL)


def main(args) -> int:
    run = args.run.rstrip("/")
    # the report is written here; a run in a bucket gets its report in the working directory
    out = args.out or (f"{run.rsplit('/', 1)[-1]}-report" if "://" in run else f"{run}/report")
    try:
        index = consistent(run, lambda: write_report(run, out, per_style=args.per_style, seed=args.seed))
    except (RunNotFound, FileNotFoundError, RunChanging) as err:
        print(f"groundcot inspect: {err}", file=sys.stderr)
        return 2
    print(f"report: {index}")
    return 0


# --- reading ---------------------------------------------------------------------------------------

def _open(path: str):
    import fsspec

    return fsspec.open(path, "rb").open()


def read_stats(run: str) -> dict:
    try:
        with _open(f"{run}/stats.json") as handle:
            return json.loads(handle.read())
    except FileNotFoundError:
        raise RunNotFound(f"{run}: no stats.json (not a finished groundcot run)") from None


def steps_of(row: dict) -> list[list[list[float]]]:
    """The row's focus steps as normalised boxes: its chain, else its actions (in ``frame`` pixels
    when the row has a frame, else normalised)."""
    if row.get("chain"):
        return [list(step["boxes"] or []) for step in row["chain"]]
    found = []
    for action in row.get("actions") or []:
        box = action.get("bbox_2d")
        if not box:
            continue
        if row.get("frame"):
            fw, fh = row["frame"]
            box = [box[0] / fw, box[1] / fh, box[2] / fw, box[3] / fh]
        found.append([list(box)])
    return found


PER_RECORD = ("area", "depth")  # the same in every style's row of a record: counted once per record


def distributions(shards: dict[str, list[str]]) -> tuple[dict, dict]:
    """Per style: HIoU, chain length, CoT length; per record (keyed by id, whichever style's row comes
    first): GT area share and evidence depth; and per style the rows read / rows."""
    import pyarrow.parquet as pq

    values: dict = {k: defaultdict(list) for k in ("hiou", "steps", "area", "depth", "cot", "critic", "lowest")}
    seen: dict = {}
    for style, paths in shards.items():
        read, total = 0, 0
        for path in paths:
            with _open(path) as handle:
                pf = pq.ParquetFile(handle)
                total += pf.metadata.num_rows
                names = set(pf.schema_arrow.names)
                cols = [c for c in ("id", "hiou", "gt_boxes", "width", "height", "cot", "chain", "actions", "frame", "style",
                                    "question", "critic_score", "critic_reason") if c in names]
                for g in range(pf.metadata.num_row_groups):
                    if read >= STAT_ROWS:
                        break
                    rows = pf.read_row_group(g, columns=cols).to_pylist()
                    read += len(rows)
                    for row in rows:
                        _measure(style, row, values)
        seen[style] = (read, total)
    return {k: dict(v) for k, v in values.items()}, seen


def _measure(style: str, row: dict, values: dict) -> None:
    if row.get("hiou") is not None:
        values["hiou"][style].append(row["hiou"])
    values["steps"][style].append(len(steps_of(row)))
    record = row.get("id") or f"{style}-{len(values['steps'][style])}"
    w, h = row.get("width") or 0, row.get("height") or 0
    if w and h and record not in values["area"]:
        values["area"][record] = [max(0.0, (b[2] - b[0]) * (b[3] - b[1])) / (w * h) for b in row.get("gt_boxes") or []]
    chain = row.get("chain") or []
    if chain and chain[-1].get("depths") and record not in values["depth"]:
        values["depth"][record] = [d for d in chain[-1]["depths"] if d is not None]
    values["cot"][style].append(len(row.get("cot") or ""))
    if row.get("critic_score") is not None:
        values["critic"][style].append(row["critic_score"])
        lowest = values["lowest"][style]  # a heap of the LOWEST lowest scores, as (-score, id, row)
        entry = (-row["critic_score"], row.get("id") or "", {k: row.get(k) for k in ("id", "question", "critic_reason")})
        (heapq.heappush if len(lowest) < LOWEST else heapq.heappushpop)(lowest, entry)


def critic_section(values: dict, out: str) -> str:
    """The critic's scores per style (a histogram and quartiles) and each style's lowest-scoring rows
    with their reasons; "" when no row has a score."""
    from statistics import quantiles

    from groundcot.runs import plots

    scores = {s: v for s, v in values["critic"].items() if v}
    if not scores:
        return ""
    plots.critic_histogram(scores, os.path.join(out, "img/plot-critic.png"))
    rows = [[s, len(v), f"{min(v):.2f}", *(f"{q:.2f}" for q in (quantiles(v, n=4, method="inclusive")
                                                              if len(v) > 1 else [v[0]] * 3)),
             f"{max(v):.2f}", f"{sum(v) / len(v):.3f}"] for s, v in scores.items()]
    lowest = [[s, f"{-neg:.2f}", row["id"], row["question"] or "", row["critic_reason"] or ""]
              for s, heap in values["lowest"].items() for neg, _, row in sorted(heap, reverse=True)]
    return (figure("img/plot-critic.png", "critic scores per style")
            + table(["style", "rows", "min", "25%", "median", "75%", "max", "mean"], rows)
            + f"<h3>Lowest-scoring rows ({LOWEST} per style)</h3>"
            + table(["style", "score", "id", "question", "critic's reason"], lowest))


def sample_rows(paths: list[str], n: int, seed: int) -> list[dict]:
    """``n`` rows drawn at random (``seed``) from the files, reading only the row groups that hold them."""
    import pyarrow.parquet as pq

    groups, starts, total = [], [], 0
    for path in paths:
        with _open(path) as handle:
            meta = pq.ParquetFile(handle).metadata
        for g in range(meta.num_row_groups):
            groups.append((path, g))
            starts.append(total)
            total += meta.row_group(g).num_rows
    picked = sorted(random.Random(seed).sample(range(total), min(n, total)))
    wanted: dict = defaultdict(list)
    for i in picked:
        k = bisect_right(starts, i) - 1
        wanted[groups[k]].append(i - starts[k])
    rows = []
    for (path, g), offsets in wanted.items():
        with _open(path) as handle:
            pf = pq.ParquetFile(handle)
            cols = [c for c in pf.schema_arrow.names if c not in SKIPPED]
            rows += _rows_at(pf.read_row_group(g, columns=cols), offsets)
    return rows


def _rows_at(table, offsets: list[int]) -> list[dict]:
    """The table's rows at these offsets (sliced: ``take`` with a list imports pandas, 0.15 s)."""
    return [table.slice(i, 1).to_pylist()[0] for i in offsets]


def find_rows(paths: list[str], ids: set[str]) -> dict[str, dict]:
    """The rows with these ids (the ``id`` column is read first; then only the row groups holding them)."""
    import pyarrow.parquet as pq

    found: dict = {}
    for path in paths:
        if len(found) == len(ids):
            break
        with _open(path) as handle:
            pf = pq.ParquetFile(handle)
            for g in range(pf.metadata.num_row_groups):
                got = pf.read_row_group(g, columns=["id"]).column("id").to_pylist()
                offsets = [i for i, v in enumerate(got) if v in ids and v not in found]
                if offsets:
                    cols = [c for c in pf.schema_arrow.names if c not in SKIPPED]
                    for row in _rows_at(pf.read_row_group(g, columns=cols), offsets):
                        found[row["id"]] = row
    return found


def rejected_examples(run: str, k: int = EXAMPLES_PER_REASON) -> dict[str, list[dict]]:
    """The first ``k`` rejected records per reason, read line by line from ``rejected/*.jsonl``."""
    import fsspec
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(f"{run}/rejected/*.jsonl")
    out: dict = defaultdict(list)
    for name in sorted(fs.glob(path)):
        with fsspec.open(f"{fs.unstrip_protocol(name)}", "rt", encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    rec = json.loads(line)
                    if len(out[rec.get("reason", "")]) < k:
                        out[rec.get("reason", "")].append(rec)
    return dict(out)


# --- drawing ---------------------------------------------------------------------------------------

class Folder:
    """The report folder: images written under img/, their links relative to index.html."""

    def __init__(self, out: str):
        self.out = out
        os.makedirs(os.path.join(out, "img"), exist_ok=True)
        for name in os.listdir(os.path.join(out, "img")):  # a previous report's pictures, not others' files
            if re.fullmatch(r"(\d{4}-.*|plot-[a-z]+)\.png", name):
                os.remove(os.path.join(out, "img", name))
        self.n = 0

    def save(self, image, stem: str) -> str:
        self.n += 1
        rel = f"img/{self.n:04d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', stem)}.png"
        # lossless, at half the CPU of the default level 6 (files ~30% larger)
        image.save(os.path.join(self.out, rel), format="PNG", compress_level=1)
        return rel


def _image(data: bytes | None):
    from PIL import Image, ImageOps

    if not data:
        return None
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    return image


def drawn_steps(image, steps: list[list[list[float]]]):
    """``image`` with each step's boxes outlined in its colour and numbered (pictures.numbered)."""
    from groundcot.transforms.styles.pictures import numbered

    return numbered(image, steps)


def drawn_step(image, boxes: list[list[float]], i: int):
    """A copy of ``image`` with step ``i``'s (0-based) boxes in its colour and number."""
    from groundcot.transforms.styles.pictures import colour, draw_boxes

    drawn = image.copy()
    draw_boxes(drawn, boxes, colour(i)[1], str(i + 1))
    return drawn


def with_masks(image, masks: list[dict]):
    """``image`` with each mask tinted in a step colour (masks are resized to the image)."""
    import numpy as np
    from PIL import Image

    from groundcot.schemas.codecs import decode_mask
    from groundcot.transforms.styles.pictures import colour

    pixels = np.asarray(image, dtype=np.float32).copy()
    for i, entry in enumerate(masks):
        mask = Image.fromarray(decode_mask(entry).astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)
        on = np.asarray(mask) > 127
        pixels[on] = 0.5 * pixels[on] + 0.5 * np.array(colour(i)[1], dtype=np.float32)
    return Image.fromarray(pixels.astype(np.uint8))


def depth_picture(data: bytes | None, size):
    from PIL import Image

    from groundcot.schemas.codecs import decode_png16
    from groundcot.schemas.depth import render_depth

    if not data:
        return None
    return Image.open(io.BytesIO(render_depth(decode_png16(data)))).convert("RGB").resize(size)


def coloured_text(text: str) -> str:
    """The assistant text as HTML, the i-th ``<area>``/``<zoom>``/region block in step colour i."""
    from groundcot.transforms.styles.pictures import colour

    parts, last = [], 0
    for i, match in enumerate(TAGS.finditer(text or "")):
        name, rgb = colour(i)
        parts.append(html.escape(text[last:match.start()]))
        parts.append(f'<span class="tag" data-step="{i + 1}" style="border-color:rgb{rgb};background:rgba{(*rgb, 0.18)}"'
                     f' title="step {i + 1} ({name})">{html.escape(match.group(0))}</span>')
        last = match.end()
    parts.append(html.escape((text or "")[last:]))
    return "".join(parts)


def _bytes_of(value) -> bytes | None:
    return value.get("bytes") if isinstance(value, dict) else None


def figure(src: str, caption: str) -> str:
    return f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}"><figcaption>{caption}</figcaption></figure>'


def picture(row: dict):
    """The row's image, downscaled; None for a row without one."""
    return _image(_bytes_of(row.get("image")))


def boxed_picture(row: dict):
    """The row's image (downscaled) with its focus steps' boxes numbered in step colours, and a
    caption; (None, "") for a row without an image."""
    base = picture(row)
    if base is None:
        return None, ""
    steps = steps_of(row)
    return drawn_steps(base, steps), f"{len(steps)} step{'' if len(steps) == 1 else 's'}, numbered"


def padded(image, boxes: list[list[float]], margin: float = 0.05):
    """``image`` on a canvas wide enough for every normalised box, even one outside the image, with
    the image framed in grey; the boxes normalised to that canvas. Unchanged when all lie inside."""
    from PIL import Image, ImageDraw

    xs = [v for b in boxes for v in (b[0], b[2])]
    ys = [v for b in boxes for v in (b[1], b[3])]
    if not boxes or (min(xs) >= 0 and min(ys) >= 0 and max(xs) <= 1 and max(ys) <= 1):
        return image, boxes
    left, top = min(0.0, *xs) - margin, min(0.0, *ys) - margin
    right, bottom = max(1.0, *xs) + margin, max(1.0, *ys) + margin
    w, h = image.size
    canvas = Image.new("RGB", (round(w * (right - left)), round(h * (bottom - top))), (255, 255, 255))
    at = (round(-left * w), round(-top * h))
    canvas.paste(image, at)
    ImageDraw.Draw(canvas).rectangle([at[0] - 1, at[1] - 1, at[0] + w, at[1] + h], outline=(128, 128, 128))
    cw, ch = right - left, bottom - top
    return canvas, [[(b[0] - left) / cw, (b[1] - top) / ch, (b[2] - left) / cw, (b[3] - top) / ch] for b in boxes]


def pictures_of(row: dict, folder: Folder) -> list[str]:
    """The figures of one row: steps drawn, depth map, masks, crops."""
    drawn, caption = boxed_picture(row)
    if drawn is None:
        return []
    base = _image(_bytes_of(row.get("image")))
    stem = f"{row.get('style')}-{row.get('id')}"
    steps = steps_of(row)
    shown = [figure(folder.save(drawn, stem), caption)]
    depth = depth_picture(_bytes_of(row.get("depth_map")), base.size)
    if depth is not None:
        last = len(steps) - 1
        if last >= 0:
            depth = drawn_step(depth, steps[last], last)
        shown.append(figure(folder.save(depth, stem + "-depth"), "depth (near red, far blue), evidence step"))
    if row.get("masks"):
        shown.append(figure(folder.save(with_masks(base, row["masks"]), stem + "-masks"),
                            f"SAM2 masks ({len(row['masks'])})"))
    for i, crop in enumerate(row.get("crops") or []):
        image = _image(_bytes_of(crop))
        if image is not None:
            shown.append(figure(folder.save(image, f"{stem}-crop{i + 1}"), f"crop {i + 1}"))
    return shown


# --- the page --------------------------------------------------------------------------------------

def card(row: dict, folder: Folder, twin: dict | None = None) -> str:
    hiou = "" if row.get("hiou") is None else f" · HIoU {row['hiou']:.3f}"
    head = (f'<h4>{html.escape(row.get("style", ""))} · {html.escape(row.get("source", ""))}/'
            f'{html.escape(row.get("dataset") or "")} · <code>{html.escape(row.get("id", ""))}</code>{hiou}</h4>')
    body = (f'<p class="q"><b>Q:</b> {html.escape(row.get("question") or "")} <b>A:</b> '
            f'{html.escape(row.get("answer") or "")}</p>'
            f'<div class="pics">{"".join(pictures_of(row, folder))}</div>'
            f'<pre class="cot">{coloured_text(row.get("cot") or "")}</pre>')
    if twin is not None:
        body = (f'<div class="pair"><div>{body}</div><div class="twin"><h5>twin ({html.escape(twin.get("style") or "")})</h5>'
                f'<div class="pics">{"".join(pictures_of(twin, folder)[:1])}</div>'
                f'<pre class="cot">{coloured_text(twin.get("cot") or "")}</pre></div></div>')
    return f'<div class="card" data-style="{html.escape(row.get("style", ""))}">{head}{body}</div>'


def rejected_card(rec: dict, folder: Folder, roots: dict[str, str]) -> str:
    """One rejected record: its reason, detail and, where its image can be read, its GT boxes drawn."""
    pic = ""
    root = roots.get(rec.get("source") or "")
    if root and rec.get("image_path"):
        try:
            from PIL import Image

            with _open(f"{root.rstrip('/')}/{rec['image_path']}") as handle:
                data = handle.read()
            w, h = Image.open(io.BytesIO(data)).size
            image = _image(data)
            boxes = [[b[0] / w, b[1] / h, b[2] / w, b[3] / h] for b in rec.get("gt_boxes") or []]
            canvas, boxes = padded(image, boxes)
            outside = " (outside the image: drawn on a padded canvas, the image framed in grey)" * (canvas is not image)
            pic = figure(folder.save(drawn_steps(canvas, [boxes] if boxes else []), f"rejected-{rec.get('id')}"),
                         "GT boxes as given" + outside)
        except (OSError, ValueError):
            pic = ""
    return (f'<div class="rejected-example"><h4>{html.escape(rec.get("reason", ""))} · '
            f'{html.escape(rec.get("stage") or "")} · {html.escape(rec.get("style") or "all styles")} · '
            f'<code>{html.escape(rec.get("id") or "")}</code></h4><p>{html.escape(rec.get("detail") or "")}</p>'
            f'<p class="q"><b>Q:</b> {html.escape(rec.get("question") or "")} <b>A:</b> '
            f'{html.escape(str(rec.get("answer") or ""))}</p><div class="pics">{pic}</div>'
            + (f'<pre class="cot">{coloured_text(rec["cot"])}</pre>' if rec.get("cot") else "") + "</div>")


def table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def summary(stats: dict) -> str:
    parts = [(f"<p>run <code>{html.escape(str(stats.get('run_id', '')))}</code>: {stats.get('records_in', 0)} records "
             f"in, {stats.get('written', 0)} rows written, {stats.get('rejected', 0)} rejected, "
             f"{stats.get('filtered_out', 0)} filtered out by source filters; {stats.get('elapsed_s', '?')} s.</p>")]
    parts.append('<div class="box"><h3>Per source</h3>' + table(
        ["source", "in", "written", "rejected", "filtered"],
        [[s, e.get("in", 0), e.get("written", 0), e.get("rejected", 0), e.get("filtered", 0)]
         for s, e in stats.get("by_source", {}).items()]) + "</div>")
    parts.append('<div class="box"><h3>Per style</h3>' + table(
        ["style", "written", "rejected", "reasons"],
        [[s, e.get("written", 0), e.get("rejected", 0),
          ", ".join(f"{r}: {n}" for r, n in e.get("rejected_by_reason", {}).items())]
         for s, e in stats.get("by_style", {}).items()]) + "</div>")
    teacher = stats.get("teacher", {})
    rows = [["kind", teacher.get("kind")], ["model", teacher.get("model", "—")]]
    rows += [[f"ledger: {k}", v] for k, v in teacher.get("ledger", {}).items()]
    if "estimated_cost_usd" in teacher:
        rows.append(["estimated cost (USD)", teacher["estimated_cost_usd"]])
    rows += [[f"cache: {k}", v] for k, v in (stats.get("cache") or {}).items()]
    quality = [[style, q.get("accepted_first_try", 0), q.get("accepted_after_reask", 0), q.get("reasked", 0),
                q.get("rejected", 0)] for style, q in teacher.get("quality", {}).items()]
    if quality:
        parts.append('<div class="box"><h3>Teacher quality per style</h3>' + table(
            ["style", "accepted first try", "after a re-ask", "re-asked", "rejected"], quality) + "</div>")
    parts.append('<div class="box"><h3>Teacher and cache</h3>' + table(["", ""], rows) + "</div>")
    quality = quality_rows(stats)
    if quality:
        parts.append('<div class="box"><h3>Critic, near-duplicates, mix</h3>' + table(["", ""], quality) + "</div>")
    models = []
    for stage in ("depth", "masks"):
        info = stats.get(f"{stage}_model")
        fallback = " (not available: a TINY RANDOM stand-in was used, noise)" if (info or {}).get("fallback_tiny_random") else ""
        models.append([f"{stage} model", "off" if not info else f"{info.get('requested')}{fallback}"])
    models += [[k, v] for k, v in stats.get("versions", {}).items()]
    parts.append('<div class="box"><h3>Models and versions</h3>' + table(["stage or package", "model or version"], models)
                 + "</div>")
    return parts[0] + '<div class="summary">' + "".join(parts[1:]) + "</div>"


def quality_rows(stats: dict) -> list[list]:
    """The critic's model, calls and rejections, the distinct images per source, the mix asked and obtained."""
    rows = []
    critic = stats.get("critic") or {}
    if critic:
        rows += [["critic model", critic.get("model")], ["critic min_score", critic.get("min_score")],
                 ["critic calls", (critic.get("ledger") or {}).get("requests", 0)]]
        rows += [[f"critic rejected: {r}", n] for r, n in (critic.get("rejected_by_reason") or {}).items()]
        if "estimated_cost_usd" in critic:
            rows.append(["critic estimated cost (USD)", critic["estimated_cost_usd"]])
    images = stats.get("distinct_images") or {}
    if images:
        rows += [["distinct images (near-identical as one)", images.get("all")]]
        rows += [[f"distinct images: {s}", n] for s, n in images.get("by_source", {}).items()]
    mix = stats.get("mix") or {}
    for group, asked in (mix.get("asked") or {}).get("groups", {}).items():
        got = (mix.get("obtained") or {}).get(group, {})
        want = ", ".join(f"{k} {v:g}" for k, v in asked.items())
        rows.append([f"mix {group}", (f"asked {want}; wanted {got.get('wanted', 0)} of {got.get('available', 0)} "
                                      f"available, kept {got.get('kept', 0)}")])
    return rows


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>groundcot report: {title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0 1em; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}
.plots, .summary {{ display: flex; flex-wrap: wrap; gap: 8px 24px; }} .plots figure img {{ max-width: none; border: 1px solid #eee; }}
.card, .rejected-example {{ border: 1px solid #bbb; border-radius: 6px; padding: 8px 12px; margin: 10px 0; }}
.pics {{ display: flex; flex-wrap: wrap; gap: 8px; }} figure {{ margin: 0; }} figure img {{ max-width: 320px; display: block; }}
figcaption {{ font-size: 13px; color: #555; }}
pre.cot {{ white-space: pre-wrap; background: #f7f7f7; padding: 6px; font-size: 13px; }}
.tag {{ border: 2px solid; border-radius: 3px; padding: 0 2px; }}
.pair {{ display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }} .twin {{ border-left: 3px solid #ddd; padding-left: 10px; }}
nav a {{ margin-right: 1em; }}
</style></head><body>
<h1>groundcot report: {title}</h1>
<nav><a href="#summary">summary</a><a href="#rejections">rejections</a><a href="#distributions">distributions</a>{critic_nav}{nav}</nav>
<h2 id="summary">Summary</h2>{summary}
<h2 id="rejections">Rejections</h2>{rejections}
<h2 id="distributions">Distributions</h2><p>{read_note}</p><div class="plots">{plots}</div>
{critic}
<h2 id="gallery">Gallery</h2>{gallery}
</body></html>
"""


def write_report(run: str, out: str, per_style: int = 6, seed: int = 0) -> str:
    """Write OUT/index.html and OUT/img/*.png for the run at ``run``; the path of index.html."""
    from groundcot.runs import plots

    run = run.rstrip("/")
    stats = read_stats(run)
    found = style_shards(run, required=False)  # a run whose every record was rejected shows its rejections
    shards = {style: found[style] for style in in_order(found)}
    folder = Folder(out)

    values, seen = distributions(shards)
    drawn = [("hiou", plots.hiou_histogram, "HIoU"), ("steps", plots.chain_length_histogram, "chain length"),
             ("area", plots.area_share_histogram, "GT box area share (each record's boxes once)"),
             ("depth", plots.evidence_depth_histogram, "depth of the evidence (each record once)"),
             ("cot", plots.cot_length_histogram, "CoT length")]
    plot_html = []
    for key, draw, title in drawn:
        if any(values[key].values()):
            shown = [v for vs in values[key].values() for v in vs] if key in PER_RECORD else values[key]
            draw(shown, os.path.join(out, f"img/plot-{key}.png"))
            plot_html.append(figure(f"img/plot-{key}.png", title))
    read_note = "; ".join(f"{s}: {r} of {t} rows" for s, (r, t) in seen.items())
    critic = critic_section(values, out)

    reasons = stats.get("rejected_by_reason", {})
    plots.rejections_bar(reasons, os.path.join(out, "img/plot-rejections.png"))
    examples = rejected_examples(run)
    roots = {s.get("kind", ""): s.get("image_root") for s in stats.get("config", {}).get("sources", [])
             if s.get("image_root")}
    rejections = [figure("img/plot-rejections.png", "rejected records per reason")]
    for reason, n in reasons.items():
        rejections.append(f'<h3 class="reason" id="reason-{html.escape(reason)}">{html.escape(reason)} ({n})</h3>')
        rejections += [rejected_card(rec, folder, roots) for rec in examples.get(reason, [])]

    gallery, nav = [], []
    for style in shards:
        rows = sample_rows(shards[style], per_style, seed)
        twin = STYLES[style].twin if style in STYLES else None
        twins = find_rows(shards[twin], {r["id"] for r in rows}) if twin in shards else {}
        nav.append(f'<a href="#style-{style}">{style}</a>')
        gallery.append(f'<h3 id="style-{style}">{style} ({len(rows)} of '
                       f'{stats.get("by_style", {}).get(style, {}).get("written", "?")} rows)</h3>')
        gallery += [card(row, folder, twins.get(row["id"])) for row in rows]

    page = PAGE.format(title=html.escape(os.path.basename(run) or run), nav="".join(nav), summary=summary(stats),
                       rejections="".join(rejections), read_note=html.escape(read_note), plots="".join(plot_html),
                       gallery="".join(gallery), critic=critic and f'<h2 id="critic">Critic</h2>{critic}',
                       critic_nav='<a href="#critic">critic</a>' if critic else "")
    index = os.path.join(out, "index.html")
    with open(index, "w", encoding="utf-8") as handle:
        handle.write(page)
    return index
