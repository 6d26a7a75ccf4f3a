"""What `groundcot inspect` reads from a large run: the gallery's sampled rows vs loading the run.

    python bench/inspect_read.py [--rows 4000] [--row-group 256] [--per-style 6]

Writes a synthetic sif run (640x480 JPEGs, 16-bit depth maps, one row group per
``--row-group`` rows) with the sif config's own schema, then measures side by side, in this one run:
  - the gallery's read (``report.sample_rows``: only the row groups holding the sampled rows);
  - the distributions' read (``report.distributions``: a few small columns of every row);
  - loading every row and column with pyarrow (what a full load costs);
and prints each as a ratio of the full load (time, and Arrow bytes materialised).
"""
from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

import numpy as np


def jpeg(rng) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    ramp = np.linspace(0, 200, 640)[None, :, None] + np.linspace(0, 50, 480)[:, None, None]
    pixels = np.clip(ramp + rng.normal(0, 12, (480, 640, 3)), 0, 255).astype(np.uint8)  # a photo-like size
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def write_run(root: str, rows: int, row_group: int) -> str:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from groundcot.schemas.codecs import encode_png16
    from groundcot.schemas.columns import features
    from groundcot.transforms.styles import columns_of

    rng = np.random.default_rng(0)
    images = [jpeg(rng) for _ in range(8)]
    depth = encode_png16(np.add.outer(np.linspace(0, 0.5, 480), np.linspace(0, 0.5, 640)))
    chain = [{"kind": "full", "boxes": [[0.0, 0.0, 1.0, 1.0]], "depths": [0.5]},
             {"kind": "gt", "boxes": [[0.2, 0.2, 0.6, 0.7]], "depths": [0.4]}]
    records = []
    for i in range(rows):
        row = {name: None for name in columns_of("sif")}
        row.update(id=f"r{i}", source="viscot", source_id=str(i), dataset="syn", split="train", question="q?",
                   answer="a", image={"bytes": images[i % 8], "path": None}, width=640, height=480,
                   gt_boxes=[[128.0, 96.0, 384.0, 336.0]], labels=[], chain=chain, masks=[], messages=[],
                   style="sif", teacher="template", hiou=1.0, cot="<think>" + "x" * 400 + "</think>",
                   depth_map={"bytes": depth, "path": None})
        records.append(row)
    folder = os.path.join(root, "data", "sif")
    os.makedirs(folder)
    schema = features(columns_of("sif")).arrow_schema
    pq.write_table(pa.Table.from_pylist(records, schema=schema), os.path.join(folder, "train-00000-of-00001.parquet"),
                   row_group_size=row_group)
    with open(os.path.join(root, "stats.json"), "w") as handle:
        json.dump({"by_style": {"sif": {"written": rows}}}, handle)
    return root


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main() -> None:
    import pyarrow.parquet as pq

    from groundcot.runs import inspect as report
    from groundcot.schemas.runs import style_shards

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--row-group", type=int, default=256)
    parser.add_argument("--per-style", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="groundcot-bench-") as root:
        run = write_run(root, args.rows, args.row_group)
        paths = style_shards(run)["sif"]
        size = sum(os.path.getsize(p) for p in paths)
        full_s, table = timed(lambda: pq.read_table(paths[0]))
        full_bytes = table.nbytes
        del table
        gallery_s, rows = timed(lambda: report.sample_rows(paths, args.per_style, seed=0))
        gallery_bytes = sum(len((r.get("image") or {}).get("bytes") or b"") + len((r.get("depth_map") or {}).get(
            "bytes") or b"") for r in rows)
        stats_s, _ = timed(lambda: report.distributions({"sif": paths}))
        print(f"run: {args.rows} sif rows, row groups of {args.row_group}, {size / 1e6:.0f} MB of Parquet")
        print(f"full load (pyarrow, every column): {full_s:.2f} s, {full_bytes / 1e6:.0f} MB in memory = 1.00")
        print(f"gallery, {args.per_style} sampled rows: time {gallery_s / full_s:.3f} of the full load "
              f"(image+depth bytes of the shown rows {gallery_bytes / 1e6:.1f} MB); row groups read "
              f"{len({int(r['id'][1:]) // args.row_group for r in rows})} of {-(-args.rows // args.row_group)}")
        print(f"distributions, small columns of every row: time {stats_s / full_s:.3f} of the full load")


if __name__ == "__main__":
    main()
