"""The run's dataset card: ``README.md`` with Hub metadata, and its figures under ``figures/``.

``write_card(run)`` reads the run's ``stats.json`` and Parquet shards (local or a bucket prefix) and
writes the card that makes the folder Hub-ready: one ``datasets`` config per style (its features and
split sizes), the license derived from the sources used, how the data was made, counts, rejections,
example rows, how to load and train on it, and the citations of what was used.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter, defaultdict

from apache_beam.io.filesystems import FileSystems

from groundcot.schemas.columns import style_columns
from groundcot.schemas.runs import style_shards

CARD, FIGURES = "README.md", "figures"
TASKS = ["visual-question-answering", "image-text-to-text"]
SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]

STYLE_TEXT = {
    "sif": "SIFThinker's interleaved CoT: `<think>` alternating `<area>` (normalised boxes with depth) and "
           "`<text>`, coarse to fine, then `<answer>`.",
    "mgpo": "MGPO's two-turn grounding: the model names the key region (frame pixels), sees the crop, answers.",
    "aperture": "TikArt-style Think-Aperture-Observe: zoom / segment actions, each followed by its crop and an "
                "observation.",
    "textual": "iVGR's textual stream: the same reasoning in words, without boxes (pairs with the sif row of the "
               "same `id`).",
}

# Per source: (Hub license id or None when the terms are not a standard license, note, Hub id or name).
SOURCES = {
    "viscot": (None, ("Visual-CoT: its code is Apache-2.0, and its README states that the data is intended solely "
                      "for research and reproducibility (any deployed use, commercial or otherwise, is out of scope); "
                      "the images come from the datasets Visual-CoT was built on, each under its own terms."),
               "deepcs233/Visual-CoT"),
    "gqa": ("cc-by-4.0", "GQA questions and scene graphs are CC BY 4.0; its images are Visual Genome's (CC BY 4.0).",
            "GQA"),
    "tallyqa": (None, "TallyQA: see its release's terms; its images are Visual Genome's and COCO's.", "TallyQA"),
    "flickr30k": (None, ("Flickr30k Entities: the Flickr30k images may be used only under Flickr's terms of use, "
                        "for non-commercial research and education; the annotations follow the same terms."),
                  "Flickr30k Entities"),
}
SOURCES["viscot_llava"] = SOURCES["viscot"]
RESTRICTED = {"flickr30k": SOURCES["flickr30k"][1]}  # sub-datasets (the `dataset` column) with restrictive terms

CITATIONS = {
    "SIFThinker": "@article{chen2025sifthinker,\n  title={SIFThinker: Spatially-Aware Image Focus for Visual Reasoning},\n"
                  "  author={Chen, Zhangquan and Zhao, Ruihui and Luo, Chuwei and Sun, Mingze and Yu, Xinlei and "
                  "Kang, Yangyang and Huang, Ruqi},\n  journal={arXiv preprint arXiv:2508.06259},\n  year={2025}\n}",
    "VisCoT": "@inproceedings{shao2024visualcot,\n  title={Visual CoT: Advancing Multi-Modal Language Models with a "
              "Comprehensive Dataset and Benchmark for Chain-of-Thought Reasoning},\n  author={Shao, Hao and Qian, "
              "Shengju and Xiao, Han and Song, Guanglu and Zong, Zhuofan and Wang, Letian and Liu, Yu and Li, "
              "Hongsheng},\n  booktitle={NeurIPS Datasets and Benchmarks Track},\n  year={2024}\n}",
    "GQA": "@inproceedings{hudson2019gqa,\n  title={GQA: A New Dataset for Real-World Visual Reasoning and "
           "Compositional Question Answering},\n  author={Hudson, Drew A. and Manning, Christopher D.},\n"
           "  booktitle={CVPR},\n  year={2019}\n}",
    "Flickr30k Entities": "@inproceedings{plummer2015flickr30k,\n  title={Flickr30k Entities: Collecting "
                          "Region-to-Phrase Correspondences for Richer Image-to-Sentence Models},\n  author={Plummer, "
                          "Bryan A. and Wang, Liwei and Cervantes, Chris M. and Caicedo, Juan C. and Hockenmaier, "
                          "Julia and Lazebnik, Svetlana},\n  booktitle={ICCV},\n  year={2015}\n}",
    "TallyQA": "@inproceedings{acharya2019tallyqa,\n  title={TallyQA: Answering Complex Counting Questions},\n"
               "  author={Acharya, Manoj and Kafle, Kushal and Kanan, Christopher},\n  booktitle={AAAI},\n"
               "  year={2019}\n}",
    "Depth-Anything-V2": "@article{yang2024depthanythingv2,\n  title={Depth Anything V2},\n  author={Yang, Lihe and "
                         "Kang, Bingyi and Huang, Zilong and Zhao, Zhen and Xu, Xiaogang and Feng, Jiashi and Zhao, "
                         "Hengshuang},\n  journal={arXiv preprint arXiv:2406.09414},\n  year={2024}\n}",
    "SAM2": "@article{ravi2024sam2,\n  title={SAM 2: Segment Anything in Images and Videos},\n  author={Ravi, Nikhila "
            "and Gabeur, Valentin and Hu, Yuan-Ting and Hu, Ronghang and Ryali, Chaitanya and Ma, Tengyu and "
            "others},\n  journal={arXiv preprint arXiv:2408.00714},\n  year={2024}\n}",
    "MGPO": "@article{huang2025mgpo,\n  title={High-Resolution Visual Reasoning via Multi-Turn Grounding-Based "
            "Reinforcement Learning},\n  author={Huang, Xinyu and Dong, Yuhao and Li, Wei and Wu, Jinming and Deng, "
            "Zihao and Li, Bo and Ma, Zejun},\n  journal={arXiv preprint arXiv:2507.05920},\n  year={2025}\n}",
    "TikArt": "@article{ding2026tikart,\n  title={TikArt: Aperture-Guided Observation for Fine-Grained Visual Reasoning "
              "via Reinforcement Learning},\n  author={Ding, Hao and Yang, Zhichuan and Ge, Weijie and Gao, Ziqin and "
              "Lu, Chaoyi and Zhao, Lei},\n  journal={arXiv preprint arXiv:2602.14482},\n  year={2026}\n}",
    "iVGR": "@inproceedings{zhang2026ivgr,\n  title={iVGR: Internalizing Visually Grounded Reasoning for MLLMs with "
            "Reinforcement Learning},\n  author={Zhang, Chang-Bin and Zhong, Yujie and Zhang, Qiang and Han, Kai},\n"
            "  booktitle={ICML},\n  year={2026},\n  note={arXiv:2605.31096}\n}",
}
STYLE_CITES = {"sif": "SIFThinker", "mgpo": "MGPO", "aperture": "TikArt", "textual": "iVGR"}
SOURCE_CITES = {"viscot": "VisCoT", "viscot_llava": "VisCoT", "gqa": "GQA", "flickr30k": "Flickr30k Entities",
                "tallyqa": "TallyQA"}
DATASET_CITES = {"gqa": "GQA", "flickr30k": "Flickr30k Entities"}


# --- reading the run ------------------------------------------------------------------------------------

def read_text(path: str) -> str:
    with FileSystems.open(path) as handle:
        return handle.read().decode("utf-8")


def write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path) as handle:
        handle.write(data)


def split_of(path: str) -> str:
    """``data/sif/train-00000-of-00001.parquet`` -> ``train``."""
    return re.sub(r"-\d{5}-of-\d{5}\.parquet$", "", path.rsplit("/", 1)[-1])


def scan(run: str) -> dict:
    """What the card shows from the shards, read column by column (images are never loaded)."""
    import fsspec
    import pyarrow.parquet as pq

    found = {"splits": defaultdict(Counter), "bytes": defaultdict(Counter), "hiou": defaultdict(list),
             "steps": defaultdict(list), "by_source": defaultdict(Counter), "datasets": Counter(), "examples": {},
             "features": {}}
    try:
        shards = style_shards(run)
    except FileNotFoundError:
        return found
    for style, paths in shards.items():
        steps_column = "chain" if "chain" in style_columns(style) else "actions"
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
            found["datasets"].update(table.column("dataset").to_pylist())
            if style not in found["examples"] and pf.metadata.num_rows:
                with fsspec.open(path, "rb") as handle:
                    first = pq.ParquetFile(handle).read_row_group(0, columns=[
                        "source", "dataset", "image_path", "question", "answer", "gt_boxes", "cot"]).slice(0, 1)
                found["examples"][style] = first.to_pylist()[0]
    return found


# --- what the card says -------------------------------------------------------------------------------

def size_category(n: int) -> str:
    return next((name for top, name in SIZES if n < top), "n>1B")


def licenses(sources: list[str], datasets_seen: set[str]) -> tuple[str, dict, list[str]]:
    """(Hub license id, extra metadata, notes) from the sources and sub-datasets used."""
    ids, notes = set(), []
    for kind in sources:
        license_id, note, _ = SOURCES.get(kind, (None, f"{kind}: see the source's terms.", kind))
        ids.add(license_id)
        notes.append(note)
    restricted = [RESTRICTED[d] for d in sorted(datasets_seen) if d in RESTRICTED and "flickr30k" not in sources]
    notes += restricted
    if len(ids) == 1 and None not in ids and not restricted:
        return ids.pop(), {}, notes
    return "other", {"license_name": "mixed-source-terms"}, notes


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


def metadata(found: dict, stats: dict, sources: list[str]) -> tuple[object, list[str]]:
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
    license_id, extra, notes = licenses(sources, set(found["datasets"]))
    total = sum(sum(s.values()) for s in found["splits"].values())
    data = DatasetCardData(
        license=license_id, language=["en"], task_categories=TASKS, size_categories=[size_category(total)],
        source_datasets=sorted({SOURCES.get(k, (None, None, k))[2] for k in sources}),
        pretty_name="groundcot grounded chain-of-thought", configs=configs, dataset_info=infos,
        tags=["grounded-cot", "visual-reasoning", "synthetic", *sorted(found["splits"])], **extra)
    return data, notes


def body(run_id: str, found: dict, stats: dict, notes: list[str]) -> str:
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
                STYLE_TEXT.get(s, "")] for s in styles if s in found["splits"]]),
        ("Rows of one source record share `id` across configs. Rejected records are in `rejected/` "
        "(JSON lines with their reason), not in any config."),
        "## License",
        ("This dataset's rows carry images and annotations from the sources below; their terms apply. "
        "The `license` above is derived from them (`other` when they differ or restrict use)."),
        "\n".join(f"- {n}" for n in notes) or "- (no sources recorded)",
        "## How it was made",
        "Sources (each record keeps `source`, `source_id` and `dataset`):",
        "\n".join(f"- `{s.get('kind')}`: `{s.get('path')}`"
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
        "![HIoU per style](figures/hiou.png)\n\n![Steps per trajectory](figures/chain_length.png)",
        "## Rejections",
        table(["reason", "records", "by style"],
              [[r, n, ", ".join(f"{s.replace('before_styles', 'before styles')} {v['rejected_by_reason'][r]}"
                                for s, v in sorted(stats.get("by_style", {}).items())
                                if r in v.get("rejected_by_reason", {}))]
               for r, n in sorted(stats.get("rejected_by_reason", {}).items(), key=lambda kv: -kv[1])])
        if stats.get("rejected_by_reason") else "No record was rejected.",
        "![Rejections by reason](figures/rejections.png)",
        "## Examples",
    ]
    for style, row in found["examples"].items():
        cot = row["cot"] if len(row["cot"] or "") <= 900 else row["cot"][:900] + " ..."
        parts.append(f"`{style}` ({row['source']}/{row['dataset']}, `{row['image_path']}`)\n\n```text\n"
                     f"Q: {row['question']}\nA: {row['answer']}\nGT boxes: {row['gt_boxes']}\n\n{cot}\n```")
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
        "```bibtex\n" + "\n\n".join(CITATIONS[c] for c in cited(styles, sources, found, cfg)) + "\n```",
    ]
    return "\n\n".join(parts) + "\n"


def cited(styles: list[str], sources: list[str], found: dict, cfg: dict) -> list[str]:
    names = [STYLE_CITES[s] for s in styles if s in STYLE_CITES]
    names += [SOURCE_CITES[s] for s in sources if s in SOURCE_CITES]
    names += [DATASET_CITES[d] for d in found["datasets"] if d in DATASET_CITES]
    if cfg.get("depth", {}).get("enabled", True):
        names.append("Depth-Anything-V2")
    if cfg.get("masks", {}).get("enabled"):
        names.append("SAM2")
    return list(dict.fromkeys(names))


def figures(run: str, found: dict, stats: dict) -> list[str]:
    """Write the PNGs under RUN/figures; their paths relative to the run."""
    from groundcot.runs import plots

    drawn = {"hiou.png": (plots.hiou_histogram, dict(found["hiou"])),
             "chain_length.png": (plots.chain_length_histogram, dict(found["steps"])),
             "rejections.png": (plots.rejections_bar, stats.get("rejected_by_reason", {}))}
    with tempfile.TemporaryDirectory(prefix="groundcot-card-") as tmp:
        for name, (draw, values) in drawn.items():
            draw(values, os.path.join(tmp, name))
            with open(os.path.join(tmp, name), "rb") as handle:
                write_bytes(f"{run}/{FIGURES}/{name}", handle.read())
    return [f"{FIGURES}/{name}" for name in drawn]


def render(run: str) -> tuple[str, dict, dict]:
    """The card's text for the run at ``run``, the scan of its shards and its stats."""
    from huggingface_hub import DatasetCard

    run = run.rstrip("/")
    stats = json.loads(read_text(f"{run}/stats.json"))
    found = scan(run)
    sources = list(dict.fromkeys(s.get("kind", "?") for s in stats.get("config", {}).get("sources", [])))
    data, notes = metadata(found, stats, sources)
    card = DatasetCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ text }}",
                                     text=body(stats.get("run_id", ""), found, stats, notes))
    return str(card), found, stats


def write_card(run: str) -> list[str]:
    """Write RUN/README.md and RUN/figures/*.png; the files written, relative to the run."""
    run = run.rstrip("/")
    text, found, stats = render(run)
    written = figures(run, found, stats)
    write_bytes(f"{run}/{CARD}", text.encode("utf-8"))
    return [CARD, *written]
