"""Teacher throughput: our async DoFn vs bare clients at the same concurrency, side by side.

    PYTHONPATH=tests python bench/teacher.py [--records 1500] [--latency 0.2] [--concurrency 64] [--no-threads]

The endpoint (bench/endpoint.py) is a local OpenAI-compatible server in its own process,
answering every call after a fixed latency. The DoFn (transforms/teach/dofn.py) hands each
record to its event loop's thread, where one task prepares the request and sends it through the teacher's own
``aiohttp`` session (the ``openai`` client's URL, headers and JSON; transforms/teach/client.py).
Two bare clients run at the same concurrency in one thread of the same process: an ``httpx``
client and an ``aiohttp`` session, each with one pool of ``concurrency`` connections. Every
side does the same work per record: make the record from its index, build the request (boxed
image, the style's part), call, check the reply (turns, CoT, the validation rules); every
record must pass. Each side's figure is its steady state: the time of N more records (a run of
2N minus a run of N), so start-up, ramp and tail cancel out; that difference is noisy (+-10% on
a loaded machine), so CPU per record and the CPU ratio line are the steadier figures. Target:
the DoFn at >= 0.9 x the faster bare client's records/s. The 30-thread one-request-per-thread
loop is the anchor's design (at most concurrency/30 slower by arithmetic).
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



def run_ours(base_url: str, first: int, n: int, concurrency: int) -> tuple[float, float]:
    """The DoFn on records ``first..first+n`` made inside the pipeline (``beam.Create`` of built
    records would pickle and compress every image on the way in: a cost of the harness, not of
    the teacher). Returns (wall, CPU) seconds; every record must be accepted."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from groundcot.transforms.teach.dofn import Teach

    started, cpu = time.monotonic(), time.process_time()
    p = beam.Pipeline(runner=FnApiRunner())
    (p | beam.Create(list(range(first, first + n)), reshuffle=False) | beam.Map(make_record)
     | beam.ParDo(Teach(teacher_cfg(base_url, concurrency), VALIDATE, "bench")))
    result = p.run()
    result.wait_until_finish()
    wall, cpu = time.monotonic() - started, time.process_time() - cpu
    ok = sum(c.committed for c in result.metrics().query(MetricsFilter().with_name("teacher.ok"))["counters"])
    assert ok == n, f"{ok} of {n} records accepted"
    return wall, cpu


def bare_work(pictures):
    """The per-record work outside the client, as a bare client does it: the record from its
    index, its request (boxed image, style's part), and the reply's check (turns, CoT, rules)."""
    from groundcot.transforms.styles import style_of
    from groundcot.transforms.styles.prefix import shared
    from groundcot.transforms.validate import check

    def build(i: int):
        record = make_record(i)
        request = style_of(record).request(record, shared(record, pictures))
        return record, {"model": "fake", "messages": request.messages, "temperature": 0.2, "max_tokens": 512}

    def verify(record, reply: bytes):
        import json

        record.turns = style_of(record).reply(record, json.loads(reply)["choices"][0]["message"]["content"])
        record.cot = "\n\n".join(record.turns)
        return check(record, **VALIDATE)

    return build, verify


def run_bare(base_url: str, first: int, n: int, concurrency: int, transport: str) -> tuple[float, float]:
    """A bare client (``httpx`` or ``aiohttp``, one pool of ``concurrency`` connections) doing
    the DoFn's per-record work: records ``first..first+n`` from their index, request built,
    one call, reply checked. Returns (wall, CPU) seconds."""
    import asyncio
    import json

    from groundcot.transforms.styles.prefix import Pictures

    build, verify = bare_work(Pictures(1024, "jpeg"))
    url, headers = f"{base_url}/chat/completions", {"content-type": "application/json"}

    async def go():
        gate = asyncio.Semaphore(concurrency)
        if transport == "httpx":
            import httpx2

            client = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=concurrency,
                                                             max_keepalive_connections=concurrency), timeout=60)

            async def post(body: bytes) -> bytes:
                return (await client.post(url, content=body, headers=headers)).raise_for_status().content
        else:
            import aiohttp

            client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                           timeout=aiohttp.ClientTimeout(total=60))

            async def post(body: bytes) -> bytes:
                async with client.post(url, data=body, headers=headers) as response:
                    response.raise_for_status()
                    return await response.read()

        async def one(i: int):
            async with gate:
                record, body = build(i)
                return verify(record, await post(json.dumps(body).encode()))

        started, cpu = time.monotonic(), time.process_time()
        problems = await asyncio.gather(*(one(i) for i in range(first, first + n)))
        wall, cpu = time.monotonic() - started, time.process_time() - cpu
        await (client.aclose() if transport == "httpx" else client.close())
        assert not any(problems), problems[:3]
        return wall, cpu

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


def steady(run, n: int) -> tuple[float, float]:
    """Records/s and CPU ms per record of N more records: ``run(first, count)`` on N, then on 2N
    records, the difference (start-up, ramp and tail cancel out)."""
    wall_one, cpu_one = run(0, n)
    wall_two, cpu_two = run(n, 2 * n)
    return n / (wall_two - wall_one), (cpu_two - cpu_one) / n * 1000


def main() -> None:
    from endpoint import serve

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1500)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-threads", action="store_true", help="skip the 30-thread loop")
    args = parser.parse_args()
    port = mp.Queue()
    server = mp.Process(target=serve, args=(args.latency, port), daemon=True)
    server.start()
    base_url = port.get(timeout=30)
    n, c = args.records, args.concurrency
    try:
        ideal = c / args.latency
        run_ours(base_url, 0, c, c)  # warm-up: the first pipeline also imports Beam's runner and the client
        ours, ours_cpu = steady(lambda first, k: run_ours(base_url, first, k, c), n)
        bare = {t: steady(lambda first, k: run_bare(base_url, first, k, c, t), n) for t in ("httpx", "aiohttp")}
        best = max(bare, key=lambda t: bare[t][0])
        print(f"{n} records, {args.latency * 1000:.0f} ms per call, {c} in flight (limit {ideal:.0f}/s); "
              "steady state of N more records; each side builds the request, calls and checks the reply")
        for name, (rate, cpu) in bare.items():
            print(f"  bare {name:8}: {rate:6.0f} records/s, {cpu:.2f} ms CPU/record")
        print(f"  async DoFn   : {ours:6.0f} records/s, {ours_cpu:.2f} ms CPU/record")
        print(f"  ratio: DoFn / bare {best} (the faster bare client) = {ours / bare[best][0]:.2f} (target >= 0.90); "
              f"DoFn = {ours / ideal:.2f} x the limit")
        print(f"  CPU ratio: bare {best}'s CPU per record / the DoFn's = {bare[best][1] / ours_cpu:.2f} "
              "(what records/s would be if one core ran each alone; less swayed by others' load)")
        if not args.no_threads:
            threads = n / run_threads(base_url, records(n))
            print(f"  30 threads, one request each: {threads:6.0f} records/s = {threads / (30 / args.latency):.2f} "
                  f"x its own limit {30 / args.latency:.0f}/s; DoFn speed-up {ours / threads:.2f} x "
                  f"(at most {c / 30:.2f} x by arithmetic)")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
