"""Runner options by Beam's flag names, paths made absolute on the driver, the Dask runner's place
among the runners, and the workers' versions read back from a finished job."""
import logging
import os

import pytest

from groundcot.pipeline.config import JobConfig, absolute_paths, on_cluster
from groundcot.pipeline.preflight import ConfigError, pipeline_options
from groundcot.pipeline.stats import here, worker_versions


def config(**runner) -> JobConfig:
    return JobConfig.model_validate({"sources": [{"kind": "viscot", "path": "/data/*.jsonl", "image_root": "/data/images"}], "runner": runner})


def test_runner_options_take_beams_flag_names_and_attribute_names():
    _, options = pipeline_options(config(name="dask", options={"dask_client_address": "tcp://127.0.0.1:8786",
                                                               "dask_npartitions": 4}))
    found = options.get_all_options()
    assert found["address"] == "tcp://127.0.0.1:8786" and found["npartitions"] == 4
    _, options = pipeline_options(config(name="PortableRunner", options={"job_endpoint": "embed",
                                                                         "sdk_worker_parallelism": 2}))
    assert options.get_all_options()["sdk_worker_parallelism"] == 2


def test_an_unknown_runner_option_is_one_error_naming_it():
    with pytest.raises(ConfigError, match="runner.options: Beam knows no option dask_adress"):
        pipeline_options(config(name="dask", options={"dask_adress": "tcp://127.0.0.1:8786"}))


def test_beams_own_dask_runner_is_refused_for_groundcots():
    with pytest.raises(ConfigError, match="use runner.name: dask"):
        pipeline_options(config(name="apache_beam.runners.dask.dask_runner.DaskRunner"))


def test_dask_with_a_scheduler_is_a_cluster_runner_and_without_one_is_local():
    assert on_cluster(config(name="dask", options={"dask_client_address": "tcp://10.0.0.5:8786"}).runner)
    assert on_cluster(config(name="dask", options={"dask_scheduler_file": "/shared/scheduler.json"}).runner)
    assert not on_cluster(config(name="dask").runner)


def test_output_cache_and_shared_paths_are_made_absolute_and_urls_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config(name="dask", shared_paths=["shared"])
    cfg.cache = "cache"
    out = absolute_paths(cfg, "runs/a")
    assert out == str(tmp_path / "runs" / "a") and os.path.isabs(cfg.output.dir)
    assert cfg.cache == str(tmp_path / "cache") and cfg.runner.shared_paths == [str(tmp_path / "shared")]
    cfg.cache = "gs://bucket/cache"
    assert absolute_paths(cfg, "s3://bucket/out") == "s3://bucket/out" and cfg.cache == "gs://bucket/cache"


class Finished:
    """A finished job's metrics as a runner reports them."""

    def __init__(self, lines):
        from apache_beam.metrics.execution import MetricKey, MetricResult
        from apache_beam.metrics.metricbase import MetricName

        key = MetricKey("NoteVersions", MetricName("groundcot", "worker_versions"))
        self.found = {"counters": [], "string_sets": [MetricResult(key, set(lines), set(lines))]}

    def metrics(self):
        return self

    def query(self):
        return self.found


def test_workers_versions_are_recorded_and_a_mismatch_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="groundcot"):
        assert worker_versions(Finished([here()])) == [here()]
        assert not caplog.records
        other = "groundcot=0.0.1 apache-beam=2.60.0 torch=2.4.0"
        assert worker_versions(Finished([here(), other])) == sorted([here(), other])
    assert [r.getMessage() for r in caplog.records] == [f"version mismatch: a worker runs {other}, the driver {here()}"]
