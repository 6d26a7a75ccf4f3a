"""The Beam step that runs any teacher: many records in flight per worker, none lost.

Each DoFn instance runs one asyncio event loop in a background thread. ``process`` hands
each record to the loop (one ``call_soon_threadsafe`` wakes it for all records handed over
until it runs), where one task prepares its request (image work) and writes it; each finished
task puts its record on a queue, so the Beam thread never scans what is in flight. At most
``teacher.max_pending`` records wait at once; when full, the Beam thread sleeps until an eighth
of them are done (not one: each wake-up of a thread is a hand-over of the GIL). Counters reach
Beam every ``FLUSH_S`` and at the bundle's end, not per record. An ``inline`` teacher (the
template: no I/O) prepares and writes on the Beam thread instead.
``finish_bundle`` waits for the rest, so a bundle never ends holding records, and in batch
mode writes the bundle's request lines as a shard. A write that raises rejects its record
with ``error_<Type>``; the run goes on. The teacher's ledger becomes ``teacher.<name>`` counters;
the job's prompt overrides travel in the DoFn and are installed in ``setup``.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import queue
import threading
import time
from collections import Counter, deque

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from groundcot import prompts
from groundcot.transforms import critic
from groundcot.transforms.stage import NAMESPACE
from groundcot.transforms.teach import STAGE, make_teacher
from groundcot.transforms.teach.batch import write_shards

log = logging.getLogger("groundcot")
FLUSH_S = 0.5  # how often counts reach Beam while a bundle runs (progress reads them)


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
        self._counters: dict = {}
        self.tally: Counter = Counter()  # counts not yet handed to Beam (see _flush)
        self.flushed = 0.0  # when they last were
        self.tasks: set = set()  # the writes running on the loop
        self.incoming: deque = deque()  # (record, request) handed to the loop, not yet started
        self.waking = False  # whether the loop has a _start to run
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="groundcot-teacher", daemon=True)
        self.thread.start()
        self.teacher = self.make()
        self._call(self.teacher.open())
        # what exists now (modules, Beam, the client) lives as long as the worker: keep it out of
        # the collector's full passes, which hundreds of calls in flight trigger often
        gc.collect()
        gc.freeze()

    def make(self):
        """The object doing the writing (``prepare``, ``write``, ``ledger``, ...): the configured teacher."""
        return make_teacher(self.cfg, self.validate_params, self.run_id)

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def start_bundle(self):
        self.in_flight = 0  # records handed to the loop and not yet emitted
        self.done: queue.SimpleQueue = queue.SimpleQueue()  # (record, exception or None), as writes finish
        self.ready: list = []  # finished, not yet emitted

    def process(self, record):
        if record.rejection is not None:
            yield record
            return
        if self.teacher.inline:  # nothing to wait for: no hop to the loop's thread
            try:
                yield self._count(run_inline(self.teacher.write(record, self.teacher.prepare(record))))
            except Exception as err:  # noqa: BLE001 - e.g. an undecodable image: reject, go on
                yield self._count(self._error(record, err))
            return
        self.in_flight += 1
        self.incoming.append(record)
        if not self.waking:  # one wake-up of the loop (a syscall) for all records handed over until it runs
            self.waking = True
            self.loop.call_soon_threadsafe(self._start)
        most = self.teacher.max_pending
        if self.in_flight - len(self.ready) >= most:  # full: wait until a few (not one) are done, so
            self._wait(most - max(1, most // 8))        # each thread wakes once per batch, not per record
        yield from self._finished()

    def _start(self):
        """On the loop: the records handed over, each write a task that reports to ``done`` when it ends."""
        self.waking = False  # before taking: a record added after this point brings another _start
        while self.incoming:
            record = self.incoming.popleft()
            task = self.loop.create_task(self._write(record))
            self.tasks.add(task)  # the loop keeps only weak references
            task.add_done_callback(lambda t, record=record: self._ended(record, t))

    async def _write(self, record):
        """On the loop: the record's request, then its write. The request's CPU work is done here, as
        a bare client does it: done on Beam's thread, the two threads handed the GIL back and forth
        around every image operation and syscall, which cost more CPU than the overlap saved."""
        return await self.teacher.write(record, self.teacher.prepare(record))

    def _ended(self, record, task):
        self.tasks.discard(task)
        self.done.put((record, asyncio.CancelledError() if task.cancelled() else task.exception()))

    def _wait(self, most: int):
        """Block until at most ``most`` records are still in flight."""
        while self.in_flight - len(self.ready) > most:
            self.ready.append(self.done.get())

    def _error(self, record, err: BaseException):
        detail = self.teacher.redact(f"{type(err).__name__}: {err}")[:400]
        log.error("%s failed on record %s: %s", self.stage, record.id, detail)
        return record.reject(self.stage, f"error_{type(err).__name__}", detail)

    def finish_bundle(self):
        self._wait(0)
        if lines := self.teacher.take_batch():  # before the records leave: a shard per bundle
            if self.batch_dir is None:
                raise RuntimeError("teacher.batch.enabled but the job gave the teacher no batch folder")
            write_shards(self.batch_dir, lines, self.cfg.batch.shard_requests)
        for record in self._finished():
            yield GlobalWindows.windowed_value(record)
        self._flush()

    def _flush(self):
        """The counts so far (the ledger's and ours) into Beam's counters, which live on this thread."""
        self.tally.update({f"{self.stage}.{name}": n for name, n in self.teacher.ledger.take().items()})
        for name, n in self.tally.items():
            self._counter(name).inc(n)
        self.tally.clear()
        self.flushed = time.monotonic()

    def _finished(self):
        if time.monotonic() - self.flushed > FLUSH_S:  # and in finish_bundle: counting per record costs CPU
            self._flush()
        while True:
            try:
                self.ready.append(self.done.get_nowait())
            except queue.Empty:
                break
        ready, self.ready = self.ready, []
        for record, err in ready:
            self.in_flight -= 1
            if err is not None:  # backstop: keep the record, name the failure
                self._error(record, err)
            yield self._count(record)

    def _counter(self, name: str):
        """Beam's counter ``name`` (made once: making one costs more than counting)."""
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Metrics.counter(NAMESPACE, name)
        return counter

    def _count(self, record):
        reason = record.rejection
        self.tally[f"{self.stage}.ok" if reason is None else f"{self.stage}.rejected.{reason.reason}"] += 1
        return record

    def teardown(self):
        if getattr(self, "loop", None) is None:
            return
        self._call(self.teacher.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class Critique(Teach):
    """The teacher's Beam step, grading (``critic.Critic``): counters ``critic.<x>``, rejections named ``critic``."""

    stage = critic.STAGE

    def __init__(self, cfg, min_score: float | None, run_id: str, batch_dir: str, prompt_texts: dict[str, str]):
        super().__init__(cfg, {}, run_id, batch_dir, prompt_texts)
        self.min_score = min_score

    def make(self) -> critic.Critic:
        return critic.Critic(self.cfg, self.min_score, self.run_id)
