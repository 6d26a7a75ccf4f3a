"""teacher.connection.api_key_secret, through the real CLI: read where it is used, never in the job graph, outputs or logs;
and --check's lines on the key and on the per-process limits."""
import base64
import bz2
import json
import sys
import zlib

import apache_beam as beam
import pytest
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

from groundcot.pipeline.cli import main
from groundcot.pipeline.config import load_config
from groundcot.pipeline.graph import build

from support import one_line, png_bytes, viscot_line
from support.fake_openai import FakeOpenAI

KEY = "sk-groundcot-secret-file-5e2d"


def job(tmp_path, fake, secret: str, modes=("good",), limits=None) -> str:
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "images" / "a.png").write_bytes(png_bytes(64, 48))
    meta = tmp_path / "toy_cot_train.jsonl"
    meta.write_text("".join(viscot_line("a.png", 64, 48, [[10, 10, 30, 30]], question=f"What is it? [[{m}]]",
                                        answer="red") + "\n" for m in modes))
    settings = {"kind": "openai", "cache": str(tmp_path / "cache"), "limits": limits or {},
                "connection": {"base_url": fake.base_url if fake else "http://127.0.0.1:9/v1", "model": "fake-vlm",
                               "api_key_env": None, "api_key_secret": secret, "max_retries": 1, "timeout_s": 2.0}}
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps({"sources": [{"kind": "viscot", "path": str(meta), "image_root": str(tmp_path / "images")}],
                                "depth": {"enabled": False}, "styles": ["sif"], "teacher": settings}))
    return str(path)


def test_a_key_from_a_secret_file_is_sent_and_appears_nowhere_else(tmp_path, capfd, caplog):
    secret = tmp_path / "secret" / "key"
    secret.parent.mkdir()
    secret.write_text(KEY + "\n")
    with FakeOpenAI(key=KEY) as fake:  # its health check refuses any other key
        config = job(tmp_path, fake, f"file:{secret}", modes=["good", "echo_key", "echo_auth"])
        out = tmp_path / "out"
        assert main(["generate", config, "--out", str(out)]) == 0
        assert fake.health_checks == 1
        assert fake.requests and all(r["headers"].get("authorization") == f"Bearer {KEY}" for r in fake.requests)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["balanced"] and stats["written"] == 2
    for path in [*out.rglob("*"), *(tmp_path / "cache").rglob("*")]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    printed = capfd.readouterr()
    assert KEY not in printed.out + printed.err + caplog.text
    # the job graph holds the reference only: the key is read by each worker when it starts
    p = beam.Pipeline()
    build(p, load_config(config), str(out), {})
    graph = pickled_dofns(p)
    assert str(secret).encode() in graph and KEY.encode() not in graph


def pickled_dofns(p: beam.Pipeline) -> bytes:
    """The pickles of every DoFn in the pipeline's graph, uncompressed (Beam's pickler: base64 of zlib or bz2)."""
    found = []
    for transform in p.to_runner_api().components.transforms.values():
        if transform.spec.urn == common_urns.primitives.PAR_DO.urn:
            payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn.payload
            data = base64.b64decode(payload)
            found.append(zlib.decompress(data) if data[:1] == b"x" else bz2.decompress(data))
    assert found
    return b"".join(found)


def test_an_unreadable_secret_stops_the_run_with_one_line_naming_the_reference(tmp_path, capfd):
    missing = tmp_path / "nowhere" / "key"
    config = job(tmp_path, None, f"file:{missing}")
    assert main(["generate", config, "--out", str(tmp_path / "out"), "--check"]) == 2
    assert one_line(capfd) == (f"groundcot: teacher.connection.api_key_secret: secret file:{missing}: cannot read the file "
                               "(FileNotFoundError)")
    config = job(tmp_path, None, "vault:kv/openai")
    assert main(["generate", config, "--out", str(tmp_path / "out"), "--check"]) == 2
    assert "teacher.connection.api_key_secret: secret reference 'vault:kv/openai': use env:NAME" in one_line(capfd)
    assert not (tmp_path / "out").exists()


def test_check_plans_the_key_and_the_job_wide_limits_per_worker_process(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("GC_SECRET_TEST_KEY", KEY)
    with FakeOpenAI(key=KEY) as fake:
        config = job(tmp_path, fake, "env:GC_SECRET_TEST_KEY", limits={"request_budget": 10, "max_concurrency": 4})
        assert main(["generate", config, "--out", str(tmp_path / "out"), "--check",
                     "--set", "runner.workers=3"]) == 0
    plan = capfd.readouterr().out
    assert "teacher key: env:GC_SECRET_TEST_KEY (read here)" in plan
    assert ("teacher limits: max_concurrency 4 in flight per teacher DoFn instance (one per worker thread running "
            "the teacher); request_budget 10 calls per worker process") in plan
    assert ("teacher limits job-wide: 3 worker processes (runner.workers): at most 30 calls; up to 12 in flight "
            "with one teacher thread per process, more with more") in plan
    assert KEY not in plan


def gcp_installed() -> bool:
    try:
        import google.cloud.secretmanager  # noqa: F401
        from apache_beam.io.gcp import gcsfilesystem  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not gcp_installed(), reason="apache-beam[gcp] is not installed (it is in the dev extra)")
def test_check_on_dataflow_leaves_a_gcp_secret_to_the_workers_and_sums_limits_over_them(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))  # no credentials here
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    config = tmp_path / "dataflow.yaml"
    config.write_text(
        "sources: [{kind: viscot, path: 'gs://groundcot-test/meta/*_cot_train.jsonl', "
        "image_root: 'gs://groundcot-test/images'}]\noutput: {dir: 'gs://groundcot-test/out'}\n"
        "depth: {enabled: false}\nteacher: {kind: openai, connection: {base_url: 'http://127.0.0.1:9/v1', model: m, "
        "api_key_env: null, api_key_secret: 'gcp:projects/demo/secrets/openai'}, "
        "limits: {request_budget: 1000, max_concurrency: 8}}\n"
        "runner: {name: DataflowRunner, options: {project: demo, region: europe-west4, "
        "temp_location: 'gs://groundcot-test/tmp', machine_type: g2-standard-4, max_num_workers: 16}}\n")
    assert main(["generate", str(config), "--check"]) == 0  # the endpoint is not asked without the key
    plan = capfd.readouterr().out
    assert ("teacher key: gcp:projects/demo/secrets/openai (read by each worker; not checked: no Google "
            "credentials here)") in plan
    assert ("teacher limits job-wide: 64 worker processes (max_num_workers 16 x 4 SDK processes per worker): "
            "at most 64000 calls; up to 512 in flight") in plan
    monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", None)  # as where the library is missing
    assert main(["generate", str(config), "--check"]) == 2
    assert "gcp: references need google-cloud-secret-manager" in one_line(capfd)
