"""Resume without recomputation: with `cache:` set, a repeated run of the demo job computes no depth
map and no mask, an extended run (one more source file) computes only the new images, a changed
model misses, and the cached outputs equal the computed ones; teacher replies share the cache.
Real CLI, real Beam runner."""
import json

import pytest

from groundcot.pipeline.cli import main
from groundcot.schemas.runs import read_run

from support import REPO, png_bytes, viscot_line
from support.fake_openai import FakeOpenAI

DEMO = str(REPO / "jobs" / "demo.yaml")
SCENES = "{kind: viscot, path: demo_data/metadata/demo_scenes_cot_train.jsonl, image_root: demo_data/images}"
SIGNS = "{kind: viscot, path: demo_data/metadata/demo_signs_cot_train.jsonl, image_root: demo_data/images}"


def generate(out, cache, sources, *more):
    args = ["generate", DEMO, "-o", str(out), "--limit", "3", "--set", f"cache={cache}",
            "--set", f"sources=[{', '.join(sources)}]", "--set", "styles=[sif, aperture]", *more]
    assert main(args) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["balanced"]
    return stats


def calls(stats, stage):
    """(hits, misses) of a stage's cache, from the Beam counters in stats.json."""
    counters = stats["counters"]
    return counters.get(f"{stage}.cache_hits", 0), counters.get(f"{stage}.cache_misses", 0)


def rows(out):
    table = read_run(str(out), decode_images=False).select_columns(["id", "style", "depth_map", "masks"]).to_list()
    return {(r["id"], r["style"]): ((r["depth_map"] or {}).get("bytes"), r["masks"]) for r in table}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def first(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("first")
    return out, generate(out, cache, [SCENES])


def test_a_repeated_run_computes_no_depth_map_and_no_mask(first, cache, tmp_path):
    out, stats = first
    computed = {stage: calls(stats, stage) for stage in ("depth", "masks")}
    assert all(hits == 0 and misses > 0 for hits, misses in computed.values())  # an empty cache: all computed
    assert len(list(cache.glob("depth/*/*.png"))) > 0 and len(list(cache.glob("masks/*/*.json"))) > 0
    again = generate(tmp_path, cache, [SCENES])
    for stage, (_, misses) in computed.items():
        assert calls(again, stage) == (misses, 0)  # every record found, no model call
        assert again["cache"][stage] == {"hits": misses, "misses": 0}  # stats.json's own summary
    assert again["written"] == stats["written"] > 0
    assert rows(tmp_path) == rows(out)  # cached depth_map bytes and masks equal the computed ones


def test_an_extended_run_computes_only_the_new_source(first, cache, tmp_path):
    _, stats = first
    extended = generate(tmp_path, cache, [SCENES, SIGNS])
    for stage in ("depth", "masks"):
        hits, misses = calls(extended, stage)
        assert hits == sum(calls(stats, stage))  # the first source's records, all found
        assert 0 < misses <= 3  # the new source's records only (--limit 3)


def test_a_changed_model_misses(first, cache, tmp_path):
    _, stats = first
    changed = generate(tmp_path, cache, [SCENES], "--set", "depth.model=groundcot-test/another-depth-model")
    assert calls(changed, "depth") == (0, sum(calls(stats, "depth")))
    assert calls(changed, "masks") == (sum(calls(stats, "masks")), 0)


def test_teacher_replies_go_to_the_jobs_cache_when_the_teacher_names_none(tmp_path, monkeypatch):
    monkeypatch.setenv("GC_TEST_KEY", "sk-groundcot-resume-test")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png_bytes(64, 48))
    meta = tmp_path / "toy_cot_train.jsonl"
    meta.write_text("".join(viscot_line("a.png", 64, 48, [[10, 10, 30, 30]], question=f"What is {i}?") + "\n"
                            for i in range(3)))
    with FakeOpenAI() as fake:
        job = {"sources": [{"kind": "viscot", "path": str(meta), "image_root": str(tmp_path / "images")}],
               "depth": {"enabled": False}, "cache": str(tmp_path / "cache"),
               "teacher": {"kind": "openai", "connection": {"base_url": fake.base_url, "model": "fake-vlm",
                                                            "api_key_env": "GC_TEST_KEY"}}}
        (tmp_path / "job.yaml").write_text(json.dumps(job))
        for run in ("first", "again"):
            assert main(["generate", str(tmp_path / "job.yaml"), "-o", str(tmp_path / run)]) == 0
        ledgers = [json.loads((tmp_path / run / "stats.json").read_text())["teacher"]["ledger"]
                   for run in ("first", "again")]
    assert len(fake.requests) == 3  # the second run asked nothing
    assert (ledgers[0]["cache_misses"], ledgers[1]["cache_hits"], ledgers[1].get("cache_misses", 0)) == (3, 3, 0)
    assert len(list((tmp_path / "cache" / "teacher").glob("*/*.json"))) == 3


@pytest.mark.slow
def test_a_killed_run_resumes_with_nothing_lost_and_nothing_paid_twice(tmp_path):
    """kill -9 mid-teacher (depth, masks, API teacher on loopback), re-run: every (id, style) once,
    no depth map or mask computed again, at most the calls in flight asked twice; the previous
    output survived the killed run untouched."""
    import signal
    import subprocess
    import sys
    import time

    out, cache, concurrency = tmp_path / "out", tmp_path / "cache", 2
    base = ["-o", str(out), "--limit", "3", "--set", f"cache={cache}", "--set", "styles=[sif, textual]"]
    assert main(["generate", DEMO, *base]) == 0  # a previous, finished run (template teacher)
    previous = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with FakeOpenAI(latency=0.4) as fake:
        teacher = (f"teacher={{kind: openai, connection: {{base_url: '{fake.base_url}', model: fake-vlm, "
                   f"api_key_env: null}}, limits: {{max_concurrency: {concurrency}}}}}")
        cmd = [sys.executable, "-m", "groundcot", "generate", DEMO, *base, "--set", teacher]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 180
        while len(fake.requests) < 3:  # depth and masks are done, the teacher is under way
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        asked_before = len(fake.requests)
        assert {p: p.read_bytes() for p in previous} == previous  # the killed run published nothing
        fake.latency = 0
        assert main(["generate", DEMO, *base, "--set", teacher]) == 0
        stats = json.loads((out / "stats.json").read_text())
        calls_needed = stats["teacher"]["ledger"]["cache_misses"] + stats["teacher"]["ledger"]["cache_hits"]
        asked = len(fake.requests)
    assert stats["balanced"] and stats["teacher"]["kind"] == "openai"
    assert stats["cache"]["depth"]["misses"] == 0 and stats["cache"]["masks"]["misses"] == 0
    written = [(r["id"], r["style"]) for r in read_run(str(out)).select_columns(["id", "style"]).to_list()]
    rejected = [(json.loads(line)["id"], json.loads(line)["style"])
                for f in (out / "rejected").glob("*.jsonl") for line in f.read_text().splitlines()]
    made = stats["records_in"] - stats["by_style"].get("before_styles", {}).get("rejected", 0)
    assert len(set(written)) == len(written) and not set(written) & set(rejected)
    assert {s for _, s in written} <= {"sif", "textual"} and len(written) + len(rejected) >= 2 * made
    assert stats["teacher"]["ledger"]["cache_hits"] >= asked_before - concurrency  # done replies not asked again
    assert asked - calls_needed <= concurrency  # at most the calls in flight at the kill were repeated
