"""Image tokens a VLM teacher is sent per record and style, vs the anchor request shape.

    python bench/teacher_cost.py [--rule qwen2.5-vl|openai-tiles] [--max-side 1024]

On the demo records (jobs/demo_data: read, images loaded, chains expanded and crops planned
as the demo job does, without depth or masks), three request shapes are built for every
style and their images counted under the token rule:

- anchor: one full-resolution image per chain step, the step's boxes drawn on it (SIFThinker's
  ``produce.py``, and groundcot's requests before the shared prefix), for every style;
- per_step: groundcot's ``teacher.request.images: per_step`` (one image per step at ``image_max_side``,
  plus the crops a style needs);
- one: groundcot's default (the image once, every step numbered on it, plus only the crops a
  style needs: segment crops, and rectangle crops only where they show their region at least
  ``crop_min_zoom`` times larger than the downscaled image does).

The demo images are small (320x240), so at the default 1024 px no rectangle crop adds detail;
``--max-side 160`` shows the regime where the image is downscaled and crops are sent.

Target: ``one`` at most 1/3 of the anchor per record and style. With prefix caching the shared
image is paid once per record rather than once per style: the last column counts it so.
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "jobs" / "demo_data"


def demo_records():
    from groundcot.transforms.expand import expand_record
    from groundcot.transforms.images import load_image
    from groundcot.transforms.sources.viscot import parse_line

    out = []
    for path in sorted((DEMO / "metadata").glob("*_cot_train.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            record = load_image(parse_line(path.name, line), str(DEMO / "images"))
            if record.rejection is None:
                out.append(expand_record(record, seed=0))
    return out


def main() -> None:
    from groundcot.transforms.styles import fan_out, plan, style_names, style_of
    from groundcot.transforms.styles.prefix import Pictures, shared
    from groundcot.transforms.teach.tokens import image_tokens

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rule", default="qwen2.5-vl", choices=["qwen2.5-vl", "openai-tiles"])
    parser.add_argument("--max-side", type=int, default=1024, help="teacher.request.image_max_side")
    parser.add_argument("--min-zoom", type=float, default=1.5, help="teacher.request.crop_min_zoom")
    args = parser.parse_args()

    def tokens(sizes) -> int:
        return sum(image_tokens(w, h, args.rule) for w, h in sizes)

    records = demo_records()
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    shared_once = 0
    for record in records:
        anchor = tokens([(record.width, record.height)] * len(record.chain))
        prefixes = {mode: shared(record, Pictures(args.max_side, "jpeg", mode == "per_step", args.min_zoom))
                    for mode in ("one", "per_step")}
        for twin in fan_out(record, list(style_names())):
            twin = plan(twin, frame="qwen2_5_vl")
            totals[twin.style]["anchor"] += anchor
            for mode, prefix in prefixes.items():
                totals[twin.style][mode] += tokens(style_of(twin).request(twin, prefix).sizes)
            totals[twin.style]["crops"] += tokens(style_of(twin).request(twin, prefixes["one"]).sizes[1:])
        shared_once += tokens(prefixes["one"].sizes)
    n = len(records)
    print(f"{n} demo records, {args.rule} tokens, images at most {args.max_side} px, crops sent from "
          f"{args.min_zoom}x zoom; image tokens per record:")
    print(f"  {'style':10} {'anchor':>8} {'per_step':>9} {'one':>7} {'one/anchor':>11} {'one/per_step':>13}"
          "  (target: one/anchor <= 0.33)")
    sums = defaultdict(int)
    for style in style_names():
        t = totals[style]
        for k, v in t.items():
            sums[k] += v
        print(f"  {style:10} {t['anchor'] / n:8.0f} {t['per_step'] / n:9.0f} {t['one'] / n:7.0f} "
              f"{t['one'] / t['anchor']:11.2f} {t['one'] / t['per_step']:13.2f}")
    print(f"  {'all':10} {sums['anchor'] / n:8.0f} {sums['per_step'] / n:9.0f} {sums['one'] / n:7.0f} "
          f"{sums['one'] / sums['anchor']:11.2f} {sums['one'] / sums['per_step']:13.2f}")
    cached = shared_once + sums["crops"]
    print(f"  with the shared image paid once per record (prefix caching): {cached / n:.0f} tokens per record, "
          f"{cached / sums['anchor']:.2f} x the anchor")


if __name__ == "__main__":
    main()
