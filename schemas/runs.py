"""Reading a groundcot run back: the rows of its ``data/<style>/*.parquet`` shards, for the exports,
the trainer and the report. ``datasets`` and ``fsspec`` are imported lazily (this package stays pure Python).

A run is the folder ``groundcot generate`` wrote (local or a bucket prefix); each style is one
``datasets`` config with its own columns, one file set per split:

>>> shards("out/demo/")
'out/demo/data/*/*.parquet'
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from groundcot.schemas.columns import TRAIN_COLUMNS, empty_value


class RunNotFound(FileNotFoundError):
    """A path that holds no groundcot run; the message names it."""


def shards(run: str) -> str:
    """The glob of a run's dataset shards (every style, every split)."""
    return f"{run.rstrip('/')}/data/*/*.parquet"


def split_of(path: str) -> str:
    """The split a shard holds, from its name.

    >>> split_of("data/sif/train-00000-of-00001.parquet")
    'train'
    """
    return re.sub(r"-\d{5}-of-\d{5}\.parquet$", "", path.rsplit("/", 1)[-1])


def style_shards(run: str) -> dict[str, list[str]]:
    """Style -> the paths of its Parquet files (any split), for the styles the run wrote (each folder
    under ``data/``), styles in name order.

    Paths keep ``run``'s form (a bucket URL stays a URL). Raises RunNotFound when there are none.
    """
    from fsspec.core import url_to_fs

    pattern = shards(run)
    fs, path = url_to_fs(pattern)
    found = sorted(fs.glob(path))
    if not found:
        raise RunNotFound(f"{run}: not a groundcot run (no {pattern}); run `groundcot generate` or "
                          "`groundcot demo` first, or give the folder that holds data/")
    base = run.rstrip("/")
    root = fs._strip_protocol(base).rstrip("/")
    out: dict[str, list[str]] = {}
    for name in found:
        rel = name[len(root) + 1:]  # data/<style>/<file>
        out.setdefault(rel.split("/")[1], []).append(f"{base}/{rel}")
    return {style: out[style] for style in sorted(out)}


def read_run(runs: str | Sequence[str], styles: Sequence[str] | None = None, sources: Sequence[str] | None = None,
             limit: int | None = None, decode_images: bool = True, splits: Sequence[str] | None = None):
    """The rows of one or more runs as a ``datasets.Dataset``, filtered by style and source.

    The columns are every column a style can have (TRAIN_COLUMNS, so code reading ``crops`` or ``depth_map`` works
    whatever styles it asked for); a row of a style whose config lacks a column holds ``[]`` there for
    list columns and null otherwise. ``depth_map`` stays
    ``{"bytes", "path"}`` (a 16-bit PNG, decoded where it is used). With ``decode_images=False`` the
    image and crops do too, so they can be copied out unchanged. ``limit`` keeps the first N rows after
    filtering. ``splits`` keeps only those splits' shards (default: all). Rows come style by style: in the order of ``styles`` when given, else by style name.
    """
    import datasets

    from groundcot.schemas.columns import features

    files: dict[str, list[str]] = {style: [] for style in styles or ()}
    for run in ([runs] if isinstance(runs, str) else runs):
        for style, paths in style_shards(run).items():
            if not styles or style in styles:
                files.setdefault(style, []).extend(p for p in paths if splits is None or split_of(p) in splits)
    files = {style: paths for style, paths in files.items() if paths}
    names = list(TRAIN_COLUMNS)
    union = features()
    parts = []
    for style, paths in files.items():
        ds = datasets.load_dataset("parquet", data_files=paths, split="train")
        for name in names:
            if name not in ds.column_names:
                ds = ds.add_column(name, [empty_value(TRAIN_COLUMNS[name][0])] * len(ds), feature=union[name])
        ds = ds.select_columns(names)
        parts.append(ds if ds.features == union else ds.cast(union))
    if not parts:
        ds = datasets.Dataset.from_dict({n: [] for n in names}, features=union)
    else:
        ds = datasets.concatenate_datasets(parts)
    raw = datasets.Image(decode=False)
    for name in ("depth_map", "depth_image"):
        if name in ds.column_names:
            ds = ds.cast_column(name, raw)
    if not decode_images:
        ds = ds.cast_column("image", raw)
        if "crops" in ds.column_names:
            ds = ds.cast_column("crops", datasets.List(raw))
    if sources:
        ds = ds.filter(lambda source: source in sources, input_columns=["source"])
    return ds.select(range(min(limit, len(ds)))) if limit else ds
