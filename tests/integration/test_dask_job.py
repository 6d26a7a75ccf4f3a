"""The Dask job file (jobs/viscot_dask.yaml) and its Kubernetes image (jobs/Dockerfile.dask).

The job loads, names its scheduler by Beam's flag name, reads and writes only under the folder it
declares shared, and uses no tiny fallback; ``--check`` refuses a local output path with one line.
The Dockerfile builds on the worker image (which bakes in the models the job names) and installs
the dask extra against the same constraints (it cannot be built here).
"""
from __future__ import annotations

import pytest

from groundcot.pipeline.cli import main
from groundcot.pipeline.config import load_config, worker_paths

from support import REPO, one_line

pytest.importorskip("distributed")
JOB = str(REPO / "jobs" / "viscot_dask.yaml")


def test_dask_job_names_its_scheduler_and_reads_only_shared_paths():
    from groundcot.pipeline.dask_runner import DaskRunner
    from groundcot.pipeline.preflight import pipeline_options

    cfg = load_config(JOB)
    runner, options = pipeline_options(cfg)
    assert isinstance(runner, DaskRunner)
    assert options.get_all_options()["address"] == "tcp://dask-scheduler:8786"  # dask_client_address
    shared = [s.rstrip("/") + "/" for s in cfg.runner.shared_paths]
    paths = worker_paths(cfg, cfg.output.dir)
    assert {key for key, _ in paths} >= {"sources.0.path", "sources.0.image_root", "cache", "output.dir"}
    for key, path in paths:
        assert any(path.startswith(s) for s in shared), (key, path)
    dockerfile = (REPO / "jobs" / "Dockerfile").read_text()
    assert cfg.depth.fallback == cfg.masks.fallback == "none"
    assert cfg.depth.model in dockerfile and cfg.masks.model in dockerfile  # baked into the base image


def test_dask_job_check_refuses_a_local_output_before_reaching_the_scheduler(capfd):
    assert main(["generate", JOB, "--check", "--set", "output.dir=out/local"]) == 2
    assert one_line(capfd).startswith("groundcot: config error: output.dir: out/local is a local path, which "
                                      "dask's workers cannot read")


def test_dask_dockerfile_adds_the_dask_extra_to_the_worker_image():
    base, dask = (REPO / "jobs" / "Dockerfile").read_text(), (REPO / "jobs" / "Dockerfile.dask").read_text()
    assert "FROM ${BASE}" in dask and "/opt/groundcot/constraints-no-torch.txt" in base
    assert 'pip install -c /opt/groundcot/constraints-no-torch.txt "$(ls /opt/groundcot/wheels/groundcot-*.whl)[dask]"' \
        in dask
    assert "ENTRYPOINT []" in dask  # Beam's boot would swallow the operator's dask-worker args
    assert "exec dask worker" in dask and "exec dask scheduler" in dask
