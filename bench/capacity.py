"""Capacity plan for N records (default 1M) on Dataflow with g2-standard-4 + one L4 per worker.

    python bench/capacity.py [--records 1000000] [--sample 200] [--workers 16] [--target-hours 8]

Measured here, by this script, in one run on this machine's CPU (every printed figure says
"measured here" or "published"):
  - records/s of one worker process through the real CLI (all four styles, template teacher,
    synthetic 640x480 JPEGs) three ways on the same records: depth and masks off, depth on, depth
    and masks on, and their ratios. Depth and masks run tiny random Depth-Anything-V2 and SAM2
    models built from configs (as ``groundcot tiny-model`` and the tests build them): their forward
    passes cost next to nothing, but what the CPU does around them is real: JPEG decode for the
    model input, resizing the output to the image, the 16-bit depth PNG, the colour depth image of
    sif rows, each mask's RLE, the aperture GT mask's decode, and the larger rows written;
  - each of those parts alone, in-process on the same images, as ms per record and as a share of a
    record's time with depth and masks on;
  - building one teacher request (boxes drawn, image encoded) per record, and its size in tokens.
Published, not measured here (no GPU in this environment): the real models' GPU throughputs and
prices, constants below with their source.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from groundcot.transforms.styles import style_names

VCPUS, MEMORY_GB = 4, 16  # g2-standard-4 (Compute Engine machine types page)

# --- published, not measured here -----------------------------------------------------------
# Depth-Anything-V2-Small is the ViT-S DPT of Depth Anything; its README (LiheYoung/Depth-Anything,
# "Inference time") gives 12 ms per 518x518 image for ViT-S on a V100. An L4 (121 dense FP16
# tensor TFLOPS, NVIDIA L4 datasheet) is taken as a V100 (125, V100 datasheet).
DEPTH_IMAGES_PER_S = 1 / 0.012
# facebookresearch/sam2 README, SAM 2.1 checkpoints table: sam2.1_hiera_tiny 91.2 FPS on an A100
# (torch compile). Scaled to an L4 by dense FP16 tensor TFLOPS, 121/312 (NVIDIA datasheets).
SAM2_IMAGES_PER_S = 91.2 * 121 / 312
# Dataflow batch prices, us-central1 (cloud.google.com/dataflow/pricing; not re-checked in this
# session, verify before budgeting): per vCPU hour, per GB hour, per L4 GPU hour.
PRICE_VCPU_H, PRICE_GB_H, PRICE_L4_H = 0.056, 0.003557, 0.7
# Teacher prices as in jobs/viscot_hosted.yaml (gpt-4.1-mini, OpenAI's pricing page), USD per
# million tokens; and Qwen2.5-VL's image tokens: one per 28x28 pixel patch (its model card).
PRICE_PROMPT_MTOK, PRICE_COMPLETION_MTOK, PATCH = 0.40, 1.60, 28
# Assumed, not measured: completion tokens per reply, share of replies re-asked once.
COMPLETION_TOKENS, REASK_SHARE = 300, 0.10


MODES = {"off": (False, False), "depth": (True, False), "depth+masks": (True, True)}  # (depth, masks)


def make_data(root: Path, n: int, n_images: int = 100, seed: int = 0) -> Path:
    """n VisCoT records over n_images 640x480 JPEGs, 1-3 boxes each, in ``root``; returns the jsonl."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True)
    for i in range(n_images):
        im = Image.new("RGB", (640, 480), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(im)
        for _ in range(12):
            x, y = rng.randrange(600), rng.randrange(440)
            draw.ellipse([x, y, x + rng.randrange(20, 120), y + rng.randrange(20, 90)],
                         fill=tuple(rng.randrange(256) for _ in range(3)))
        im.save(root / "images" / f"{i}.jpg", quality=90)
    lines = []
    for k in range(n):
        boxes = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            x1, y1 = rng.uniform(0, 500), rng.uniform(0, 380)
            boxes.append([round(x1, 1), round(y1, 1), round(x1 + rng.uniform(16, 130), 1),
                          round(y1 + rng.uniform(16, 90), 1)])
        lines.append(json.dumps({"question": f"What is in region {k}?", "answer": str(k % 7),
                                 "image": f"{rng.randrange(n_images)}.jpg", "width": 640, "height": 480,
                                 "bboxs": boxes, "dataset": "synthetic", "split": "train"}))
    meta = root / "bench_cot_train.jsonl"
    meta.write_text("\n".join(lines) + "\n")
    return meta


def tiny_models(root: Path) -> tuple[str, str]:
    """Tiny random Depth-Anything-V2 and SAM2, built from configs into ``root`` (no download)."""
    from groundcot.transforms.depth import build_tiny_random as build_depth
    from groundcot.transforms.masks import build_tiny_random as build_sam2

    return build_depth(str(root / "depth")), build_sam2(str(root / "sam2"))


def cli_seconds(meta: Path, out: Path, mode: str, models: tuple[str, str]) -> float:
    """Seconds of one worker process through every stage: the real CLI, pipeline time from stats.json
    (from building the job to its end: the models' loading included)."""
    depth, masks = MODES[mode]
    job = out.with_suffix(".yaml")
    job.write_text(f"sources: [{{kind: viscot, path: '{meta}', image_root: '{meta.parent}/images'}}]\n"
                   f"styles: {json.dumps(list(style_names()))}\nrunner: {{log_every_s: 0}}\n"
                   f"depth: {{enabled: {str(depth).lower()}, model: '{models[0]}', fallback: none, device: cpu}}\n"
                   f"masks: {{enabled: {str(masks).lower()}, model: '{models[1]}', fallback: none, device: cpu}}\n")
    proc = subprocess.run([sys.executable, "-m", "groundcot", "generate", str(job), "-o", str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the {mode} run failed: {proc.stderr[-2000:]}")
    stats = json.loads((out / "stats.json").read_text())
    n = sum(1 for _ in meta.open())
    assert stats["balanced"] and stats["records_in"] == n and stats["written"] > 0, stats
    return stats["elapsed_s"]


LOAD = """
import sys, time
started = time.perf_counter()
from groundcot.transforms.depth import DepthHandler
from groundcot.transforms.masks import Sam2Handler
from groundcot.transforms.models import ResolvedModel
DepthHandler(ResolvedModel(sys.argv[1], sys.argv[1]), device="cpu").load_model()
Sam2Handler(ResolvedModel(sys.argv[2], sys.argv[2]), device="cpu").load_model()
print(time.perf_counter() - started)
"""


def load_seconds(models: tuple[str, str]) -> float:
    """What a fresh worker process spends once on the models: importing torch and transformers, loading both."""
    proc = subprocess.run([sys.executable, "-c", LOAD, *models], capture_output=True, text=True, check=True)
    return float(proc.stdout.split()[-1])


def part_costs(meta: Path, models: tuple[str, str], n: int) -> dict[str, float]:
    """ms per record of each CPU part around the two models, in-process on the first n records."""
    from groundcot.schemas.codecs import decode_mask, decode_png16, encode_mask, encode_png16
    from groundcot.schemas.depth import render_depth
    from groundcot.transforms.depth import DepthHandler, normalise
    from groundcot.transforms.masks import Sam2Handler
    from groundcot.transforms.models import ResolvedModel
    from groundcot.transforms.tensor_prep import decode

    records = [json.loads(line) for line in meta.open()][:n]
    images = [(meta.parent / "images" / r["image"]).read_bytes() for r in records]
    boxes = [r["bboxs"] for r in records]
    ms: dict[str, float] = {"load": load_seconds(models) * 1000}
    depth = DepthHandler(ResolvedModel(models[0], models[0]), device="cpu").load_model()
    sam2 = Sam2Handler(ResolvedModel(models[1], models[1]), device="cpu").load_model()

    def timed(name, fn):
        started = time.perf_counter()
        result = fn()
        ms[name] = (time.perf_counter() - started) * 1000 / len(records)
        return result

    pngs = timed("depth stage", lambda: [png for png, *_ in depth.depth_maps(images, 8)])
    entries = timed("masks stage", lambda: [e for e, *_ in sam2.masks(list(zip(images, boxes)), 4)])
    maps = [decode_png16(png) for png in pngs]
    masks = [[(decode_mask(e), e["score"]) for e in es] for es in entries]
    timed("decode", lambda: [decode(data) for data in images])
    timed("depth png", lambda: [encode_png16(normalise(m)) for m in maps])
    timed("colour", lambda: [render_depth(decode_png16(png)) for png in pngs])
    timed("rle", lambda: [[encode_mask(m, s) for m, s in ms_] for ms_ in masks])
    timed("mask decode", lambda: [decode_mask(es[0]) for es in entries if len(es) == 1])
    # what is left of each stage: the tiny forward pass and resizing its output to the image (GPU work)
    ms["depth forward"] = max(0.0, ms["depth stage"] - ms["decode"] - ms["depth png"])
    ms["masks forward"] = max(0.0, ms["masks stage"] - ms["decode"] - ms["rle"])
    return ms


def request_cost(n: int) -> tuple[float, float]:
    """Seconds to build one teacher request, and its prompt tokens (text/4 + image patches)."""
    import base64
    import io

    from groundcot.schemas.record import Record
    from groundcot.transforms.expand import expand_record
    from groundcot.transforms.teach.api import ApiTeacher, OpenAIConfig

    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 140, 200)).save(buffer, format="JPEG", quality=90)
    rng = random.Random(0)
    records = []
    for i in range(n):
        x, y = rng.uniform(10, 500), rng.uniform(10, 380)
        records.append(expand_record(Record(
            id=f"r{i}", source="bench", source_id=str(i), dataset="bench", split="train", question=f"Question {i}?",
            answer="red", image_path="x.jpg", width=640, height=480, gt_boxes=[[x, y, x + 80, y + 60]],
            image=buffer.getvalue()), seed=i))
    cfg = OpenAIConfig(kind="openai", limits={"max_concurrency": 8},
                       connection={"base_url": "http://127.0.0.1:9/v1", "model": "bench", "api_key_env": None,
                                   "max_retries": 0})
    teacher = ApiTeacher(cfg, {"min_hiou": 0.5, "box_tol": 0.01, "depth_tol": 0.1})
    started = time.perf_counter()
    requests = [teacher.prepare(r) for r in records]
    seconds = (time.perf_counter() - started) / n
    tokens = 0
    for part in (p for m in requests[0].messages for p in (m["content"] if isinstance(m["content"], list)
                                                  else [{"type": "text", "text": m["content"]}])):
        if part["type"] == "text":
            tokens += len(part["text"]) / 4
        else:
            data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
            w, h = Image.open(io.BytesIO(data)).size
            tokens += math.ceil(w / PATCH) * math.ceil(h / PATCH)
    return seconds, tokens


def main() -> None:  # noqa: PLR0915 - one report
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=200, help="synthetic records for the CPU measurements")
    parser.add_argument("--workers", type=int, default=16, help="Dataflow workers (max_num_workers)")
    parser.add_argument("--target-hours", type=float, default=8.0, help="wall hours to size the worker count for")
    args = parser.parse_args()
    n, styles = args.records, len(style_names())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        meta, models = make_data(root / "data", args.sample), tiny_models(root / "models")
        seconds = {mode: cli_seconds(meta, root / mode.replace("+", "_"), mode, models) for mode in MODES}
        part = part_costs(meta, models, min(args.sample, 200))
    req_s, prompt_tokens = request_cost(200)

    rps = {mode: args.sample / s for mode, s in seconds.items()}
    # per record, less the models' one-off loading (measured in-process) where the run loads them
    record_ms = {mode: (s * 1000 - (part["load"] if mode != "off" else 0)) / args.sample
                 for mode, s in seconds.items()}
    added_ms = record_ms["depth+masks"] - record_ms["off"]
    forward_ms = part["depth forward"] + part["masks forward"]  # runs on the GPU in production
    cpu_s = max(record_ms["depth+masks"] - forward_ms, record_ms["off"]) / 1000 + styles * req_s  # one vCPU
    gpu_s = 1 / DEPTH_IMAGES_PER_S + 1 / SAM2_IMAGES_PER_S  # one image per record (published)
    worker_cpu_rps, worker_gpu_rps = VCPUS / cpu_s, 1 / gpu_s
    worker_rps = min(worker_cpu_rps, worker_gpu_rps)
    bound = "CPU" if worker_cpu_rps < worker_gpu_rps else "GPU"
    wall_h = n / (worker_rps * args.workers) / 3600
    needed = math.ceil(n / (worker_rps * args.target_hours * 3600))
    worker_h = n / worker_rps / 3600
    worker_price = VCPUS * PRICE_VCPU_H + MEMORY_GB * PRICE_GB_H + PRICE_L4_H
    calls = n * styles * (1 + REASK_SHARE)
    prompt_tok, completion_tok = calls * prompt_tokens, calls * COMPLETION_TOKENS
    teacher_usd = prompt_tok / 1e6 * PRICE_PROMPT_MTOK + completion_tok / 1e6 * PRICE_COMPLETION_MTOK

    print(f"capacity plan: {n:,} records x {styles} styles on Dataflow, g2-standard-4 (4 vCPU, 16 GB, 1 L4)")
    print(f"\nCPU stages, one process, real CLI [measured here: {args.sample} synthetic 640x480 records, "
          "template teacher, tiny random models]")
    for mode, r in rps.items():
        print(f"  {mode:<12} {r:8.1f} records/s  {r / rps['off']:.2f}x the rate with both off;  "
              f"{record_ms[mode]:6.2f} ms/record less the models' loading, {record_ms['off'] / record_ms[mode]:.2f}x")
    print(f"  of which once per process: importing torch and transformers, loading both tiny models "
          f"{part['load'] / 1000:.1f} s [measured here, a fresh process]")
    print(f"  depth and masks on add {added_ms:.2f} ms/record (depth {record_ms['depth'] - record_ms['off']:.2f}, "
          f"masks {record_ms['depth+masks'] - record_ms['depth']:.2f})")
    on = record_ms["depth+masks"]
    rows = [("JPEG decode for the models' input (x2)", 2 * part["decode"]),
            ("depth: normalise + 16-bit PNG encode", part["depth png"]),
            ("depth: colour depth image (sif rows)", part["colour"]),
            ("masks: RLE encode, all GT boxes", part["rle"]),
            ("masks: GT mask decode (aperture)", part["mask decode"])]
    print(f"parts of a record with depth and masks on [measured here, in-process, {min(args.sample, 200)} records;"
          f" share of its {on:.2f} ms]")
    for label, value in rows:
        print(f"  {label:<40} {value:6.2f} ms  {value / on:6.1%}")
    print(f"  {'sum of the parts above':<40} {sum(v for _, v in rows):6.2f} ms  {sum(v for _, v in rows) / on:6.1%}"
          f"  ({sum(v for _, v in rows) / added_ms:.2f}x what depth and masks added in the CLI runs)")
    print(f"  {'tiny forward passes + output resize':<40} {forward_ms:6.2f} ms  {forward_ms / on:6.1%}"
          "  (GPU work in production; the tiny models' cost, not the real models')")
    print("rates [measured here]")
    print(f"  teacher request building (sif, 640x480):   {req_s * 1000:8.2f} ms/record/style, "
          f"~{prompt_tokens:.0f} prompt tokens (text/4 + {PATCH}px patches)")
    print("rates [published, not measured here: sources in bench/capacity.py]")
    print(f"  Depth-Anything-V2-Small on an L4:          {DEPTH_IMAGES_PER_S:8.1f} images/s (ViT-S on V100, 12 ms)")
    print(f"  SAM2.1 hiera-tiny on an L4:                {SAM2_IMAGES_PER_S:8.1f} images/s (91.2 FPS A100 x 121/312)")
    print("\nper worker [measured CPU x published GPU]")
    print(f"  CPU per record: {cpu_s * 1000:.2f} ms of one vCPU (depth+masks run less the tiny forward passes, "
          f"+ {styles} teacher requests)")
    print(f"  CPU-bound {worker_cpu_rps:.1f} records/s (4 vCPU / {cpu_s * 1000:.1f} ms), GPU-bound "
          f"{worker_gpu_rps:.1f} records/s ({gpu_s * 1000:.1f} ms of L4): {bound}-bound at {worker_rps:.1f} records/s")
    print(f"  GPU busy share: {worker_rps * gpu_s:.0%}")
    print("\nplan")
    print(f"  worker hours:      {worker_h:8.1f}  (g2-standard-4)")
    print(f"  GPU hours, depth:  {n / DEPTH_IMAGES_PER_S / 3600:8.1f}  (busy L4 time, published rate)")
    print(f"  GPU hours, SAM2:   {n / SAM2_IMAGES_PER_S / 3600:8.1f}  (busy L4 time, published rate)")
    print(f"  L4 hours billed:   {worker_h:8.1f}  (one per worker, busy or not)")
    print(f"  wall hours:        {wall_h:8.1f}  with {args.workers} workers; {needed} workers for "
          f"{args.target_hours:g} h")
    print(f"  Dataflow cost:     ${worker_h * worker_price:10,.0f}  (${worker_price:.3f}/worker hour: 4 vCPU, "
          "16 GB, 1 L4; published prices, not re-checked)")
    print(f"  teacher calls:     {calls:12,.0f}  ({n:,} x {styles} styles, +{REASK_SHARE:.0%} re-asks assumed)")
    print(f"  teacher tokens:    {prompt_tok / 1e9:8.2f} B prompt (measured size), {completion_tok / 1e9:.2f} B "
          f"completion ({COMPLETION_TOKENS}/reply assumed)")
    print(f"  teacher cost:      ${teacher_usd:10,.0f}  (gpt-4.1-mini prices of jobs/viscot_hosted.yaml, published; "
          "0 with the template teacher)")
    print("\nassumptions: one image per record (VisCoT: about one question per image; the cache serves repeats); "
          "GPU-side resize (depth.preprocess/masks.preprocess: torch); CPU rate of this machine's core taken as a "
          "G2 vCPU's.")


if __name__ == "__main__":
    main()
