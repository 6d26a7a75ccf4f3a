"""Batch mode end to end: generate writes OpenAI Batch JSONL shards, `groundcot teacher submit |
status | collect` drive a loopback files + batches server, and a second generate makes no live call."""
import json
import re
import shutil
from pathlib import Path

import pytest
from test_teacher_api import KEY, job, module_run, outcome

from groundcot.pipeline.cli import main
from groundcot.transforms.cache import json_key

from support.fake_openai import FakeOpenAI

MODES = ["good", "fenced", "malformed", "server_error"]


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("GC_TEST_KEY", KEY)


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory):
    """generate in batch mode on MODES (with prices), once: its job and output folder. The tests
    that submit or collect work on a copy (``own_copy``)."""
    with FakeOpenAI() as fake:
        found = module_run(tmp_path_factory, MODES, fake, batch={"enabled": True},
                           cost={"price_prompt_per_mtok": 1.0, "price_completion_per_mtok": 1.0})
        assert fake.requests == [] and fake.health_checks == 0  # batch mode calls no one
    return found


def own_copy(batch_run, tmp_path, fake) -> tuple[str, Path]:
    """The batch run's folder copied into ``tmp_path``, and its job with a cache of its own and ``fake``'s URL."""
    path, out = batch_run
    shutil.copytree(out, tmp_path / "out")
    cfg = json.loads(Path(path).read_text())
    cfg["teacher"]["cache"] = str(tmp_path / "cache")
    cfg["teacher"]["connection"]["base_url"] = fake.base_url
    (tmp_path / "job.yaml").write_text(json.dumps(cfg))
    return str(tmp_path / "job.yaml"), tmp_path / "out"


def shard_lines(out):
    files = sorted((out / "batch").glob("requests-*.jsonl"))
    return files, [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_batch_shards_follow_the_openai_batch_request_schema(batch_run):
    out = batch_run[1]
    stats, _, _ = outcome(out)
    assert stats["balanced"] and stats["written"] == 0
    assert stats["rejected_by_reason"] == {"teacher_batch_pending": len(MODES)}
    files, lines = shard_lines(out)
    assert files and len(lines) == len(MODES) == stats["teacher"]["ledger"]["batch_requests"]
    ids = set()
    for line in lines:  # OpenAI's request input object, field by field
        assert list(line) == ["custom_id", "method", "url", "body"]
        assert isinstance(line["custom_id"], str) and len(line["custom_id"]) == 64 and line["custom_id"] not in ids
        ids.add(line["custom_id"])
        assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
        body = line["body"]
        assert body["model"] == "fake-vlm" and body["temperature"] == 0.3 and body["max_tokens"] == 256
        assert [m["role"] for m in body["messages"]] == ["system", "user", "user"]
        assert body["messages"][1]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        # the custom_id is the response cache's key for exactly this body
        params = {k: v for k, v in body.items() if k not in ("model", "messages")}
        assert line["custom_id"] == json_key({"model": body["model"], "messages": body["messages"], "params": params})
    assert KEY not in "".join(f.read_text() for f in files)


def test_submit_status_collect_then_generate_makes_no_live_call(batch_run, tmp_path, key, capsys):
    with FakeOpenAI() as fake:
        path, out = own_copy(batch_run, tmp_path, fake)
        _, lines = shard_lines(out)
        assert main(["teacher", "submit", path, "--out", str(out)]) == 0
        assert [c[0] for c in fake.batch_calls] == ["upload", "create"]
        uploaded = fake.files["file-1"].decode().splitlines()
        assert [json.loads(x) for x in uploaded] == lines  # the shard, byte for byte as JSON
        assert main(["teacher", "submit", path, "--out", str(out)]) == 0  # nothing submitted twice
        assert sum(c[0] == "create" for c in fake.batch_calls) == 1
        assert main(["teacher", "status", path, "--out", str(out)]) == 0
        assert "in_progress" in capsys.readouterr().out
        assert main(["teacher", "collect", path, "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "collected 3 replies" in printed and "1 failed requests" in printed  # server_error failed
        state = json.loads((out / "batch" / "batches.json").read_text())
        assert state[0]["collected"] and state[0]["status"] == "completed"

        # the next generate is served from the cache: no live call; malformed's re-ask and the
        # failed request go into new shards for a second round
        again = tmp_path / "again"
        assert main(["generate", path, "--out", str(again)]) == 0
        assert fake.requests == []
    stats, written, _ = outcome(again)
    assert stats["balanced"] and {q.split("[[")[1].rstrip("]") for q in written} == {"good", "fenced"}
    assert stats["rejected_by_reason"] == {"teacher_batch_pending": 2}
    ledger = stats["teacher"]["ledger"]
    assert ledger["cache_hits"] == 3 and ledger.get("requests", 0) == 0 and ledger["batch_requests"] == 2
    # the batch's usage came with its replies: the tokens (and so the cost) of this run are known
    assert ledger["batch_replies"] == 3 and ledger["prompt_tokens"] == 3 * 100 and ledger["completion_tokens"] == 3 * 40
    _, second = shard_lines(again)
    assert len(second) == 2 and any(m["role"] == "assistant" for m in second[0]["body"]["messages"] + second[1]["body"]["messages"])


def test_batch_mode_without_a_response_cache_stops_before_it_starts(tmp_path, key, capfd):
    with FakeOpenAI() as fake:
        path = job(tmp_path, fake, ["good"], batch={"enabled": True}, cache=None)
        out = tmp_path / "out"
        for args in (["--check"], []):
            assert main(["generate", path, "--out", str(out), *args]) == 2
            err = capfd.readouterr().err.strip()
            assert err == ("groundcot: config error: teacher.batch.enabled: batch mode needs a response cache (set "
                           "cache or teacher.cache): `groundcot teacher collect` imports the replies into it and the "
                           "next generate reads them from there")
        assert main(["teacher", "collect", path, "--out", str(out)]) == 2
        assert "batch mode needs a response cache" in capfd.readouterr().err
    assert not out.exists()


def test_collect_reads_vllm_run_batch_results(batch_run, tmp_path, key, capsys):
    """The other route: `vllm run-batch -i requests-*.jsonl -o RUN/batch/results.jsonl` on a GPU box."""
    with FakeOpenAI() as fake:
        path, out = own_copy(batch_run, tmp_path, fake)
        _, lines = shard_lines(out)
        # what vllm run-batch writes: one output object per input line, by custom_id
        results = [{"id": "vllm-1", "custom_id": line["custom_id"], "error": None,
                    "response": {"status_code": 200, "request_id": "r1",
                                 "body": fake.completion(faithful_sif(line["body"]))}} for line in lines]
        (out / "batch" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
        assert main(["teacher", "collect", path, "--out", str(out)]) == 0
        assert f"collected {len(MODES)} replies" in capsys.readouterr().out
        assert main(["generate", path, "--out", str(tmp_path / "again")]) == 0
        assert fake.requests == []
    stats, _, _ = outcome(tmp_path / "again")  # every record got a faithful reply
    assert stats["written"] == len(MODES) and stats["teacher"]["ledger"]["cache_hits"] == len(MODES)


def faithful_sif(body: dict) -> str:
    areas = re.findall(r"<area>(.*?)</area>", body["messages"][0]["content"])
    steps = "".join(f"<area>{a}</area>\n<text>Part {i}.</text>\n" for i, a in enumerate(areas, 1))
    return f"<think>\n{steps}</think>\n<answer>red</answer>"


def test_a_refused_key_is_one_line_without_the_key(batch_run, tmp_path, key, capfd):
    with FakeOpenAI() as fake:
        path, out = own_copy(batch_run, tmp_path, fake)
        fake.files_key = "sk-other"  # the files endpoint now wants another key
        assert main(["teacher", "submit", path, "--out", str(out)]) == 1
    err = capfd.readouterr().err
    assert "teacher submit: AuthenticationError" in err and KEY not in err and len(err.strip().splitlines()) == 1
    assert not (out / "batch" / "batches.json").exists()
