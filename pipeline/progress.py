"""Progress of a running job: records read, rows written, rejected, rate, and ETA when the input size is known.

Local runner: each stage, in whichever worker process runs it, keeps its counts in a small JSON file
in a folder the driver made (``transforms.stage.Tally``); a driver thread sums them into one live
line, rewritten in place on a terminal, else logged every ``runner.log_every_s``. Cluster runners:
the same figures from Beam's counters, logged every ``runner.log_every_s`` while the job runs.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Self

log = logging.getLogger("groundcot")
READ, LAST = "image", "depth_image"  # the first per-record stage, and the last before the sink


def duration(seconds: float) -> str:
    """A short human duration.

    >>> duration(3725), duration(75), duration(9)
    ('1h02m', '1m15s', '9s')
    """
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def figures(counters: dict[str, int], total: int | None, elapsed: float) -> str:
    """One line from the stages' counters (``<stage>.ok``, ``<stage>.rejected.<reason>``).

    >>> figures({"image.ok": 40, "image.rejected.missing_image": 10, "depth_image.ok": 120}, 100, 10.0)
    'read 50/100 records, written 120 rows, rejected 10, 5.0 records/s, ETA 10s'
    """
    read = sum(n for k, n in counters.items() if k == f"{READ}.ok" or k.startswith(f"{READ}.rejected."))
    rejected = sum(n for k, n in counters.items() if ".rejected." in k)  # Beam's counters: every stage's
    if f"{LAST}.arrived_rejected" in counters:  # the local tallies: what the last stage saw (teacher's too)
        rejected = counters[f"{LAST}.arrived_rejected"] + sum(
            n for k, n in counters.items() if k.startswith(f"{LAST}.rejected."))
    rate = read / elapsed if elapsed > 0 else 0.0
    parts = [f"read {read}" + (f"/{total}" if total else "") + " records",
             f"written {counters.get(f'{LAST}.ok', 0)} rows", f"rejected {rejected}", f"{rate:.1f} records/s"]
    if total and rate > 0 and read < total:
        parts.append(f"ETA {duration((total - read) / rate)}")
    return ", ".join(parts)


class Live:
    """The local runner's live line, for the ``with`` block that runs the job.

    ``folder`` is where the stages write their counts (give it to the graph). On a terminal the
    line is redrawn every second; elsewhere it is logged every ``every_s`` (0: only at the end).
    """

    def __init__(self, total: int | None, every_s: float, stream=None):
        self.total, self.every_s = total, every_s
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.folder = tempfile.mkdtemp(prefix="groundcot-progress-")
        self.stop = threading.Event()
        self.started = time.monotonic()

    def counters(self) -> Counter:
        found: Counter = Counter()
        for path in glob.glob(os.path.join(self.folder, "*.json")):
            try:
                with open(path, encoding="utf-8") as handle:
                    found.update(json.load(handle))
            except (OSError, ValueError):  # being replaced right now: the next look reads it
                continue
        return found

    def line(self) -> str:
        return figures(self.counters(), self.total, time.monotonic() - self.started)

    def _show(self, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line() + ("\n" if final else ""))
            self.stream.flush()
        elif final or self.every_s:
            log.info("progress: %s", self.line())

    def _loop(self) -> None:
        interval = 1.0 if self.tty else self.every_s
        while interval and not self.stop.wait(interval):
            self._show()

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._loop, name="groundcot-progress", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self._show(final=True)
        for _ in range(20):  # a worker process may still be rewriting its file
            shutil.rmtree(self.folder, ignore_errors=True)
            if not os.path.exists(self.folder):
                break
            time.sleep(0.1)


def follow(result, counters: Callable[[], dict[str, int]], total: int | None, every_s: float) -> None:
    """Log the figures from Beam's counters every ``every_s`` until a cluster job ends."""
    from apache_beam.runners.runner import PipelineState

    started = time.monotonic()
    while every_s:
        time.sleep(every_s)
        try:
            if PipelineState.is_terminal(result.state):
                return
        except Exception:  # noqa: BLE001 - a runner that cannot tell its state: wait_until_finish will
            return
        found, elapsed = counters(), time.monotonic() - started
        if found:
            log.info("progress: %s", figures(found, total, elapsed))
        else:  # some runners (Beam's embedded job server) report counters only at the end, if at all
            log.info("progress: running for %s, no counters reported yet", duration(elapsed))
