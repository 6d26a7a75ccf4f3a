"""Reading a groundcot run back: the rows of its ``data/*.parquet`` shards, for the exports and
the trainer. ``datasets`` and ``fsspec`` are imported lazily (this package stays pure Python).

A run is the folder ``groundcot generate`` wrote (local or a bucket prefix):

>>> shards("out/demo/")
'out/demo/data/*.parquet'
"""
from __future__ import annotations

from collections.abc import Sequence


class RunNotFound(FileNotFoundError):
    """A path that holds no groundcot run; the message names it."""


def shards(run: str) -> str:
    """The glob of a run's dataset shards."""
    return f"{run.rstrip('/')}/data/*.parquet"


def _check(run: str) -> str:
    """``run``'s shard glob, or RunNotFound naming the path when nothing matches."""
    from fsspec.core import url_to_fs

    pattern = shards(run)
    fs, path = url_to_fs(pattern)
    if not fs.glob(path):
        raise RunNotFound(f"{run}: not a groundcot run (no {pattern}); run `groundcot generate` or "
                          "`groundcot demo` first, or give the folder that holds data/")
    return pattern


def read_run(runs: str | Sequence[str], styles: Sequence[str] | None = None, sources: Sequence[str] | None = None,
             limit: int | None = None, decode_images: bool = True):
    """The rows of one or more runs as a ``datasets.Dataset``, filtered by style and source.

    ``depth_map`` stays ``{"bytes", "path"}`` (a 16-bit PNG, decoded where it is used). With
    ``decode_images=False`` the image and crops do too, so they can be copied out unchanged.
    ``limit`` keeps the first N rows after filtering.
    """
    import datasets

    files = [_check(run) for run in ([runs] if isinstance(runs, str) else runs)]
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    raw = datasets.Image(decode=False)
    ds = ds.cast_column("depth_map", raw)
    if not decode_images:
        ds = ds.cast_column("image", raw).cast_column("crops", datasets.List(raw))
    if styles or sources:
        ds = ds.filter(lambda style, source: (not styles or style in styles) and (not sources or source in sources),
                       input_columns=["style", "source"])
    return ds.select(range(min(limit, len(ds)))) if limit else ds
