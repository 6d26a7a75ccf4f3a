"""CPU of one small in-process ``groundcot generate`` in a warm process (what ``--check``, small jobs and
the test suite pay per run), with groundcot's Beam patches (pipeline/beam_patch.py) and without them.

    python bench/per_run.py [--runs 5] [--rounds 3]

Each round starts one process per variant; a process makes one run to warm up (imports, first
compilations), then ``--runs`` runs of a six-record local VisCoT job (depth and masks off), and reports
their CPU (all threads, from getrusage). Prints the best and median per-run CPU of each variant over
the rounds, and their ratio. ``unpatched`` is Beam's own path (``GROUNDCOT_BEAM_PATCHES=0``).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

VARIANTS = ("patched", "unpatched")


def toy_job(root: Path) -> Path:
    """Six good VisCoT metadata records over six small PNGs in ``root``; the job config's path."""
    (root / "images").mkdir()
    lines = []
    for i in range(6):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
        (root / "images" / f"img{i}.png").write_bytes(buffer.getvalue())
        lines.append(json.dumps({"question": f"What is {i}?", "answer": "red", "image": f"img{i}.png",
                                 "width": 64, "height": 48, "bboxs": [[10, 10, 30 + i, 30]], "dataset": "toy",
                                 "split": "train"}))
    (root / "toy_cot_train.jsonl").write_text("\n".join(lines) + "\n")
    config = root / "job.yaml"
    config.write_text("sources: [{kind: viscot, path: toy_cot_train.jsonl, image_root: images}]\n")
    return config


def child(variant: str, runs: int) -> None:
    from groundcot.pipeline.cli import main

    if variant == "unpatched":
        os.environ["GROUNDCOT_BEAM_PATCHES"] = "0"  # beam_patch.apply installs nothing
    logging.disable(logging.WARNING)

    def run() -> None:
        root = Path(tempfile.mkdtemp())
        config = toy_job(root)
        assert main(["generate", str(config), "-o", str(root / "out"), "--set", "depth.enabled=false",
                     "--set", "masks.enabled=false"]) == 0

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    run()
    start = cpu()
    for _ in range(runs):
        run()
    print(json.dumps({"cpu_per_run": (cpu() - start) / runs}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per process")
    parser.add_argument("--rounds", type=int, default=3, help="processes per variant (alternating)")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.runs)
    seen: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--child", variant, "--runs", str(args.runs)],
                                 check=True, capture_output=True, text=True).stdout
            seen[variant].append(json.loads(out.strip().splitlines()[-1])["cpu_per_run"])
    for variant, values in seen.items():
        print(f"{variant:>9}: {min(values):.3f} s CPU per run (best), {statistics.median(values):.3f} (median) "
              f"over {args.rounds} x {args.runs} runs")
    print(f"patched / unpatched: {min(seen['patched']) / min(seen['unpatched']):.2f} (best), "
          f"{statistics.median(seen['patched']) / statistics.median(seen['unpatched']):.2f} (median)")


if __name__ == "__main__":
    main()
