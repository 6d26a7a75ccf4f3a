"""Depth/SAM2 preprocessing: the processors' PIL steps vs groundcot's torch steps, and batch fill.

    python bench/gpu_prep.py [--images 40] [--records 4000] [--batch 8]

Measured here, side by side in one run on this machine's CPU (no GPU here):
- CPU time per 640x480 JPEG for decode + Depth-Anything-V2's processor (518, keep aspect, multiple
  of 14, bicubic), decode + SAM2's steps with PIL (1024 square, bilinear), and what is left on the
  CPU when the resize and normalisation run on the device (decode only); plus the torch steps on
  this CPU, to show what they cost where there is no GPU.
- Batch fill: for a mixed-size stream (a synthetic mix of COCO-, Visual Genome-, Flickr- and
  document-like sizes, stated below, not a measured dataset), the mean images per depth forward pass
  when a batch groups only equal processed shapes within what it receives: ``batch`` records at a
  time (before) and a buffer of ``BUFFER`` batches grouped by ``plan_batches`` (now).
On paper, not measured: the vCPUs an L4 worker would need to keep its GPU busy, from the published
depth and SAM2 throughputs in bench/capacity.py.
"""
from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capacity import DEPTH_IMAGES_PER_S, SAM2_IMAGES_PER_S, VCPUS

from groundcot.transforms.depth import BUFFER
from groundcot.transforms.masks import MEAN, STD, preprocess
from groundcot.transforms.tensor_prep import Prep, decode, from_processor, plan_batches

# (width, height, weight): a synthetic mix, not measured from a dataset
MIX = ([(640, h, 6) for h in (480, 427, 426, 425, 428, 424, 429, 423, 478, 360)]
       + [(h, 640, 3) for h in (480, 427, 426, 425)]
       + [(500, 375, 4), (500, 333, 4), (800, 600, 3), (500, 334, 2), (375, 500, 2), (333, 500, 2), (1024, 768, 2)])


def jpeg(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx * yy) % 256], axis=-1)
    pixels = (base + rng.integers(-30, 30, (height, width, 3))).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def per_image_ms(fn, images: list[bytes]) -> float:
    fn(images[0])  # warm-up
    start = time.perf_counter()
    for data in images:
        fn(data)
    return (time.perf_counter() - start) / len(images) * 1e3


def depth_processor():
    """Depth-Anything-V2-*-hf's preprocessor_config.json settings."""
    from transformers import DPTImageProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    return DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                             resample=3, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])


def mixed_sizes(n: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return rng.choices([(w, h) for w, h, _ in MIX], weights=[k for *_, k in MIX], k=n)


def fill(shapes: list, batch: int, buffer: int) -> tuple[float, int]:
    """Mean images per forward pass, and passes, when ``batch * buffer`` records arrive at a time."""
    passes = []
    step = batch * buffer
    for start in range(0, len(shapes), step):
        passes += [len(b) for b in plan_batches(shapes[start:start + step], batch)]
    return sum(passes) / len(passes), len(passes)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=40, help="640x480 JPEGs timed per variant")
    ap.add_argument("--records", type=int, default=4000, help="mixed-size stream for the batch fill")
    ap.add_argument("--batch", type=int, default=8, help="depth.batch_size")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # one core per image, as a worker's SDK process would spend it
    images = [jpeg(640, 480, i) for i in range(args.images)]
    processor = depth_processor()
    depth_prep = from_processor(processor)
    sam2_prep = Prep(1024, 1024, tuple(MEAN.tolist()), tuple(STD.tolist()))

    def pil(data):
        return Image.open(io.BytesIO(data)).convert("RGB")

    rows = {
        "decode only (what device-side steps leave on the CPU)": per_image_ms(decode, images),
        "decode + Depth-Anything-V2 processor (PIL)": per_image_ms(
            lambda d: processor(images=pil(d), return_tensors="pt"), images),
        "decode + SAM2 steps with PIL (1024 square)": per_image_ms(lambda d: preprocess(pil(d), 1024), images),
        "decode + depth torch steps on this CPU": per_image_ms(lambda d: depth_prep([decode(d)]), images),
        "decode + SAM2 torch steps on this CPU": per_image_ms(lambda d: sam2_prep([decode(d)]), images),
    }
    print(f"CPU ms per 640x480 JPEG, one thread [measured here, {args.images} images]")
    for name, ms in rows.items():
        print(f"  {name:55s} {ms:7.1f} ms")
    decode_ms, depth_ms, sam2_ms = (rows[k] for k in list(rows)[:3])
    print(f"  ratio depth processor / decode only:       {depth_ms / decode_ms:5.1f}x")
    print(f"  ratio depth processor / torch on this CPU: {depth_ms / rows[list(rows)[3]]:5.1f}x")
    print(f"  ratio SAM2 PIL steps / torch on this CPU:  {sam2_ms / rows[list(rows)[4]]:5.1f}x")

    # each stage decodes its own copy of the image: depth + masks = two decodes per record with prep
    before, after = depth_ms + sam2_ms, 2 * decode_ms
    need_before = (DEPTH_IMAGES_PER_S * depth_ms + SAM2_IMAGES_PER_S * sam2_ms) / 1e3
    need_after = (DEPTH_IMAGES_PER_S + SAM2_IMAGES_PER_S) * decode_ms / 1e3
    print("\nOn paper [published GPU throughputs from bench/capacity.py x the CPU ms measured above]")
    print(f"  an L4 runs {DEPTH_IMAGES_PER_S:.0f} depth + {SAM2_IMAGES_PER_S:.0f} SAM2 images/s; "
          f"a g2-standard-4 has {VCPUS} vCPUs")
    print(f"  vCPUs busy to feed it, processor steps: {need_before:5.1f}  (CPU ms per record {before:.0f})")
    print(f"  vCPUs busy to feed it, device steps:    {need_after:5.1f}  (CPU ms per record {after:.0f})")
    print(f"  ratio: {need_before / need_after:.1f}x fewer vCPUs; GPU-side resize time not included (not measured)")

    sizes = mixed_sizes(args.records)
    shapes = [depth_prep.size(h, w) for w, h in sizes]
    print(f"\nBatch fill, depth.batch_size={args.batch} [measured here on a synthetic size mix: "
          f"{len(set(sizes))} image sizes -> {len(set(shapes))} processed shapes, {args.records} records]")
    for label, buffer in [("one batch at a time (before)", 1), ("buffer of 4 batches", 4),
                          (f"buffer of {BUFFER} batches (now)", BUFFER), ("buffer of 64 batches", 64)]:
        mean, passes = fill(shapes, args.batch, buffer)
        print(f"  {label:30s} {mean:5.2f} images per pass ({mean / args.batch:4.0%} full), {passes} passes")


if __name__ == "__main__":
    main()
