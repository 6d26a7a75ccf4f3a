"""The Beam step that runs any teacher: many records in flight per worker, none lost.

Each DoFn instance runs one asyncio event loop in a background thread. ``process``
prepares the request on the Beam thread (image work), submits the write to the loop, and
emits records as they finish; at most ``teacher.max_pending`` records wait at once. An
``inline`` teacher (the template: no I/O) writes on the Beam thread instead.
``finish_bundle`` waits for the rest, so a bundle never ends holding records, and in batch
mode writes the bundle's request lines as a shard. A write that raises rejects its record
with ``error_<Type>``; the run goes on.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import json
import logging
import threading
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from groundcot.transforms.stage import NAMESPACE
from groundcot.transforms.teach import STAGE, make_teacher

log = logging.getLogger("groundcot")


def run_inline(coro):
    """The result of a coroutine that finishes without waiting (an ``inline`` teacher's write)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("an inline teacher's write waited; set inline = False")


def write_shards(folder: str, lines: list[dict], per_shard: int) -> list[str]:
    """Batch request lines as OpenAI Batch JSONL files under ``folder`` (one uniquely named file per
    ``per_shard`` lines; the same files ``vllm run-batch`` reads)."""
    paths = []
    for start in range(0, len(lines), per_shard):
        path = f"{folder.rstrip('/')}/requests-{uuid.uuid4().hex[:12]}.jsonl"
        with FileSystems.create(path) as handle:
            for line in lines[start:start + per_shard]:
                handle.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        paths.append(path)
    return paths


class Teach(beam.DoFn):
    def __init__(self, teacher_cfg, validate_params: dict, run_id: str, batch_dir: str | None = None):
        self.cfg, self.validate_params, self.run_id = teacher_cfg, validate_params, run_id
        self.batch_dir = batch_dir  # batch mode: where the request shards go

    def setup(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="groundcot-teacher", daemon=True)
        self.thread.start()
        self.teacher = make_teacher(self.cfg, self.validate_params, self.run_id)
        self._call(self.teacher.open())

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def start_bundle(self):
        self.pending: dict[cf.Future, object] = {}  # future -> its record

    def process(self, record):
        if record.rejection is not None:
            yield record
            return
        try:
            request = self.teacher.prepare(record)
            if self.teacher.inline:  # nothing to wait for: no hop to the loop's thread
                yield self._count(run_inline(self.teacher.write(record, request)))
                return
        except Exception as err:  # noqa: BLE001 - e.g. an undecodable image: reject, go on
            yield self._count(self._error(record, err))
            return
        self.pending[asyncio.run_coroutine_threadsafe(self.teacher.write(record, request), self.loop)] = record
        if len(self.pending) >= self.teacher.max_pending:
            cf.wait(self.pending, return_when=cf.FIRST_COMPLETED)
        yield from self._finished()

    def _error(self, record, err: BaseException):
        detail = self.teacher.redact(f"{type(err).__name__}: {err}")[:400]
        log.error("teacher failed on record %s: %s", record.id, detail)
        return record.reject(STAGE, f"error_{type(err).__name__}", detail)

    def finish_bundle(self):
        cf.wait(self.pending)
        take = getattr(self.teacher, "take_batch", None)
        if take is not None and (lines := take()):  # before the records leave: a shard per bundle
            if self.batch_dir is None:
                raise RuntimeError("teacher.mode is batch but the job gave the teacher no batch folder")
            write_shards(self.batch_dir, lines, self.cfg.batch_shard_requests)
        for record in self._finished():
            yield GlobalWindows.windowed_value(record)

    def _finished(self):
        done = [f for f in self.pending if f.done()]
        for name, n in self.teacher.ledger.take().items():  # Beam metrics live on this thread
            Metrics.counter(NAMESPACE, f"{STAGE}.{name}").inc(n)
        for future in done:
            record = self.pending.pop(future)
            if (err := future.exception()) is not None:  # backstop: keep the record, name the failure
                self._error(record, err)
            yield self._count(record)

    def _count(self, record):
        counter = f"{STAGE}.ok" if record.rejection is None else f"{STAGE}.rejected.{record.rejection.reason}"
        Metrics.counter(NAMESPACE, counter).inc()
        return record

    def teardown(self):
        if getattr(self, "loop", None) is None:
            return
        self._call(self.teacher.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
