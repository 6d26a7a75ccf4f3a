"""Comparing two runs of one job on different runners (local, portable, Dask)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from groundcot.schemas.codecs import decode_png16
from groundcot.schemas.runs import read_run

# what a worker process of the demo with models imports: preloaded once by the cluster runners' tests
MODEL_MODULES = ["torch", "transformers.models.sam2.modeling_sam2",
                 "transformers.models.depth_anything.modeling_depth_anything"]


def outcomes(out) -> tuple[dict, list]:
    """{(id, style): depth map or None}, and the rejected (id, style) pairs."""
    out = Path(out)
    data = read_run(str(out), decode_images=False).select_columns(["id", "style", "depth_map"]).to_list()
    rejected = [json.loads(line) for f in (out / "rejected").glob("*.jsonl") for line in f.read_text().splitlines()]
    maps = {(r["id"], r["style"]): (r["depth_map"] or {}).get("bytes") for r in data}
    return ({key: None if png is None else decode_png16(png) for key, png in maps.items()},
            sorted((r["id"], r.get("style", "")) for r in rejected))


def same_outcomes(a, b) -> bool:
    """The same rows and rejections, and depth maps equal within one 16-bit level: a runner that puts
    other records in a batch with an image moves the model's float sums by a rounding."""
    (maps_a, rejected_a), (maps_b, rejected_b) = a, b
    if maps_a.keys() != maps_b.keys() or rejected_a != rejected_b:
        return False
    return all((x is None) == (y is None) and (x is None or (x.shape == y.shape and np.abs(x - y).max() <= 1.01 / 65535))
               for x, y in ((maps_a[k], maps_b[k]) for k in maps_a))


def demo_with_models(out, models, limit: int, *more) -> dict:
    """The bundled demo job, sif and aperture, with the given tiny depth and SAM2 folders (no
    fallback), through the CLI; its stats.json."""
    from groundcot.pipeline.cli import main

    from support import REPO

    depth, sam2 = models
    args = ["generate", str(REPO / "jobs" / "demo.yaml"), "-o", str(out), "--limit", str(limit),
            "--set", "styles=[sif, aperture]", "--set", f"depth.model={depth}", "--set", "depth.fallback=none",
            "--set", f"masks.model={sam2}", "--set", "masks.fallback=none", *more]
    assert main(args) == 0
    return json.loads((Path(out) / "stats.json").read_text())
