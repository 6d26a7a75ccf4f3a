"""The cluster job files (jobs/*_dataflow.yaml, *_flink.yaml, *_spark.yaml) and the worker image.

Every cluster job loads, names only options Beam knows, and reads and writes only bucket URLs or
folders it declares shared. The Dataflow job is built in dry-run mode (no network; apache-beam[gcp]
is in the dev extra), and its GPU and container settings are checked in the job Dataflow would
receive. ``groundcot generate --check`` passes on each job with bucket paths and no Google
credentials (bucket listings left to the job, said in the plan) and fails with one line on a local
path. The Dockerfile is checked against constraints.txt (it cannot be built here).
"""
from __future__ import annotations

import re
import shutil

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from groundcot.pipeline.cli import main
from groundcot.pipeline.config import load_config

from support import REPO, one_line

JOBS = REPO / "jobs"
CLUSTER_JOBS = sorted(p for suffix in ("dataflow", "flink", "spark") for p in JOBS.glob(f"*_{suffix}.yaml"))
DOCKERFILE = (JOBS / "Dockerfile").read_text()


def pinned(name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==(\S+)$", (REPO / "constraints.txt").read_text(), re.MULTILINE | re.IGNORECASE)
    assert match, f"{name} is not pinned in constraints.txt"
    return match.group(1)


def worker_paths(cfg) -> dict[str, str]:
    """Every place the workers read or write, by config key."""
    found = {}
    for i, src in enumerate(cfg.sources):
        for key in ("path", "image_root", "scene_graphs", "split_file"):
            value = getattr(src, key, None)
            for j, path in enumerate([value] if isinstance(value, str) else value or []):
                found[f"sources.{i}.{key}.{j}"] = path
    found.update({"cache": cfg.cache, "teacher.cache": getattr(cfg.teacher, "cache", None), "output.dir": cfg.output.dir})
    return {key: path for key, path in found.items() if path}


def test_there_is_a_job_per_cluster_runner():
    assert {load_config(str(p)).runner.name for p in CLUSTER_JOBS} == {"DataflowRunner", "FlinkRunner", "SparkRunner"}


@pytest.mark.parametrize("job", CLUSTER_JOBS, ids=lambda p: p.name)
def test_cluster_job_loads_with_known_options_and_shared_paths_only(job):
    cfg = load_config(str(job))
    options = dict(cfg.runner.options)
    known = PipelineOptions(flags=[], **options).get_all_options(retain_unknown_options=False)
    assert sorted(set(options) - set(known)) == []
    shared = [s.rstrip("/") + "/" for s in cfg.runner.shared_paths]
    for key, path in worker_paths(cfg).items():
        assert path.startswith(("gs://", "s3://")) or any(path.startswith(s) for s in shared), (key, path)
    assert cfg.depth.fallback == "none" and cfg.masks.fallback == "none"
    for stage in ("depth", "masks"):  # the worker image bakes in the models the jobs name
        if getattr(cfg, stage).enabled:
            assert getattr(cfg, stage).model in DOCKERFILE


@pytest.mark.parametrize("job", [p for p in CLUSTER_JOBS if not p.name.endswith("_dataflow.yaml")],
                         ids=lambda p: p.name)
def test_portable_jobs_submit_to_a_job_server_with_an_external_worker_pool(job):
    from groundcot.pipeline.preflight import pipeline_options

    runner, options = pipeline_options(load_config(str(job)))
    portable = options.get_all_options()
    assert type(runner).__name__ == load_config(str(job)).runner.name
    assert portable["job_endpoint"] and portable["environment_type"] == "EXTERNAL"
    assert any(o.startswith("external_service_address=") for o in portable["environment_options"])


def test_dockerfile_builds_on_the_pinned_beam_sdk_and_installs_the_wheel_with_the_constraints():
    base = re.search(r"^FROM\s+apache/beam_python(\d+)\.(\d+)_sdk:(\S+)", DOCKERFILE, re.MULTILINE)
    assert base, "the image must start FROM apache/beam_pythonX.Y_sdk:VERSION"
    assert base.group(3) == pinned("apache-beam")
    assert f"ARG TORCH_VERSION={pinned('torch')}\n" in DOCKERFILE  # the CUDA build of the tested torch
    assert 'download.pytorch.org/whl/${TORCH_CUDA} "torch==${TORCH_VERSION}"' in DOCKERFILE
    install = re.search(r"pip install[^\n]*(?:\\\n[^\n]*)*groundcot-\*\.whl[^\n]*(?:\\\n[^\n]*)*", DOCKERFILE)
    assert install and "-c " in install.group(0), "the wheel is installed with -c <constraints.txt minus torch>"
    assert "pip wheel --no-deps" in DOCKERFILE
    assert "HF_HOME" in DOCKERFILE and "HF_HUB_OFFLINE=1" in DOCKERFILE


def gcp_installed() -> bool:
    try:
        import google.cloud.dataflow_v1beta3  # noqa: F401 - apache-beam[gcp]'s Dataflow client
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not gcp_installed(), reason="apache-beam[gcp] is not installed (pip install 'groundcot[gcp]'): "
                    "DataflowRunner cannot build a job without it")
def test_dataflow_job_dry_run_asks_for_l4_gpus_and_the_worker_container(tmp_path):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import TestOptions
    from apache_beam.runners.dataflow.internal import apiclient

    from groundcot.pipeline.graph import build
    from groundcot.pipeline.preflight import pipeline_options
    from groundcot.transforms.models import ResolvedModel

    # The readers list their files while the graph is built, which needs GCS; the records
    # themselves do not matter to a dry run, so the source is a local copy of the demo's.
    for f in (JOBS / "demo_data" / "metadata").glob("*.jsonl"):
        shutil.copy(f, tmp_path)
    cfg = load_config(str(JOBS / "viscot_dataflow.yaml"), [f"sources.0.path={tmp_path}/*_cot_train.jsonl"])
    runner, options = pipeline_options(cfg)
    options.view_as(TestOptions).dry_run = True
    models = {stage: ResolvedModel(requested=getattr(cfg, stage).model, load_from=getattr(cfg, stage).model)
              for stage in ("depth", "masks")}
    p = beam.Pipeline(runner=runner, options=options)
    build(p, cfg, f"{cfg.output.dir}/.groundcot-staging/dry", models, run_id="dry")
    job = p.run().job  # dry run: the job Dataflow would get, not submitted
    # The worker pool as Beam describes it on submission (minus staging files).
    env = apiclient.Environment(packages=[], options=job.options, environment_version="8",
                                proto_pipeline_staged_url="gs://your-bucket/groundcot/staging/pipeline.pb",
                                proto_pipeline=job.proto_pipeline).proto
    assert list(env.service_options) == ["worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
    pool = env.worker_pools[0]
    image = cfg.runner.options["sdk_container_image"]
    assert pool.machine_type == "g2-standard-4"
    assert [c.container_image for c in pool.sdk_harness_container_images] == [image]
    assert pool.worker_harness_container_image == image
    assert pool.ip_configuration == pool.ip_configuration.WORKER_IP_PRIVATE
    assert pool.autoscaling_settings.max_num_workers == cfg.runner.options["max_num_workers"]
    assert "use_runner_v2" in env.experiments
    docker = [e for e in job.proto_pipeline.components.environments.values() if e.urn == "beam:env:docker:v1"]
    assert docker and job.proto.name == "groundcot-viscot"


def on_buckets(job, tmp_path):
    """The job file with its shared folder swapped for a bucket (Flink's job uses /mnt/groundcot)."""
    text = job.read_text().replace("/mnt/groundcot", "gs://your-bucket/groundcot")
    copy = tmp_path / job.name
    copy.write_text("\n".join(line for line in text.splitlines() if "shared_paths" not in line) + "\n")
    return copy


@pytest.mark.skipif(not gcp_installed(), reason="apache-beam[gcp] is not installed (it is in the dev extra)")
@pytest.mark.parametrize("job", CLUSTER_JOBS, ids=lambda p: p.name)
def test_check_passes_on_bucket_paths_without_credentials_and_fails_on_a_local_path(job, tmp_path, capfd,
                                                                                    monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))  # no credentials here
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    config = on_buckets(job, tmp_path)
    assert main(["generate", str(config), "--check"]) == 0
    plan = capfd.readouterr().out
    cfg = load_config(str(config))
    assert f"runner: {cfg.runner.name}, " in plan
    assert (f"not listed from here (no Google credentials here): sources.0.path {cfg.sources[0].path}; "
            "the job reaches it with the credentials it runs with") in plan
    assert f"not listed from here (no Google credentials here): output {cfg.output.dir}; " in plan
    assert main(["generate", str(config), "--check", "--set", "output.dir=out/local"]) == 2
    line = one_line(capfd)
    assert line.startswith("groundcot: config error: output.dir: out/local is a local path, which "
                           f"{cfg.runner.name}'s workers cannot read"), line
    assert not (tmp_path / "out").exists()
