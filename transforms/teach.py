"""Beam wrapper for API teachers: many requests in flight per worker, none lost.

Each DoFn instance runs one asyncio event loop in a background thread. ``process``
builds the request on the Beam thread (image work), submits it to the loop, and emits
records as their replies finish. At most ``2 x max_concurrency`` records wait at once.
``finish_bundle`` waits for the rest, so a bundle never ends with records held in memory.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from groundcot.transforms.openai_teacher import STAGE, OpenAITeacher

NAMESPACE = "groundcot"


class TeachAsync(beam.DoFn):
    def __init__(self, teacher_cfg, validate_params: dict, run_id: str):
        self.cfg, self.validate_params, self.run_id = teacher_cfg, validate_params, run_id

    def setup(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="groundcot-teacher", daemon=True)
        self.thread.start()
        self.teacher = OpenAITeacher(self.cfg, self.validate_params, self.run_id)
        self._call(self.teacher.open())
        self.max_pending = 2 * self.cfg.max_concurrency

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def start_bundle(self):
        self.pending: set[cf.Future] = set()

    def process(self, record):
        if record.rejection is not None:
            yield record
            return
        try:
            messages = self.teacher.prepare(record)
        except Exception as err:  # noqa: BLE001 - e.g. an undecodable image: reject, go on
            yield record.reject(STAGE, f"error_{type(err).__name__}", self.teacher.redact(str(err))[:400])
            return
        self.pending.add(asyncio.run_coroutine_threadsafe(self.teacher.run(record, messages), self.loop))
        if len(self.pending) >= self.max_pending:
            cf.wait(self.pending, return_when=cf.FIRST_COMPLETED)
        yield from self._finished()

    def finish_bundle(self):
        cf.wait(self.pending)
        for record in self._finished():
            yield GlobalWindows.windowed_value(record)

    def _finished(self):
        done = {f for f in self.pending if f.done()}
        self.pending -= done
        for name, n in self.teacher.ledger.take().items():  # Beam metrics live on this thread
            Metrics.counter(NAMESPACE, f"ledger.{name}").inc(n)
        for future in done:
            record = future.result()
            counter = "teacher.ok" if record.rejection is None else f"teacher.rejected.{record.rejection.reason}"
            Metrics.counter(NAMESPACE, counter).inc()
            yield record

    def teardown(self):
        if getattr(self, "loop", None) is None:
            return
        self._call(self.teacher.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
