"""Reading a groundcot run back: the rows of its ``data/<style>/*.parquet`` shards, for the exports,
the trainer and the report. ``datasets`` and ``fsspec`` are imported lazily (this package stays pure Python).

A run is the folder ``groundcot generate`` wrote (local or a bucket prefix); each style is one
``datasets`` config with its own columns, one file set per split. Where the folder has a manifest
(``_groundcot.json``, see pipeline/outputs.py), readers take the shards it lists, once, and
``consistent`` repeats a read that a re-run publishing meanwhile could have mixed:

>>> shards("out/demo/")
'out/demo/data/*/*.parquet'
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from groundcot.schemas.columns import TRAIN_COLUMNS, empty_value

MANIFEST = "_groundcot.json"  # written by pipeline/outputs.py: the files of the last published run
PUBLISH_WAIT_S = 60.0  # how long a reader waits for a publish under way to end
READ_TRIES = 10
T = TypeVar("T")


class RunNotFound(FileNotFoundError):
    """A path that holds no groundcot run; the message names it."""


class BrokenShard(RunNotFound):
    """A shard that is not a whole Parquet file (cut short, overwritten); the message names it."""


class RunChanging(RuntimeError):
    """The run was re-published during every try to read it."""


def read_bytes(path: str) -> bytes:
    """A file of a run, local or in a bucket (through fsspec, as every reader here)."""
    import fsspec

    with fsspec.open(path, "rb") as handle:
        return handle.read()


def manifest(run: str) -> dict | None:
    """The run's manifest, or None when it has none (a staging folder, a copy, a Hub download)."""
    try:
        data = json.loads(read_bytes(f"{run.rstrip('/')}/{MANIFEST}"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def published(run: str) -> str | None:
    """The run id of the run published at ``run`` (None without a manifest), waiting while one publishes."""
    deadline = time.monotonic() + PUBLISH_WAIT_S
    while (found := manifest(run)) is not None and found.get("state") == "publishing":
        if time.monotonic() > deadline:
            raise RunChanging(f"{run}: a run has been publishing there for {PUBLISH_WAIT_S:.0f} s "
                              f"({MANIFEST} says so); try again when it is done")
        time.sleep(0.05)
    return found.get("run_id") if found else None


def consistent(run: str, read: Callable[[], T]) -> T:
    """``read()``, repeated until no publish changed ``run`` while it read: its result is all one run's."""
    for _ in range(READ_TRIES):
        before = published(run)
        try:
            result = read()
        except Exception:  # a file replaced or gone under a publish (each reader wraps it its own way)
            if published(run) == before:
                raise
            continue
        if published(run) == before:
            return result
    raise RunChanging(f"{run}: re-published during each of {READ_TRIES} tries to read it; try again later")


def shards(run: str) -> str:
    """The glob of a run's dataset shards (every style, every split)."""
    return f"{run.rstrip('/')}/data/*/*.parquet"


def split_of(path: str) -> str:
    """The split a shard holds, from its name.

    >>> split_of("data/sif/train-00000-of-00001.parquet")
    'train'
    """
    return re.sub(r"-\d{5}-of-\d{5}\.parquet$", "", path.rsplit("/", 1)[-1])


def style_shards(run: str, required: bool = True) -> dict[str, list[str]]:
    """Style -> the paths of its Parquet files (any split), for the styles the run wrote (each folder
    under ``data/``), styles in name order: the files the manifest lists, else those found.

    Paths keep ``run``'s form (a bucket URL stays a URL). Raises RunNotFound when there are none
    (unless not ``required``) and BrokenShard naming a file whose Parquet footer cannot be read.
    """
    from fsspec.core import url_to_fs

    pattern = shards(run)
    base = run.rstrip("/")
    listed = manifest(run)
    if listed is not None and listed.get("state") == "published":
        rels = sorted(p for p in listed.get("files", []) if p.startswith("data/") and p.endswith(".parquet")
                      and p.count("/") == 2)
    else:
        fs, path = url_to_fs(pattern)
        root = fs._strip_protocol(base).rstrip("/")
        rels = [name[len(root) + 1:] for name in sorted(fs.glob(path))]  # data/<style>/<file>
    if not rels and required:
        raise RunNotFound(f"{run}: not a groundcot run (no {pattern}); run `groundcot generate` or "
                          "`groundcot demo` first, or give the folder that holds data/")
    out: dict[str, list[str]] = {}
    for rel in rels:
        check_shard(f"{base}/{rel}")
        out.setdefault(rel.split("/")[1], []).append(f"{base}/{rel}")
    return {style: out[style] for style in sorted(out)}


def check_shard(path: str) -> None:
    """Raise BrokenShard naming ``path`` unless its Parquet footer reads."""
    import fsspec
    import pyarrow.parquet as pq

    try:
        with fsspec.open(path, "rb") as handle:
            pq.read_metadata(handle)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise BrokenShard(f"{path}: not a whole Parquet file ({err}); re-run the job that wrote it"
                          .replace("\n", " ")) from None


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

    names = list(TRAIN_COLUMNS)
    union = features()

    def load(run: str) -> list:
        """The run's styles (their shards of ``splits``) as datasets, each loaded whole (into datasets'
        cache) before ``consistent`` checks: the shards are listed and read inside one try."""
        loaded = []
        for style, paths in style_shards(run).items():
            paths = [p for p in paths if splits is None or split_of(p) in splits]
            if paths and (not styles or style in styles):
                loaded.append((style, datasets.load_dataset("parquet", data_files=paths, split="train")))
        return loaded

    def widened(ds):
        for name in names:
            if name not in ds.column_names:
                ds = ds.add_column(name, [empty_value(TRAIN_COLUMNS[name][0])] * len(ds), feature=union[name])
        ds = ds.select_columns(names)
        return ds if ds.features == union else ds.cast(union)

    found: dict[str, list] = {style: [] for style in styles or ()}
    for run in ([runs] if isinstance(runs, str) else runs):
        for style, ds in consistent(run, lambda run=run: load(run)):
            found.setdefault(style, []).append(widened(ds))
    parts = [ds for loaded in found.values() for ds in loaded]
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
