"""The run's dataset card: ``README.md`` with Hub metadata, and its figures under ``figures/``.

``write_card(run)`` reads the run's ``stats.json`` and Parquet shards (local or a bucket prefix) and
writes the card that makes the folder Hub-ready: one ``datasets`` config per style (its features and
split sizes), the license derived from the sources used, how the data was made, counts, rejections,
example rows, how to load and train on it, and the citations of what was used.
"""
from __future__ import annotations

import io
import json
import os
import re
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from groundcot.schemas.runs import read_bytes, split_of, style_shards
from groundcot.transforms.styles import STYLES, in_order

if TYPE_CHECKING:  # the sources import Beam: only provenance() needs them (publish of a run with a card does not)
    from groundcot.transforms.sources import Provenance

CARD, FIGURES = "README.md", "figures"
EXAMPLE_COLUMNS = ("source", "dataset", "image_path", "question", "answer", "gt_boxes", "cot", "image", "chain",
                   "actions", "frame", "hiou")  # what an example shows: its text, its image with its steps boxed
FIGURE_TITLES = {"hiou.png": "HIoU per style (the styles whose rows have boxes)",
                 "chain_length.png": "Steps per trajectory, per style",
                 "rejections.png": "Rejected records by reason"}
TASKS = ["visual-question-answering", "image-text-to-text"]
SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]

CITATIONS = {  # the models' (each source and style carries its own)
    "Depth-Anything-V2": "@article{yang2024depthanythingv2,\n  title={Depth Anything V2},\n  author={Yang, Lihe and "
                         "Kang, Bingyi and Huang, Zilong and Zhao, Zhen and Xu, Xiaogang and Feng, Jiashi and Zhao, "
                         "Hengshuang},\n  journal={arXiv preprint arXiv:2406.09414},\n  year={2024}\n}",
    "SAM2": "@article{ravi2024sam2,\n  title={SAM 2: Segment Anything in Images and Videos},\n  author={Ravi, Nikhila "
            "and Gabeur, Valentin and Hu, Yuan-Ting and Hu, Ronghang and Ryali, Chaitanya and Ma, Tengyu and "
            "others},\n  journal={arXiv preprint arXiv:2408.00714},\n  year={2024}\n}",
}


# --- reading the run ------------------------------------------------------------------------------------

def write_bytes(path: str, data: bytes) -> None:
    import fsspec  # local paths and bucket URLs alike, as the run is read (Beam is not imported)

    with fsspec.open(path, "wb") as handle:  # makes a local path's folders
        handle.write(data)


def scan(run: str) -> dict:
    """What the card shows from the shards, read column by column (images are never loaded)."""
    import fsspec
    import pyarrow.parquet as pq

    found = {"splits": defaultdict(Counter), "bytes": defaultdict(Counter), "hiou": defaultdict(list),
             "steps": defaultdict(list), "by_source": defaultdict(Counter), "datasets": defaultdict(set), "examples": {},
             "features": {}}
    try:
        shards = style_shards(run)
    except FileNotFoundError:
        return found
    for style in in_order(shards):
        paths = shards[style]
        steps_column = "chain" if style not in STYLES or "chain" in STYLES[style].columns else "actions"
        for path in paths:
            with fsspec.open(path, "rb") as handle:
                pf = pq.ParquetFile(handle)
                split = split_of(path)
                found["features"].setdefault(style, pf.schema_arrow)
                found["splits"][style][split] += pf.metadata.num_rows
                found["bytes"][style][split] += sum(pf.metadata.row_group(i).total_byte_size
                                                    for i in range(pf.metadata.num_row_groups))
                table = pf.read(columns=["hiou", "source", "dataset", steps_column])
            found["hiou"][style] += [v for v in table.column("hiou").to_pylist() if v is not None]
            found["steps"][style] += [len(v or []) for v in table.column(steps_column).to_pylist()]
            found["by_source"][style].update(table.column("source").to_pylist())
            for source, dataset in zip(table.column("source").to_pylist(), table.column("dataset").to_pylist()):
                found["datasets"][source].add(dataset)
            if style not in found["examples"] and pf.metadata.num_rows:
                columns = [c for c in EXAMPLE_COLUMNS if c in pf.schema_arrow.names]
                with fsspec.open(path, "rb") as handle:  # one row: its image, not the row group's
                    first = next(pq.ParquetFile(handle).iter_batches(batch_size=1, columns=columns))
                found["examples"][style] = first.to_pylist()[0]
    return found


# --- what the card says -------------------------------------------------------------------------------

def size_category(n: int) -> str:
    return next((name for top, name in SIZES if n < top), "n>1B")


def provenance(sources: list[dict], datasets: dict[str, set[str]]) -> list[Provenance]:
    """Each configured source's provenance (from its module, or its `card:` block), given the sub-datasets
    (``dataset`` column) of its rows; a kind not registered here claims nothing."""
    from groundcot.transforms.sources import Provenance, SourceError, get_source

    found = []
    for src in sources:
        kind = src.get("kind", "?")
        try:
            source = get_source(kind)
            found.append(source.card(source.Config.model_validate(src), datasets.get(kind, set())))
        except (SourceError, ValueError):  # pydantic's ValidationError is a ValueError
            found.append(Provenance(None, f"{kind}: see the source's terms."))
    return found


def licenses(provenances: list[Provenance]) -> tuple[str, dict, list[str]]:
    """(Hub license id, extra metadata, notes): one licence shared by every source, else ``other``."""
    ids = {p.license for p in provenances}
    restricted = [note for p in provenances for note in p.restricted]
    notes = list(dict.fromkeys([p.terms for p in provenances] + restricted))
    if len(ids) == 1 and None not in ids and not restricted:
        return ids.pop(), {}, notes
    return "other", {"license_name": "mixed-source-terms"}, notes


def shown_path(path) -> str:
    """A path as the card may show it: a bucket URL as it is, a local path by its file name only."""
    return ", ".join(p if "://" in p else os.path.basename(p.rstrip("/"))
                     for p in ([path] if isinstance(path, str) else path or []))


def prompt_hashes(replaced: dict | None = None) -> dict[str, str]:
    """sha256 (first 12 hex digits) of every prompt the run used, "(replaced)" after those the job's
    ``prompts:`` section replaced (``replaced``: that section as stats.json echoes it)."""
    from groundcot import prompts

    texts = {name: entry["text"] for name, entry in (replaced or {}).items()}
    return {name: h + (" (replaced)" if name in texts else "") for name, h in prompts.hashes(texts).items()}


def model_line(label: str, info: dict | None, section: dict) -> str:
    """One line naming a model stage's model and revision (or why there is none)."""
    if not section.get("enabled", True):
        return f"- {label}: off"
    name = (info or {}).get("requested") or section.get("model", "")
    name = shown_path(name) if os.path.isabs(name) else name  # a local folder by its name only
    if (info or {}).get("fallback_tiny_random"):
        return f"- {label}: `{name}` was not available; a tiny random-weights stand-in was used (demo only)"
    return f"- {label}: `{name}` at revision `{revision(name)}`"


def revision(name: str) -> str:
    """The commit of a Hub model in the local cache, or where the model came from."""
    if "://" in name or os.path.isdir(os.path.expanduser(name)):
        return "local or bucket copy"
    try:
        from huggingface_hub import snapshot_download

        return os.path.basename(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached on the driver: the workers resolved it
        return "as resolved by the workers (not in the driver's cache)"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def metadata(found: dict, stats: dict, provenances: list[Provenance]) -> tuple[object, list[str]]:
    """The card's YAML metadata (``DatasetCardData``) and the license notes."""
    from datasets import Features
    from datasets.info import DatasetInfo
    from datasets.splits import SplitDict, SplitInfo
    from huggingface_hub import DatasetCardData

    configs, infos = [], []
    for style, splits in found["splits"].items():
        configs.append({"config_name": style, "data_files": [
            {"split": split, "path": f"data/{style}/{split}-*"} for split in sorted(splits)]})
        split_infos = SplitDict({s: SplitInfo(s, num_bytes=found["bytes"][style][s], num_examples=n)
                                 for s, n in sorted(splits.items())})
        info = DatasetInfo(features=Features.from_arrow_schema(found["features"][style]), splits=split_infos,
                           config_name=style,
                           dataset_size=sum(found["bytes"][style].values()))
        infos.append(info._to_yaml_dict())
    license_id, extra, notes = licenses(provenances)
    total = sum(sum(s.values()) for s in found["splits"].values())
    data = DatasetCardData(
        license=license_id, language=["en"], task_categories=TASKS, size_categories=[size_category(total)],
        source_datasets=sorted({d for p in provenances for d in p.datasets}) or None,
        pretty_name="groundcot grounded chain-of-thought", configs=configs, dataset_info=infos,
        tags=["grounded-cot", "visual-reasoning", "synthetic", *sorted(found["splits"])], **extra)
    return data, notes


def body(run_id: str, found: dict, stats: dict, notes: list[str], provenances: list[Provenance]) -> str:
    cfg = stats.get("config", {})
    styles = list(found["splits"]) or list(cfg.get("styles", []))
    sources = [s.get("kind", "?") for s in cfg.get("sources", [])]
    teacher = stats.get("teacher", {})
    parts = [
        "# groundcot grounded chain-of-thought data",
        (f"Interleaved grounded chain-of-thought trajectories written by groundcot, run `{run_id}`: {stats.get('written', 0)} rows from "
        f"{stats.get('records_in', 0)} source records, one config per trajectory style."),
        table(["config", "rows", "splits", "what a row holds"],
              [[f"`{s}`", sum(found["splits"][s].values()), ", ".join(sorted(found["splits"][s])),
                STYLES[s].card_text if s in STYLES else ""] for s in styles if s in found["splits"]]),
        ("Rows of one source record share `id` across configs. Rejected records are in `rejected/` "
        "(JSON lines with their reason), not in any config."),
        "## License",
        ("This dataset's rows carry images and annotations from the sources below; their terms apply. "
        "The `license` above is derived from them (`other` when they differ or restrict use)."),
        "\n".join(f"- {n}" for n in notes) or "- (no sources recorded)",
        "## How it was made",
        "Sources (each record keeps `source`, `source_id` and `dataset`):",
        "\n".join(f"- `{s.get('kind')}`: `{shown_path(s.get('path'))}`"
                  + (f", filters `{json.dumps(s.get('filters'))}`" if s.get("filters") else "")
                  + (f", limit {s['limit']}" if s.get("limit") else "") for s in cfg.get("sources", [])),
        "Models:",
        "\n".join([model_line("depth (Depth-Anything-V2)", stats.get("depth_model"), cfg.get("depth", {})),
                   model_line("masks (SAM2)", stats.get("masks_model"), cfg.get("masks", {})),
                   f"- teacher: `{teacher.get('kind')}`" + (f", model `{teacher['model']}`" if teacher.get("model")
                                                            else " (offline template baseline)")]),
        "Chains: " + ", ".join(f"{k} {v}" for k, v in cfg.get("expand", {}).items())
        + ". Validation thresholds: " + ", ".join(f"{k} {v}" for k, v in cfg.get("validate", {}).items()) + ".",
        "Prompt templates (sha256, first 12 hex digits): "
        + ", ".join(f"`{k}` {v}" for k, v in prompt_hashes(cfg.get("prompts")).items()) + ".",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in stats.get("versions", {}).items()) + ".",
        "## Counts",
        table(["source", *styles, "rejected"],
              [[src, *[found["by_source"][s][src] for s in styles],
                stats.get("by_source", {}).get(src, {}).get("rejected", 0)]
               for src in sorted({*sources, *(k for s in styles for k in found["by_source"][s])})]),
        figure_line("hiou.png") + "\n\n" + figure_line("chain_length.png"),
        "## Splits",
        split_text(found, stats, styles),
        *quality_text(stats),
        "## Rejections",
        table(["reason", "records", "by style"],
              [[r, n, ", ".join(f"{s.replace('before_styles', 'before styles')} {v['rejected_by_reason'][r]}"
                                for s, v in sorted(stats.get("by_style", {}).items())
                                if r in v.get("rejected_by_reason", {}))]
               for r, n in sorted(stats.get("rejected_by_reason", {}).items(), key=lambda kv: -kv[1])])
        if stats.get("rejected_by_reason") else "No record was rejected.",
        figure_line("rejections.png"),
        "## Examples",
        "The first row of each config: its image with the focus steps' boxes numbered in step colours, then its text.",
    ]
    parts += [example(style, row) for style, row in found["examples"].items()]
    first = styles[0] if styles else "sif"
    parts += [
        "## Use",
        (f"```python\nimport datasets\n\nds = datasets.load_dataset(\"USER/NAME\", \"{first}\", split=\"train\")\n"
        "print(ds[0][\"messages\"], ds[0][\"image\"].size)\n```"),
        ("Train with groundcot (TRL + peft) on a local copy:\n\n```bash\n"
        "huggingface-cli download USER/NAME --repo-type dataset --local-dir data/NAME\n"
        "groundcot train sft train_sft --set 'data.runs=[data/NAME]'\n```"),
        ("Or export for another trainer: `groundcot export data/NAME --format trl` (TRL's `images` + `messages`), "
        "`--format llamafactory` (sharegpt JSON + `dataset_info.json`), `--format verl` (RL prompts with "
        "rule-reward ground truth)."),
        "## Citations",
        "```bibtex\n" + "\n\n".join(cited(styles, provenances, cfg)) + "\n```",
    ]
    return "\n\n".join(parts) + "\n"


def split_text(found: dict, stats: dict, styles: list[str]) -> str:
    """Rows per split and style (from the shards) and per source (stats.json), and how the test split was made."""
    split = stats.get("config", {}).get("split", {})
    names = sorted({n for s in styles for n in found["splits"][s]})
    by_split = stats.get("by_split", {})
    rows = table(["split", *styles, "by source"],
                 [[n, *[found["splits"][s][n] for s in styles],
                   ", ".join(f"{src} {k}" for src, k in by_split.get(n, {}).get("by_source", {}).items())]
                  for n in names])
    if not split.get("test_fraction"):
        return rows + "\n\nSplits as the sources give them (train where a source gives none)."
    kept = ("; a val or test split a source gives is kept" if split.get("keep_source", True)
            else "; the hash decides every row, whatever split a source gives")
    return (rows + f"\n\n`test` holds out {split['test_fraction']:g} of the images, chosen by a seeded hash "
            f"(seed {split.get('seed', 0)}) of each image's perceptual hash group (near-identical images, re-encoded "
            f"or resized, count as one), so every row of one image, from any source, is in one split{kept}.")


def quality_text(stats: dict) -> list[str]:
    """The "Quality" section: the critic, near-duplicate images and the mix (asked vs obtained); [] when all are off."""
    lines = []
    critic = stats.get("critic") or {}
    if critic:
        rejected = (critic.get("rejected_by_reason") or {}).get("low_quality", 0)
        bar = (f"; rows it scored below `min_score` {critic['min_score']:g} were rejected as `low_quality` "
               f"({rejected})" if critic.get("min_score") is not None else "")
        lines.append(f"Every row was graded by a critic, `{critic.get('model')}`, which saw the image with the "
                     f"chain's boxes drawn: `critic_score` (0 to 1) and `critic_reason` say whether each step's "
                     f"text is true of its region and the chain leads to the answer{bar}.")
    images = stats.get("distinct_images") or {}
    if images:
        duplicates = stats.get("rejected_by_reason", {}).get("duplicate", 0)
        lines.append(f"Distinct images (perceptual hash; near-identical images as one): {images.get('all')} in all, "
                     + ", ".join(f"{s} {n}" for s, n in images.get("by_source", {}).items())
                     + f". Records asking the same question of a near-identical image: {duplicates} rejected as "
                       "`duplicate`.")
    mix = stats.get("mix") or {}
    if mix:
        asked = mix.get("asked", {})
        rows = [[f"`{g}`", ", ".join(f"{k} {v:g}" for k, v in want.items()),
                 mix.get("obtained", {}).get(g, {}).get("available", 0), mix.get("obtained", {}).get(g, {}).get("wanted", 0),
                 mix.get("obtained", {}).get(g, {}).get("kept", 0)] for g, want in asked.get("groups", {}).items()]
        unit = "rows (record x style)" if any("style=" in g for g in asked.get("groups", {})) else "records"
        total = f", {asked['total']} {unit} in all" if asked.get("total") else ""
        lines.append(f"The mix (seed {asked.get('seed', 0)}{total}), in {unit}, sampled before the model stages "
                     "(obtained: what the sampling kept; the rows written after the teacher and validation are "
                     "under Counts):\n\n" + table(["group", "asked", "available", "wanted", "obtained"], rows))
    return ["## Quality", *lines] if lines else []


def figure_line(name: str, alt: str | None = None, title: str | None = None) -> str:
    """A figure as Markdown: ``![alt](figures/NAME "title")`` (the title shows on hover and in the DOM)."""
    title = title or FIGURE_TITLES[name]
    alt = re.sub(r"([\\\[\]])", r"\\\1", alt or title)  # brackets in a path would end the alt text
    return f'![{alt}]({FIGURES}/{name} "{title.replace(chr(34), chr(39))}")'


def fenced(text: str, info: str = "text") -> str:
    """``text`` in a code fence longer than any backtick run inside it (CommonMark: an inner ```json
    block then stays text instead of closing the fence)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def example(style: str, row: dict) -> str:
    """One config's example: a heading, its picture (``figures/example-STYLE.png``, boxed when its CoT
    has boxes) and its text."""
    cot = row["cot"] if len(row["cot"] or "") <= 900 else row["cot"][:900] + " ..."
    shown = f"{row['source']}/{row['dataset']}, {row['image_path']}"
    what = "focus steps boxed and numbered" if shows_boxes(row) else "as it is (its CoT has no boxes)"
    picture = (figure_line(example_figure(style), f"{style} example: {shown}",
                           f"{style}: the first row's image, {what}")
               if row.get("image") else "(this row holds no image)")
    text = f"Q: {row['question']}\nA: {row['answer']}\nGT boxes: {row['gt_boxes']}\n\n{cot}"
    return f"### `{style}`\n\n{picture}\n\nFrom {row['source']}/{row['dataset']}, {code(row['image_path'])}.\n\n{fenced(text)}"


def shows_boxes(row: dict) -> bool:
    """Whether the row's CoT has boxes: the styles whose CoT has them score it (HIoU); textual's words have
    none, though its row keeps its sif twin's chain."""
    return row.get("hiou") is not None


def code(text: str) -> str:
    """Inline code that survives backticks in ``text``."""
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{ticks} {text} {ticks}" if ticks != "`" else f"`{text}`"


def example_figure(style: str) -> str:
    return f"example-{re.sub(r'[^A-Za-z0-9_.-]', '_', style)}.png"


def cited(styles: list[str], provenances: list[Provenance], cfg: dict) -> list[str]:
    """BibTeX entries: the styles' (from their modules), the sources' (from their provenance), the models'."""
    entries = [STYLES[s].citation[1] for s in styles if s in STYLES and STYLES[s].citation]
    entries += [c for p in provenances for c in p.citations]
    if cfg.get("depth", {}).get("enabled", True):
        entries.append(CITATIONS["Depth-Anything-V2"])
    if cfg.get("masks", {}).get("enabled"):
        entries.append(CITATIONS["SAM2"])
    return list(dict.fromkeys(entries))


def figures(run: str, found: dict, stats: dict) -> list[str]:
    """Write the PNGs under RUN/figures; their paths relative to the run."""
    from groundcot.runs import plots
    from groundcot.runs.inspect import boxed_picture, picture

    drawn = {"hiou.png": (plots.hiou_histogram, dict(found["hiou"])),  # a style without boxes has no HIoU: not drawn
             "chain_length.png": (plots.chain_length_histogram, dict(found["steps"])),
             "rejections.png": (plots.rejections_bar, stats.get("rejected_by_reason", {}))}
    for name, (draw, values) in drawn.items():
        buffer = io.BytesIO()
        draw(values, buffer)
        write_bytes(f"{run}/{FIGURES}/{name}", buffer.getvalue())
    written = [f"{FIGURES}/{name}" for name in drawn]
    for style, row in found["examples"].items():
        shown = boxed_picture(row)[0] if shows_boxes(row) else picture(row)
        if shown is not None:
            buffer = io.BytesIO()
            shown.save(buffer, format="PNG")
            write_bytes(f"{run}/{FIGURES}/{example_figure(style)}", buffer.getvalue())
            written.append(f"{FIGURES}/{example_figure(style)}")
    return written


def render(run: str) -> tuple[str, dict, dict]:
    """The card's text for the run at ``run``, the scan of its shards and its stats."""
    run = run.rstrip("/")
    stats = json.loads(read_bytes(f"{run}/stats.json"))
    found = scan(run)
    provenances = provenance(stats.get("config", {}).get("sources", []), found["datasets"])
    data, notes = metadata(found, stats, provenances)
    # what DatasetCard.from_template(...) gives, without its YAML dumped twice and parsed back
    text = f"---\n{data.to_yaml()}\n---\n\n{body(stats.get('run_id', ''), found, stats, notes, provenances)}"
    return text, found, stats


def write_card(run: str) -> list[str]:
    """Write RUN/README.md and RUN/figures/*.png; the files written, relative to the run."""
    run = run.rstrip("/")
    text, found, stats = render(run)
    written = figures(run, found, stats)
    write_bytes(f"{run}/{CARD}", text.encode("utf-8"))
    return [CARD, *written]
