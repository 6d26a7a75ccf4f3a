"""Beam's PortableRunner, with ``sdk_worker_parallelism`` honoured by its embedded job server; and an
EXTERNAL worker pool bound to one address.

With ``job_endpoint: embed`` Beam runs the job in this process on its FnApiRunner, which reads its
worker count only in ``run_pipeline``; the job server calls ``run_via_runner_api`` and so always
starts ONE SDK harness (Beam 2.77 ``local_job_service.BeamJob._invoke_runner``). Here the embedded
job starts ``sdk_worker_parallelism`` harnesses (0: one per CPU) and splits each stage's input
between them. Other job endpoints (Flink's, Spark's) read the option themselves.

``python -m groundcot.pipeline.portable [--address 127.0.0.1:50000]`` runs a worker pool for
``environment_type: EXTERNAL``. Beam's own (``worker_pool_main``) listens on every interface and
starts its SDK harnesses as whatever ``python`` comes first on PATH, each importing Beam anew; this
one listens only on ``--address`` and forks them from a server of the interpreter it runs on (the
one groundcot is installed in) that imported Beam, groundcot's steps and any ``--preload`` module
once, at the pool's start (``--preload torch``: the harnesses of a model job start without importing
torch again). That server keeps the code it imported: restart the pool after an upgrade.
It prints the address it listens on, then serves until stopped.
"""
from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import traceback

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


PRELOAD = ["apache_beam.runners.worker.sdk_worker", "groundcot.pipeline.graph"]


def _harness(url: str, worker_id: str, state_cache_size: int, data_buffer_time_limit_ms: int) -> None:
    from apache_beam.runners.worker.sdk_worker import SdkHarness

    os.dup2(2, 1)  # the pool's stdout carries its address only: a harness's prints go to its stderr
    SdkHarness(url, worker_id=worker_id, state_cache_size=state_cache_size,
               data_buffer_time_limit_ms=data_buffer_time_limit_ms).run()


def _exit_missing(names: list[str]) -> None:
    sys.exit(1 if any(name not in sys.modules for name in names) else 0)


def _check_preload(context, preload: list[str]) -> None:
    """Start the forkserver now (its imports paid before the first job asks for a harness) and check
    it holds ``preload``: it skips a module it cannot import, and dies on any other error."""
    probe = context.Process(target=_exit_missing, args=(preload,))
    probe.start()
    probe.join()
    if probe.exitcode:
        for name in preload:
            try:
                importlib.import_module(name)
            except Exception as err:  # noqa: BLE001 - the module's own error, named
                raise RuntimeError(f"--preload {name}: {type(err).__name__}: {err}".replace("\n", " ")) from None
        raise RuntimeError(f"the harnesses' forkserver failed to start (exit code {probe.exitcode})")


class _Forked:
    """A forked harness as Beam's pool stops its processes (``terminate``, ``wait``, ``kill``)."""

    def __init__(self, process):
        self.process = process

    def terminate(self):
        if self.process.exitcode is None:  # the forkserver reaps it: a finished one's pid may be reused
            self.process.terminate()

    def kill(self):
        if self.process.exitcode is None:
            self.process.kill()

    def wait(self, timeout=None):
        self.process.join(timeout)
        if self.process.is_alive():
            raise subprocess.TimeoutExpired("sdk harness", timeout)


def forking_pool(preload: list[str]):
    """Beam's worker pool whose SDK harnesses are forked from a server that imported ``preload`` once."""
    from apache_beam.portability.api import beam_fn_api_pb2
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD + preload)
    _check_preload(context, PRELOAD + preload)

    class Pool(BeamFnExternalWorkerPoolServicer):
        def StartWorker(self, request, unused_context):
            try:
                logging.getLogger(__name__).warning("Starting worker %s", request.worker_id)
                process = context.Process(target=_harness, name=f"sdk-harness-{request.worker_id}", args=(
                    request.control_endpoint.url, request.worker_id, self._state_cache_size,
                    self._data_buffer_time_limit_ms))
                process.start()
                self._worker_processes[request.worker_id] = _Forked(process)
                return beam_fn_api_pb2.StartWorkerResponse()
            except Exception:  # noqa: BLE001 - Beam's pool answers with the traceback too
                return beam_fn_api_pb2.StartWorkerResponse(error=traceback.format_exc())

    return Pool(use_process=True)


def serve_pool(address: str, preload: list[str] = ()):
    """Start an EXTERNAL worker pool listening on ``address`` (HOST:PORT, port 0: any free one);
    returns (the address it listens on, the gRPC server). Its SDK harnesses are processes of this
    interpreter, forked from a server that imported Beam, groundcot and ``preload``; stopped when
    this process exits."""
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker.worker_pool_main import kill_process_gracefully
    from apache_beam.utils import thread_pool_executor

    host = address.rsplit(":", 1)[0]
    server = grpc.server(thread_pool_executor.shared_unbounded_instance())
    port = server.add_insecure_port(address)
    if not port:
        raise OSError(f"the worker pool cannot listen on {address}")
    pool = forking_pool(list(preload))
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(pool, server)
    server.start()
    atexit.register(lambda: [kill_process_gracefully(p) for p in pool._worker_processes.values()])
    return f"{host}:{port}", server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m groundcot.pipeline.portable",
                                     description="An EXTERNAL worker pool for runner.name: PortableRunner.")
    parser.add_argument("--address", default="127.0.0.1:50000",
                        help="HOST:PORT to listen on (default 127.0.0.1:50000; port 0: any free one)")
    parser.add_argument("--preload", action="append", default=[], metavar="MODULE",
                        help="a module the SDK harnesses import before they start, once for all "
                             "(repeatable; e.g. torch for a job with model stages)")
    args = parser.parse_args(argv)
    try:
        listening, server = serve_pool(args.address, args.preload)
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
