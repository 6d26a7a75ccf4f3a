"""The Beam step that runs any teacher: many records in flight per worker, none lost.

Each DoFn instance runs one asyncio event loop in a background thread. ``process``
prepares the request on the Beam thread (image work), submits the write to the loop, and
emits records as they finish; at most ``teacher.max_pending`` records wait at once. An
``inline`` teacher (the template: no I/O) writes on the Beam thread instead.
``finish_bundle`` waits for the rest, so a bundle never ends holding records, and in batch
mode writes the bundle's request lines as a shard. A write that raises rejects its record
with ``error_<Type>``; the run goes on. The teacher's ledger becomes ``teacher.<name>`` counters;
the job's prompt overrides travel in the DoFn and are installed in ``setup``.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import threading

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from groundcot import prompts
from groundcot.transforms.stage import NAMESPACE
from groundcot.transforms.teach import STAGE, make_teacher
from groundcot.transforms.teach.batch import write_shards

log = logging.getLogger("groundcot")


def run_inline(coro):
    """The result of a coroutine that finishes without waiting (an ``inline`` teacher's write)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("an inline teacher's write waited; set inline = False")


class Teach(beam.DoFn):
    stage = STAGE  # the counters' prefix and the stage its rejections name (the critic runs here too)

    def __init__(self, teacher_cfg, validate_params: dict, run_id: str, batch_dir: str | None = None,
                 prompt_texts: dict[str, str] | None = None):
        self.cfg, self.validate_params, self.run_id = teacher_cfg, validate_params, run_id
        self.batch_dir = batch_dir  # batch mode: where the request shards go
        self.prompt_texts = dict(prompt_texts or {})  # the job's replaced prompts

    def setup(self):
        prompts.install(self.prompt_texts)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="groundcot-teacher", daemon=True)
        self.thread.start()
        self.teacher = self.make()
        self._call(self.teacher.open())

    def make(self):
        """The object doing the writing (``prepare``, ``write``, ``ledger``, ...): the configured teacher."""
        return make_teacher(self.cfg, self.validate_params, self.run_id)

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
        log.error("%s failed on record %s: %s", self.stage, record.id, detail)
        return record.reject(self.stage, f"error_{type(err).__name__}", detail)

    def finish_bundle(self):
        cf.wait(self.pending)
        if lines := self.teacher.take_batch():  # before the records leave: a shard per bundle
            if self.batch_dir is None:
                raise RuntimeError("teacher.batch.enabled but the job gave the teacher no batch folder")
            write_shards(self.batch_dir, lines, self.cfg.batch.shard_requests)
        for record in self._finished():
            yield GlobalWindows.windowed_value(record)

    def _finished(self):
        done = [f for f in self.pending if f.done()]
        for name, n in self.teacher.ledger.take().items():  # Beam metrics live on this thread
            Metrics.counter(NAMESPACE, f"{self.stage}.{name}").inc(n)
        for future in done:
            record = self.pending.pop(future)
            if (err := future.exception()) is not None:  # backstop: keep the record, name the failure
                self._error(record, err)
            yield self._count(record)

    def _count(self, record):
        counter = (f"{self.stage}.ok" if record.rejection is None
                   else f"{self.stage}.rejected.{record.rejection.reason}")
        Metrics.counter(NAMESPACE, counter).inc()
        return record

    def teardown(self):
        if getattr(self, "loop", None) is None:
            return
        self._call(self.teacher.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
