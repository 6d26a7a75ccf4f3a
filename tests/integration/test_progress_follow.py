"""Cluster runners' progress: the driver follows a job that runs on its own (Beam's PortableRunner with
its embedded job server) and logs a line every interval until the job ends."""
import logging
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState

from groundcot.pipeline import progress
from groundcot.pipeline.stats import beam_counters


def slow(i):
    time.sleep(0.05)
    return i


def test_follow_logs_until_the_job_ends(caplog):
    options = PipelineOptions(runner="PortableRunner", job_endpoint="embed", environment_type="LOOPBACK")
    p = beam.Pipeline(options=options)
    _ = p | beam.Create(range(20)) | beam.Map(slow)  # about 1 s: several 0.3 s intervals
    result = p.run()  # returns while the job runs
    with caplog.at_level(logging.INFO, logger="groundcot"):
        progress.follow(result, lambda: beam_counters(result), 20, 0.3)
    assert PipelineState.is_terminal(result.state)  # it returned only once the job had ended
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress: ")]
    assert lines  # this runner reports no counters while running: the line says so
    assert all(line.startswith(("progress: read ", "progress: running for ")) for line in lines)
    result.wait_until_finish()
