"""Beam's PortableRunner, with ``sdk_worker_parallelism`` honoured by its embedded job server; and an
EXTERNAL worker pool bound to one address.

With ``job_endpoint: embed`` Beam runs the job in this process on its FnApiRunner, which reads its
worker count only in ``run_pipeline``; the job server calls ``run_via_runner_api`` and so always
starts ONE SDK harness (Beam 2.77 ``local_job_service.BeamJob._invoke_runner``). Here the embedded
job starts ``sdk_worker_parallelism`` harnesses (0: one per CPU) and splits each stage's input
between them. Other job endpoints (Flink's, Spark's) read the option themselves.

``python -m groundcot.pipeline.portable [--address 127.0.0.1:50000]`` runs a worker pool for
``environment_type: EXTERNAL``. Beam's own (``worker_pool_main``) listens on every interface and
starts its SDK harnesses as whatever ``python`` comes first on PATH; this one listens only on
``--address`` and starts them with the interpreter it runs on (the one groundcot is installed in).
It prints the address it listens on, then serves until stopped.
"""
from __future__ import annotations

import argparse
import atexit
import multiprocessing
import os
import signal
import sys

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


def serve_pool(address: str):
    """Start an EXTERNAL worker pool listening on ``address`` (HOST:PORT, port 0: any free one);
    returns (the address it listens on, the gRPC server). Its SDK harnesses are processes of this
    interpreter, stopped when this process exits."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer, kill_process_gracefully
    from apache_beam.utils import thread_pool_executor

    # the pool runs `python`: make it this interpreter, whatever PATH the caller had
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    host = address.rsplit(":", 1)[0]
    server = grpc.server(thread_pool_executor.shared_unbounded_instance())
    port = server.add_insecure_port(address)
    if not port:
        raise OSError(f"the worker pool cannot listen on {address}")
    pool = BeamFnExternalWorkerPoolServicer(use_process=True)
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    server.start()
    atexit.register(lambda: [kill_process_gracefully(p) for p in pool._worker_processes.values()])
    return f"{host}:{port}", server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m groundcot.pipeline.portable",
                                     description="An EXTERNAL worker pool for runner.name: PortableRunner.")
    parser.add_argument("--address", default="127.0.0.1:50000",
                        help="HOST:PORT to listen on (default 127.0.0.1:50000; port 0: any free one)")
    args = parser.parse_args(argv)
    try:
        listening, server = serve_pool(args.address)
    except (OSError, RuntimeError) as err:
        raise SystemExit(f"groundcot: {err}") from None
    print(listening, flush=True)  # what runner.options.environment_config names
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exit (and stop the harnesses) on kill too
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(0)


if __name__ == "__main__":
    main()
