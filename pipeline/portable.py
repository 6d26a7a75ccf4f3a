"""Beam's PortableRunner, with ``sdk_worker_parallelism`` honoured by its embedded job server.

With ``job_endpoint: embed`` Beam runs the job in this process on its FnApiRunner, which reads its
worker count only in ``run_pipeline``; the job server calls ``run_via_runner_api`` and so always
starts ONE SDK harness (Beam 2.77 ``local_job_service.BeamJob._invoke_runner``). Here the embedded
job starts ``sdk_worker_parallelism`` harnesses (0: one per CPU) and splits each stage's input
between them. Other job endpoints (Flink's, Spark's) read the option themselves.
"""
from __future__ import annotations

import multiprocessing

from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions
from apache_beam.runners.portability import job_server, local_job_service, portable_runner
from apache_beam.runners.portability.fn_api_runner import fn_runner


class _Job(local_job_service.BeamJob):
    def _invoke_runner(self):
        self.set_state(local_job_service.beam_job_api_pb2.JobState.RUNNING)
        runner = fn_runner.FnApiRunner(provision_info=self._provision_info)
        runner._num_workers = harnesses(self.pipeline_options())  # read by run_stages
        return runner.run_via_runner_api(self._pipeline_proto, self.pipeline_options())


class _EmbeddedJobServer(job_server.EmbeddedJobServer):
    def start(self):
        return local_job_service.LocalJobServicer(beam_job_type=_Job)


def harnesses(options: PipelineOptions) -> int:
    """SDK harness processes per job: ``sdk_worker_parallelism``, 0 meaning one per CPU."""
    n = int(options.view_as(PortableOptions).sdk_worker_parallelism or 0)
    return n if n > 0 else multiprocessing.cpu_count()


class PortableRunner(portable_runner.PortableRunner):
    def create_job_service(self, options: PipelineOptions):
        if options.view_as(PortableOptions).job_endpoint == "embed":
            return self.create_job_service_handle(_EmbeddedJobServer().start(), options)
        return super().create_job_service(options)
