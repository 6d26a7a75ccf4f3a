"""CPU stages (read, image, expand, template teacher, validate, Parquet) with depth off.

    python bench/cpu_stages.py [--records 2000] [--memory 1000 10000 40000] [--workers 1 2]

Each run is the real CLI in its own process; its peak RSS comes from wait4. Prints
records/s (pipeline time from stats.json, and wall time with start-up) and peak memory
at each size, with the ratios to the targets (>= 500 records/s; memory flat in size: the
Parquet writer's row-group buffer, output.buffer_mb, fills first, then memory stays put).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

TARGET_RPS = 500


def make_data(root: Path, n: int, n_images: int = 200, seed: int = 0) -> Path:
    """n VisCoT metadata records over n_images small distinct JPEGs, 1-3 boxes each."""
    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    sizes = []
    for i in range(n_images):
        w, h = rng.choice([(320, 240), (240, 320), (400, 300), (256, 256)])
        im = Image.new("RGB", (w, h), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        draw = ImageDraw.Draw(im)
        for _ in range(4):
            x, y = rng.randrange(w - 40), rng.randrange(h - 40)
            draw.rectangle([x, y, x + 40, y + 40], fill=(rng.randrange(256), 0, rng.randrange(256)))
        im.save(images / f"{i}.jpg", quality=85)
        sizes.append((w, h))
    lines = []
    for k in range(n):
        i = rng.randrange(n_images)
        w, h = sizes[i]
        boxes = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            x1, y1 = rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.8)
            boxes.append([round(x1, 1), round(y1, 1), round(x1 + rng.uniform(8, w * 0.2), 1),
                          round(y1 + rng.uniform(8, h * 0.2), 1)])
        lines.append(json.dumps({"question": f"Question {k}?", "answer": str(k % 7), "image": f"{i}.jpg",
                                 "width": w, "height": h, "bboxs": boxes, "dataset": "synthetic", "split": "train"}))
    meta = root / f"bench{n}_cot_train.jsonl"
    meta.write_text("\n".join(lines) + "\n")
    job = root / f"job{n}.yaml"
    job.write_text(f"sources: [{{kind: viscot, path: '{meta}', image_root: '{images}'}}]\n"
                   "depth: {enabled: false}\nrunner: {log_every_s: 0}\n")
    return job


def run(job: Path, out: Path, workers: int) -> dict:
    cmd = [sys.executable, "-m", "groundcot", "generate", str(job), "--out", str(out),
           "--set", f"runner.workers={workers}"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    if status != 0:
        raise SystemExit(f"run failed: {proc.stderr.read().decode()[-2000:]}")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["balanced"], stats
    return {"records": stats["records_in"], "written": stats["written"], "pipeline_s": stats["elapsed_s"],
            "wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--memory", type=int, nargs="+", default=[1000, 10000, 40000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"throughput on {args.records} synthetic records (depth off, template teacher):")
        job = make_data(root, args.records)
        for workers in args.workers:
            r = run(job, root / f"out-t{workers}", workers)
            rps = r["records"] / r["pipeline_s"]
            print(f"  workers={workers}: {rps:7.0f} records/s in the pipeline ({r['pipeline_s']}s), "
                  f"{r['records'] / r['wall_s']:6.0f} records/s with start-up ({r['wall_s']}s); "
                  f"{rps / TARGET_RPS:.2f} x target {TARGET_RPS}")
        print("peak memory (workers=1):")
        peaks = {}
        for n in args.memory:
            r = run(make_data(root / f"m{n}", n), root / f"out-m{n}", 1)
            peaks[n] = r["peak_rss_mb"]
            print(f"  {n:>6} records: peak RSS {r['peak_rss_mb']} MB, {r['records'] / r['pipeline_s']:.0f} records/s")
        sizes = sorted(peaks)
        for lo, hi in zip(sizes, sizes[1:]):
            print(f"  memory ratio {hi}/{lo} records: {peaks[hi] / peaks[lo]:.2f} (flat = 1.0)")


if __name__ == "__main__":
    main()
