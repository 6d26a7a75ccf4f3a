"""The Beam wrapper every per-record stage shares: counters, pass-through, backstop."""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable

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

    ``first``: the first stage after the readers, which also counts the records a reader rejected
    (``read.rejected.<reason>``): they were read, and no earlier stage counts them.
    """

    def __init__(self, name: str, fn: Callable[[Record], Record], log_every_s: float = 0.0,
                 progress_dir: str | None = None, first: bool = False):
        self.name, self.fn, self.log_every_s, self.progress_dir = name, fn, log_every_s, progress_dir
        self.first = first

    def setup(self):
        self.tally = Tally(self.progress_dir, self.name) if self.progress_dir else None
        self.metrics: dict = {}  # key -> its Beam counter
        self.seen, self.last_log, self.started = 0, time.monotonic(), time.monotonic()

    def process(self, record: Record):
        if record.rejection is not None:
            if self.tally:  # the last stage sees every rejection made upstream
                self.tally.add(f"{self.name}.arrived_rejected")
            if self.first:
                self._count(f"{record.rejection.stage}.rejected.{record.rejection.reason}")
        if record.rejection is None:
            try:
                record = self.fn(record)
            except Exception as err:  # backstop: keep the record, name the failure
                log.exception("stage %s failed on record %s", self.name, record.id)
                record.reject(self.name, f"error_{type(err).__name__}", str(err)[:500])
            if record.rejection is None:
                self._count(f"{self.name}.ok")
            else:
                self._count(f"{self.name}.rejected.{record.rejection.reason}")
        self._progress()
        yield record

    def _count(self, key: str) -> None:
        """A Beam counter (stats.json, cluster progress) and this worker's tally (the local live line)."""
        if key not in self.metrics:
            self.metrics[key] = Metrics.counter(NAMESPACE, key)
        self.metrics[key].inc()
        if self.tally:
            self.tally.add(key)

    def finish_bundle(self):
        if self.tally:
            self.tally.flush()

    def _progress(self):
        self.seen += 1
        now = time.monotonic()
        if self.log_every_s and now - self.last_log >= self.log_every_s:
            rate = self.seen / max(now - self.started, 1e-9)
            log.info("%s: %d records (%.0f/s in this worker)", self.name, self.seen, rate)
            self.last_log = now


class Tally:
    """A stage's counts in this worker process, for the local runner's live line
    (``pipeline/progress.py``): ``DIR/<stage>-<pid>-<n>.json``, rewritten at most every ``every_s``."""

    def __init__(self, folder: str, stage: str, every_s: float = 0.5):
        self.path = os.path.join(folder, f"{stage}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json")
        self.counts: Counter = Counter()
        self.every_s, self.last = every_s, 0.0

    def add(self, key: str) -> None:
        self.counts[key] += 1
        if time.monotonic() - self.last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if not os.path.isdir(os.path.dirname(self.path)):  # the driver removed the folder: the run is over
            return
        try:
            with open(self.path + ".tmp", "w", encoding="utf-8") as handle:
                json.dump(self.counts, handle)
            os.replace(self.path + ".tmp", self.path)  # the driver never reads half a file
        except OSError:  # the driver removed the folder: the run is over
            pass
