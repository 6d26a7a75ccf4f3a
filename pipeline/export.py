"""``groundcot export``: turn a run's Parquet shards into what a trainer reads."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from groundcot.transforms.exports import image_suffix, images_of, llamafactory_info, sharegpt_entry, trl_row, verl_row

log = logging.getLogger("groundcot")
FORMATS = ("trl", "llamafactory", "verl")


def load_run(out: str, styles: list[str] | None):
    """The run's rows, images left as bytes (never decoded and re-encoded)."""
    import datasets
    from apache_beam.io.filesystems import FileSystems

    pattern = f"{out.rstrip('/')}/data/*.parquet"
    if not FileSystems.match([pattern])[0].metadata_list:
        raise FileNotFoundError(f"no shards match {pattern}")
    datasets.disable_progress_bars()
    ds = datasets.load_dataset("parquet", data_files=pattern, split="train")
    ds = ds.cast_column("image", datasets.Image(decode=False)).cast_column("crops", datasets.List(datasets.Image(decode=False)))
    return ds.filter(lambda s: s in styles, input_columns="style") if styles else ds


def export_trl(ds, dest: Path) -> int:
    import datasets

    from groundcot.schemas.columns import features

    full = features()
    target = datasets.Features({"id": full["id"], "style": full["style"], "images": datasets.List(datasets.Image()),
                                "messages": full["messages"]})
    rows = ds.map(trl_row, remove_columns=ds.column_names, features=target)
    (dest / "data").mkdir(parents=True, exist_ok=True)
    rows.to_parquet(str(dest / "data" / "train-00000-of-00001.parquet"))
    return len(rows)


def export_verl(ds, dest: Path) -> int:
    import datasets

    target = datasets.Features({
        "data_source": datasets.Value("string"),
        "prompt": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "images": datasets.List(datasets.Image()), "ability": datasets.Value("string"),
        "reward_model": {"style": datasets.Value("string"), "ground_truth": datasets.Value("string")},
        "extra_info": {k: datasets.Value("int64" if k == "index" else "string")
                       for k in ("index", "id", "style", "split", "question", "answer", "gt_boxes", "frame")}})
    rows = ds.map(verl_row, with_indices=True, remove_columns=ds.column_names, features=target)
    dest.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(str(dest / "train.parquet"))
    return len(rows)


def export_llamafactory(ds, dest: Path) -> int:
    (dest / "images").mkdir(parents=True, exist_ok=True)
    entries: dict[str, list] = {}
    for row in ds:
        paths = []
        for k, image in enumerate(images_of(row)):
            name = f"images/{row['id']}-{row['style']}-{k}{image_suffix(image['bytes'])}"
            (dest / name).write_bytes(image["bytes"])
            paths.append(name)
        entries.setdefault(row["style"], []).append(sharegpt_entry(row, paths))
    info = {}
    for style, items in entries.items():
        file_name = f"groundcot_{style}.json"
        (dest / file_name).write_text(json.dumps(items, ensure_ascii=False, indent=1))
        info.update(llamafactory_info(f"groundcot_{style}", file_name))
    (dest / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return sum(len(v) for v in entries.values())


def export(out: str, fmt: str, dest: str | None = None, styles: list[str] | None = None) -> tuple[Path, int]:
    target = Path(dest or f"{out.rstrip('/')}/exports/{fmt}")
    ds = load_run(out, styles)
    n = {"trl": export_trl, "verl": export_verl, "llamafactory": export_llamafactory}[fmt](ds, target)
    log.info("exported %d rows as %s to %s", n, fmt, target)
    return target, n
