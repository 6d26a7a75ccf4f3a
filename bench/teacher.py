"""Teacher throughput: our async DoFn vs a 30-thread one-request-per-thread loop.

    python bench/teacher.py [--records 1500] [--latency 0.2] [--concurrency 64]

The endpoint (bench/endpoint.py) is a local OpenAI-compatible server in its own process,
answering every call after a fixed latency. A bare httpx client at the same concurrency
is measured too: on a small machine the client and the endpoint share the cores, and that
sets a ceiling below concurrency/latency. Both sides do the same work per
record: build the request (boxed images), call, check the reply. They differ only in
how calls are in flight. Targets: >= 0.9 x concurrency/latency records/s, and the
speed-up over the 30-thread loop (at most concurrency/30 by arithmetic).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

VALIDATE = {"min_hiou": 0.5, "box_tol": 0.01, "depth_tol": 0.1}


@lru_cache(maxsize=1)
def jpeg() -> bytes:
    """The 160x120 JPEG every record carries (encoded once: reading images is an earlier stage's work)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (160, 120), (90, 140, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_record(i: int):
    """Record ``i``: a 160x120 JPEG with one GT box, its chain expanded."""
    from groundcot.schemas.record import Record
    from groundcot.transforms.expand import expand_record

    rng = random.Random(i)
    x, y = rng.uniform(10, 100), rng.uniform(10, 70)
    r = Record(id=f"r{i}", source="bench", source_id=str(i), dataset="bench", split="train",
               question=f"Question {i}?", answer="red", image_path="x.jpg", width=160, height=120,
               gt_boxes=[[x, y, x + 30, y + 25]], image=jpeg())
    return expand_record(r, seed=i)


def records(n: int):
    return [make_record(i) for i in range(n)]


def teacher_cfg(base_url: str, concurrency: int):
    from groundcot.transforms.teach.api import OpenAIConfig

    return OpenAIConfig(kind="openai", limits={"max_concurrency": concurrency}, request={"max_tokens": 512},
                        connection={"base_url": base_url, "model": "fake", "api_key_env": None, "timeout_s": 60,
                                    "max_retries": 2})



def run_ours(base_url: str, n: int, concurrency: int) -> float:
    """The DoFn on records made inside the pipeline (``beam.Create`` of built records would
    pickle and compress every image on the way in: a cost of the harness, not of the teacher)."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from groundcot.transforms.teach.dofn import Teach

    started = time.monotonic()
    with beam.Pipeline(runner=FnApiRunner()) as p:
        (p | beam.Create(list(range(n)), reshuffle=False) | beam.Map(make_record)
         | beam.ParDo(Teach(teacher_cfg(base_url, concurrency), VALIDATE, "bench")))
    return time.monotonic() - started


def run_bare(base_url: str, recs, concurrency: int) -> float:
    """Only the transport: pre-built bodies, no client library, no checks."""
    import asyncio
    import json

    import httpx2

    from groundcot.transforms.teach.api import ApiTeacher

    teacher = ApiTeacher(teacher_cfg(base_url, concurrency), VALIDATE)
    bodies = [json.dumps({"model": "fake", "messages": teacher.prepare(r).messages, "max_tokens": 512}) for r in recs]

    async def go():
        gate = asyncio.Semaphore(concurrency)
        async with httpx2.AsyncClient(limits=httpx2.Limits(max_connections=concurrency), timeout=60) as client:
            async def one(body):
                async with gate:
                    (await client.post(f"{base_url}/chat/completions", content=body,
                                       headers={"content-type": "application/json"})).json()
            started = time.monotonic()
            await asyncio.gather(*(one(b) for b in bodies))
            return time.monotonic() - started

    return asyncio.run(go())


def run_threads(base_url: str, recs, threads: int = 30) -> float:
    from groundcot.schemas.cot import extract_cot
    from groundcot.transforms.styles import style_of
    from groundcot.transforms.styles.prefix import Pictures, shared
    from groundcot.transforms.teach.connection import Connection, make_client
    from groundcot.transforms.validate import check

    conn = Connection(base_url=base_url, model="fake", api_key_env=None, max_retries=2)
    client = make_client(conn, asynchronous=False)  # the sync client, one call per thread

    def one(record):
        request = style_of(record).request(record, shared(record, Pictures(1024, "jpeg")))
        reply = client.chat.completions.create(model="fake", messages=request.messages, max_tokens=512)
        record.cot = extract_cot(reply.choices[0].message.content)
        return check(record, **VALIDATE)

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        problems = list(pool.map(one, recs))
    assert not any(problems), problems[:3]
    return time.monotonic() - started


def main() -> None:
    from endpoint import serve

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1500)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    port = mp.Queue()
    server = mp.Process(target=serve, args=(args.latency, port), daemon=True)
    server.start()
    base_url = port.get(timeout=30)
    try:
        ideal = args.concurrency / args.latency
        bare = args.records / run_bare(base_url, records(args.records), args.concurrency)
        # steady state: N more records in the same pipeline, so start-up cost cancels out (after a
        # warm-up run: the first pipeline also pays for importing Beam's runner and the client)
        run_ours(base_url, args.concurrency, args.concurrency)
        one = run_ours(base_url, args.records, args.concurrency)
        two = run_ours(base_url, 2 * args.records, args.concurrency)
        ours, ours_wall = args.records / (two - one), 2 * args.records / two
        threads = args.records / run_threads(base_url, records(args.records))
        print(f"{args.records} records, {args.latency * 1000:.0f} ms per call")
        print(f"  bare httpx, concurrency {args.concurrency}: {bare:6.0f} records/s = {bare / ideal:.2f} x the limit "
              f"{ideal:.0f}/s (this machine's ceiling: transport only, no work per record)")
        print(f"  async DoFn, concurrency {args.concurrency}: {ours:6.0f} records/s = "
              f"{ours / ideal:.2f} x the limit (target >= 0.90), {ours / bare:.2f} x the bare ceiling "
              f"(steady state; {ours_wall:.0f}/s with pipeline start-up)")
        print(f"  30 threads, one request each   : {threads:6.0f} records/s = {threads / (30 / args.latency):.2f} "
              f"x its own limit {30 / args.latency:.0f}/s")
        print(f"  speed-up: {ours / threads:.2f} x (at most {args.concurrency / 30:.2f} x by arithmetic: "
              f"{args.concurrency} vs 30 calls in flight)")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
