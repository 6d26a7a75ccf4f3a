"""The Beam wrapper every per-record stage shares: counters, pass-through, backstop."""
from __future__ import annotations

import logging
import time
from typing import Callable

import apache_beam as beam
from apache_beam.metrics import Metrics

from groundcot.schemas.record import Record

log = logging.getLogger("groundcot")
NAMESPACE = "groundcot"


class Stage(beam.DoFn):
    """Apply ``fn(record) -> record`` to records not yet rejected.

    ``fn`` signals an expected rejection with ``record.reject(stage, reason)``. An
    unexpected exception becomes a rejection too (reason ``error_<ExceptionType>``), so
    one bad record never stops a run and is never lost.
    """

    def __init__(self, name: str, fn: Callable[[Record], Record], log_every_s: float = 0.0):
        self.name, self.fn, self.log_every_s = name, fn, log_every_s

    def setup(self):
        self.ok = Metrics.counter(NAMESPACE, f"{self.name}.ok")
        self.seen, self.last_log, self.started = 0, time.monotonic(), time.monotonic()

    def process(self, record: Record):
        if record.rejection is None:
            try:
                record = self.fn(record)
            except Exception as err:  # backstop: keep the record, name the failure
                log.exception("stage %s failed on record %s", self.name, record.id)
                record.reject(self.name, f"error_{type(err).__name__}", str(err)[:500])
            if record.rejection is None:
                self.ok.inc()
            else:
                Metrics.counter(NAMESPACE, f"{self.name}.rejected.{record.rejection.reason}").inc()
        self._progress()
        yield record

    def _progress(self):
        self.seen += 1
        now = time.monotonic()
        if self.log_every_s and now - self.last_log >= self.log_every_s:
            rate = self.seen / max(now - self.started, 1e-9)
            log.info("%s: %d records (%.0f/s in this worker)", self.name, self.seen, rate)
            self.last_log = now
