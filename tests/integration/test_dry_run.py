"""``groundcot generate CONFIG --dry-run FILE`` on the Dataflow job: the job Dataflow would get is built
(offline, nothing submitted, no output written), and FILE holds its graph, config and options with
secret-named options removed. Real CLI."""
import json
import shutil

import pytest

from groundcot.pipeline.cli import main

from support import REPO

JOBS = REPO / "jobs"


def test_dataflow_dry_run_writes_the_job_and_submits_nothing(tmp_path, capfd, monkeypatch):
    pytest.importorskip("google.cloud.dataflow_v1beta3", reason="apache-beam[gcp] builds Dataflow jobs")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))  # no credentials here
    monkeypatch.chdir(tmp_path)
    # the readers list their files while the graph is built: a local copy of the demo's, declared shared
    for f in (JOBS / "demo_data" / "metadata").glob("*.jsonl"):
        shutil.copy(f, tmp_path)
    args = ["generate", str(JOBS / "viscot_dataflow.yaml"), "--dry-run", "job.json",
            "--set", f"sources.0.path={tmp_path}/*_cot_train.jsonl", "--set", f"runner.shared_paths=['{tmp_path}']",
            "--set", "runner.options.s3_secret_access_key=not-a-real-secret-123"]
    assert main(args) == 0
    assert capfd.readouterr().out.strip() == f"the job, not submitted: {tmp_path / 'job.json'}"
    job = json.loads((tmp_path / "job.json").read_text())
    assert job["runner"] == "DataflowRunner" and job["graph"]["job"]["name"] == "groundcot-viscot"
    labels = {t["uniqueName"] for t in job["graph"]["pipeline"]["components"]["transforms"].values()}
    assert {"S0ViscotRead", "Depth", "Masks", "Teach", "Write", "WriteCounts"} <= labels
    envs = job["graph"]["pipeline"]["components"]["environments"].values()
    assert all(e["urn"] == "beam:env:docker:v1" for e in envs)  # as Dataflow runs it
    assert job["options"]["sdk_container_image"].endswith("/groundcot/worker:0.1.0")
    assert job["options"]["s3_secret_access_key"] == "<removed>"
    assert "not-a-real-secret-123" not in (tmp_path / "job.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["job.json", "demo_scenes_cot_train.jsonl",
                                                                 "demo_signs_cot_train.jsonl"])
