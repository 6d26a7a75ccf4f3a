"""The per-style sink against the single-table sink it replaced, on the same rows.

    python bench/sink_layout.py RUN [--copies 12] [--repeats 2]

Takes RUN's rows (e.g. the demo's), repeats them ``--copies`` times, and writes them with Beam's
DirectRunner twice over: (old) one ``WriteToParquet`` of every column for every style, and (new)
``WriteOutputs``' path: one ``fileio.WriteToFiles`` per style with only that style's columns, split
by split, small row groups. Prints the best wall time of each and the ratios (time, bytes on disk).
Copies repeat the same images, which Parquet's dictionary encoding can store once: compare bytes
at ``--copies 1``.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.options.value_provider import StaticValueProvider

from groundcot.schemas.columns import features
from groundcot.schemas.runs import read_run
from groundcot.transforms.sink import ParquetRowsSink, shard_name, split_name
from groundcot.transforms.styles import STYLES, columns_of


def old(rows, out):
    with beam.Pipeline() as p:
        (p | beam.Create(rows) | beam.io.WriteToParquet(
            f"{out}/data/train", schema=features().arrow_schema, file_name_suffix=".parquet",
            record_batch_size=256, row_group_buffer_size=32 << 20))


def new(rows, out):
    with beam.Pipeline() as p:
        parts = p | beam.Create(rows) | beam.Partition(lambda r, _: list(STYLES).index(r["style"]), len(STYLES))
        for style, part in zip(STYLES, parts):
            keep = list(columns_of(style))
            (part
             | f"Select_{style}" >> beam.Map(lambda r, keep=keep: {k: r[k] for k in keep})
             | f"Write_{style}" >> fileio.WriteToFiles(
                 f"{out}/data/{style}", file_naming=shard_name, destination=lambda r: split_name(r["split"]),
                 sink=lambda _, style=style: ParquetRowsSink(style, 256, 32),
                 temp_directory=StaticValueProvider(str, f"{out}/.tmp-{style}")))


def size(folder):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs
               if f.endswith(".parquet"))


def best(write, rows, repeats):
    times, nbytes = [], 0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            write(rows, out)
            times.append(time.perf_counter() - start)
            nbytes = size(f"{out}/data")
    return min(times), nbytes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--copies", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rows = read_run(args.run, decode_images=False).to_list() * args.copies
    t_old, b_old = best(old, rows, args.repeats)
    t_new, b_new = best(new, rows, args.repeats)
    print(f"{len(rows)} rows, DirectRunner, best of {args.repeats}")
    print(f"old (one table, every column): {t_old:.2f} s, {b_old / 1e6:.1f} MB")
    print(f"new (a config per style):      {t_new:.2f} s, {b_new / 1e6:.1f} MB")
    print(f"ratio new/old: time {t_new / t_old:.2f}, bytes {b_new / b_old:.2f}")


if __name__ == "__main__":
    main()
