"""Integration: the teacher against a real OpenAI-compatible server (`transformers serve`)
hosting a tiny random VLM on loopback. Its replies are noise, so every record must be
rejected with a clear reason, and none lost."""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from groundcot.pipeline.cli import main

from support import png_bytes, viscot_line

pytestmark = pytest.mark.slow  # a real `transformers serve`
pytest.importorskip("fastapi", reason="transformers[serving] (the dev extra) is needed for this test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The server's process first writes the tiny model (support.tiny_models's builder) in a Hub-cache layout
# (`transformers serve` lists, GET /v1/models, only what its cache holds), then runs the `transformers`
# command's own main: torch and transformers are imported once, there, not in the test process too.
SERVE = """import sys
from pathlib import Path
from groundcot.trainer.tiny import build_tiny_vlm
repo, revision = Path(sys.argv[1]), "0" * 40
build_tiny_vlm(str(repo / "snapshots" / revision))
(repo / "refs").mkdir()
(repo / "refs" / "main").write_text(revision)
from transformers.cli.transformers import main
sys.argv = ["transformers", *sys.argv[2:]]
sys.exit(main())
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    hub = tmp_path_factory.mktemp("hub")
    model, port = "groundcot/tiny-vlm", free_port()
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(hub / "models--groundcot--tiny-vlm"), "serve", model,
                             "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("transformers serve did not come up in 180 s")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1", model
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def job_for(tmp_path, base_url, model, **request) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png_bytes(64, 48))
    (tmp_path / "images" / "b.png").write_bytes(png_bytes(48, 64, (20, 200, 40)))
    meta = tmp_path / "toy_cot_train.jsonl"
    meta.write_text("".join(viscot_line(name, *size, [[5, 5, 25, 25]], question=q) + "\n" for name, size, q in [
        ("a.png", (64, 48), "What colour is it?"), ("b.png", (48, 64), "Is it green?"),
        ("a.png", (64, 48), "Where is the box?")]))
    job = tmp_path / "job.yaml"
    job.write_text(json.dumps({
        "sources": [{"kind": "viscot", "path": str(meta), "image_root": str(tmp_path / "images")}],
        "depth": {"enabled": False},
        "teacher": {"kind": "openai", "limits": {"max_concurrency": 2},
                    "connection": {"base_url": base_url, "model": model, "api_key_env": None, "timeout_s": 120,
                                   "max_retries": 0},
                    "request": {"max_tokens": 16, "temperature": 0.0, "image_max_side": 56, "image_format": "png",
                                **request}}}))
    return job


def rejected_rows(out: Path) -> list[dict]:
    return [json.loads(line) for f in (out / "rejected").glob("*.jsonl") for line in f.read_text().splitlines()]


def test_noise_from_a_real_server_is_rejected_with_reasons(tmp_path, server):
    job = job_for(tmp_path, *server)
    out = tmp_path / "out"
    assert main(["generate", str(job), "--out", str(out), "--allow-empty"]) == 0  # no row passes: noise
    stats = json.loads((out / "stats.json").read_text())
    assert stats["balanced"] and stats["records_in"] == 3 and stats["written"] == 0
    rows = rejected_rows(out)
    assert len(rows) == 3
    for row in rows:  # noise fails validation, with the rule named
        assert row["stage"] == "validate" and row["reason"].startswith(("grammar_", "chain_", "answer_"))
        assert row["cot"] is not None and row["detail"]
    ledger = stats["teacher"]["ledger"]
    assert ledger["requests"] == ledger["status_200"] == 6  # each record asked twice (one re-ask)
    assert ledger["prompt_tokens"] > 0 and ledger["completion_tokens"] > 0


def test_a_request_the_server_refuses_keeps_the_servers_reason(tmp_path, server, capfd):
    """A parameter the server does not take (FastAPI's 422 body, `detail`) reaches each rejection's detail."""
    job = job_for(tmp_path, *server, extra_body={"top_k": 5})
    out = tmp_path / "out"
    assert main(["generate", str(job), "--out", str(out)]) == 1  # nothing written: the run failed
    err = capfd.readouterr().err
    assert "every one of 3 records was rejected with teacher_http_422" in err
    assert not (out / "stats.json").exists()  # nothing published; the rejections are in the kept staging folder
    rows = rejected_rows(Path(re.search(r"groundcot inspect (.+?)\); pass --allow-empty", err).group(1)))
    assert len(rows) == 3 and {r["reason"] for r in rows} == {"teacher_http_422"}
    assert all("top_k" in r["detail"] for r in rows), rows[0]["detail"]


def test_check_names_a_model_the_server_does_not_serve(tmp_path, server, capfd):
    base_url, _ = server
    job = job_for(tmp_path, base_url, "nobody/not-served")
    assert main(["generate", str(job), "--check"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nobody/not-served" in err[0], err
