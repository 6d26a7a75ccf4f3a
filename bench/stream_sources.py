"""Streaming readers on big synthetic files: records/s and peak memory vs file size.

    python bench/stream_sources.py [--mb 200]

Writes a VisCoT LLaVA array (indent=4, as upstream) and a GQA questions object, of
--mb/10 and --mb MB. Each is read by the real Beam reader (local runner, records counted)
in a process of its own, so wait4 gives that run's peak RSS. Flat memory shows as the
same peak at both sizes. Beside it, ``json.load`` of the big file shows what streaming
saves.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


def write_llava(path: Path, mb: int) -> int:
    n, size = 0, 0
    with path.open("w") as f:
        f.write("[\n")
        while size < mb << 20:
            rec = {"dataset": "gqa", "split": "train", "question_id": n,
                   "image": [f"cot/gqa/{n}.jpg", f"cot/gqa/{n}.jpg###[{n % 300}, 20, {n % 300 + 50}, 90]"],
                   "conversations": [
                       {"from": "human", "value": f"<image>\nWhat is on the table number {n}? Please provide the "
                        "bounding box coordinate of the region that can help you answer the question better."},
                       {"from": "gpt", "value": "[0.100, 0.200, 0.300, 0.400]"},
                       {"from": "human", "value": "<image>"},
                       {"from": "gpt", "value": f"a red cup number {n}"}]}
            text = ("" if n == 0 else ",\n") + json.dumps(rec, indent=4)
            f.write(text)
            size += len(text)
            n += 1
        f.write("\n]")
    return n


def write_gqa(path: Path, mb: int) -> int:
    n, size = 0, 0
    with path.open("w") as f:
        f.write("{")
        while size < mb << 20:
            q = {"semantic": [{"operation": "select", "dependencies": [], "argument": f"cup ({n})"}],
                 "entailed": [], "equivalent": [f"{n:08d}"], "question": f"What color is the cup {n}?",
                 "imageId": str(n % 5000), "isBalanced": True, "groups": {"global": None, "local": "x"},
                 "answer": "red", "semanticStr": f"select: cup ({n})->query: color",
                 "annotations": {"answer": {}, "question": {"3": str(n)}, "fullAnswer": {"1": str(n)}},
                 "types": {"detailed": "q", "semantic": "attr", "structural": "query"},
                 "fullAnswer": "The cup is red."}
            text = ("" if n == 0 else ", ") + json.dumps(f"{n:08d}") + ": " + json.dumps(q)
            f.write(text)
            size += len(text)
            n += 1
        f.write("}")
    return n


def child(kind: str, path: str) -> None:
    """Runs in its own process: read the file, print the record count and seconds."""
    started = time.monotonic()
    if kind == "json.load":
        data = json.load(open(path))
        print(len(data), time.monotonic() - started)
        return
    import apache_beam as beam
    from apache_beam.metrics import Metrics
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from groundcot.transforms.sources.common import read_json_items
    from groundcot.transforms.sources.viscot import parse_llava

    p = beam.Pipeline(runner=FnApiRunner())
    if kind == "llava":
        records = read_json_items(p, path, "Read", "array", ("image", "conversations")) | beam.MapTuple(parse_llava)
    else:
        from groundcot.transforms.sources.gqa import parse_question
        f = SimpleNamespace(balanced_only=False, structural=None, semantic=None, detailed=None)
        records = (read_json_items(p, path, "Read", "object", ("imageId", "question"))
                   | beam.MapTuple(lambda name, off, item: parse_question(name, off, item, "train", f)))
    records | beam.Map(lambda r: Metrics.counter("bench", "read.ok").inc())
    result = p.run()
    result.wait_until_finish()
    counter = result.metrics().query(MetricsFilter().with_name("read.ok"))["counters"][0]
    print(counter.committed, time.monotonic() - started)


def measure(kind: str, path: Path) -> tuple[int, float, float]:
    proc = subprocess.Popen([sys.executable, __file__, "--child", kind, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read().decode().split()
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"{kind} failed")
    return int(out[0]), float(out[1]), usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    with tempfile.TemporaryDirectory() as tmp:
        for name, write, kind in (("viscot_llava.json", write_llava, "llava"),
                                  ("train_balanced_questions.json", write_gqa, "gqa")):
            peaks = {}
            for mb in (max(args.mb // 10, 1), args.mb):  # memory must not grow with the file
                path = Path(tmp) / name
                n = write(path, mb)
                size = path.stat().st_size / (1 << 20)
                got, secs, peaks[mb] = measure(kind, path)
                assert got == n, (got, n)
                print(f"{name} {size:.0f} MB, {n} records: streamed {n / secs:.0f} records/s "
                      f"({size / secs:.1f} MB/s), peak RSS {peaks[mb]:.0f} MB")
            _, load_secs, load_rss = measure("json.load", path)
            small, big = peaks.values()
            print(f"  peak RSS {args.mb} MB file / {max(args.mb // 10, 1)} MB file: {big / small:.2f} "
                  f"(flat = 1.0; the rest is the process's own baseline)")
            print(f"  json.load of the {args.mb} MB file: peak RSS {load_rss:.0f} MB "
                  f"-> streaming uses {big / load_rss:.2f} x its memory, {load_secs:.1f}s vs {secs:.1f}s")
            path.unlink()

if __name__ == "__main__":
    main()
