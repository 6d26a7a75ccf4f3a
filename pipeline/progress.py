"""Progress of a running job: its phase, records read, rows per stage, rate, and an ETA from the
slowest stage's remaining work when the input size is known.

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
READER = "read"  # the readers' rejections (``read.rejected.<reason>``), counted by the first stage
PLANNED, CHECKED = "styles", "validate"  # row stages (after the fan-out: one row per record and style)


def duration(seconds: float) -> str:
    """A short human duration.

    >>> duration(3725), duration(75), duration(9)
    ('1h02m', '1m15s', '9s')
    """
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _seen(counters: dict[str, int], stage: str) -> int:
    return counters.get(f"{stage}.ok", 0) + _rejected(counters, stage)


def _rejected(counters: dict[str, int], stage: str) -> int:
    return sum(n for k, n in counters.items() if k.startswith(f"{stage}.rejected."))


def _read(counters: dict[str, int]) -> int:
    """Records read: those the readers rejected, and those through the first stage (its counts can lag
    the next stage's by a flush: never fewer than went on)."""
    return _rejected(counters, READER) + max(_seen(counters, READ), _seen(counters, "expand"))


def _eta(done: int, total: int, elapsed: float) -> float | None:
    return (total - done) / (done / elapsed) if done and elapsed > 0 else None


def figures(counters: dict[str, int], total: int | None, elapsed: float, final: bool = False) -> str:
    """One line from the stages' counters (``<stage>.ok``, ``<stage>.rejected.<reason>``): records
    read, rows per stage, the rate of finished rows, and an ETA from the slowest stage's remaining
    work (shown once rows finish: before that it would only know the reading). ``final``: the
    run has ended, so no estimates.

    >>> figures({"image.ok": 40, "image.rejected.missing_image": 10, "expand.ok": 40, "styles.ok": 80,
    ...          "validate.ok": 60, "validate.rejected.chain_box_mismatch": 10, "depth_image.ok": 60,
    ...          "depth_image.arrived_rejected": 20}, 100, 10.0)
    'read 50/100 records; rows: 80 planned, 70 validated, 80/190 finished (60 kept, 20 rejected); 8.0 rows/s; ETA 13s'
    """
    read = _read(counters)
    kept = counters.get(f"{LAST}.ok", 0)
    parts = [f"read {read}" + (f"/{total}" if total else "") + " records"]
    if f"{LAST}.arrived_rejected" not in counters and not _seen(counters, PLANNED):  # Beam's counters
        rejected = sum(n for k, n in counters.items() if ".rejected." in k)
        parts.append(f"rows: {kept} kept, {rejected} rejected (records and rows)")
        eta = _eta(read, total, elapsed) if total else None
        if eta:
            parts.append(f"ETA {duration(eta)} to read")
        return "; ".join(parts)
    rejected = counters.get(f"{LAST}.arrived_rejected", 0) + _rejected(counters, LAST)
    finished = kept + rejected
    expected = None
    ok_expanded = counters.get("expand.ok", 0)
    if total and ok_expanded and not final:  # rows per record so far; records rejected before the fan-out stay one row
        before = _rejected(counters, READER) + _rejected(counters, READ) + _rejected(counters, "expand")
        expected = max(finished, round(before + (total - before) * _seen(counters, PLANNED) / ok_expanded))
    parts.append(f"rows: {_seen(counters, PLANNED)} planned, {_seen(counters, CHECKED)} validated, "
                  f"{finished}" + (f"/{expected}" if expected else "") + f" finished ({kept} kept, {rejected} rejected)")
    parts.append(f"{finished / elapsed if elapsed > 0 else 0.0:.1f} rows/s")
    etas = [_eta(read, total, elapsed) if total else None, _eta(finished, expected, elapsed) if expected else None]
    if not final and finished and etas[-1] is not None and max(etas[-1], etas[0] or 0) > 0:
        parts.append(f"ETA {duration(max(e for e in etas if e is not None))}")
    return "; ".join(parts)


def phase(counters: dict[str, int], total: int | None) -> str:
    """What the job is doing: loading models (no record through yet), reading, or writing (every
    record read, rows still on their way to the writer).

    >>> phase({}, 10), phase({"image.ok": 3}, 10), phase({"image.ok": 10}, 10)
    ('loading models', 'reading', 'writing')
    """
    read = _read(counters)
    if not read:
        return "loading models"
    return "writing" if total is not None and read >= total else "reading"


class Live:
    """The local runner's live line, for the ``with`` block that runs the job.

    ``folder`` is where the stages write their counts (give it to the graph). The first line comes
    at once; on a terminal the line is redrawn every second, elsewhere logged every ``every_s``
    (0: only the first and the last). The last line says done or failed, never what a failed run
    would have written.
    """

    def __init__(self, total: int | None, every_s: float, stream=None):
        self.total, self.every_s = total, every_s
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.folder = tempfile.mkdtemp(prefix="groundcot-progress-")
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.first_count: float | None = None  # when the first record got through: rates count from there

    def counters(self) -> Counter:
        found: Counter = Counter()
        for path in glob.glob(os.path.join(self.folder, "*.json")):
            try:
                with open(path, encoding="utf-8") as handle:
                    found.update(json.load(handle))
            except (OSError, ValueError):  # being replaced right now: the next look reads it
                continue
        return found

    def line(self, ending: str | None = None) -> str:
        """The line now; ``ending`` ("done", "failed") for the last one."""
        counters, now = self.counters(), time.monotonic()
        if counters and self.first_count is None:
            self.first_count = now
        took = duration(now - self.started)
        if not counters and ending is None:
            return f"{phase(counters, self.total)} ({took})"
        head = f"{ending} after {took}" if ending else f"{phase(counters, self.total)} ({took})"
        elapsed = now - (self.first_count or self.started)
        if elapsed < 1.0:  # counts first seen just now (a run shorter than a line's interval): the whole run
            elapsed = now - self.started
        text = f"{head}: {figures(counters, self.total, elapsed, final=ending is not None)}"
        return text + ("; nothing published" if ending == "failed" else "")

    def _show(self, ending: str | None = None) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line(ending) + ("\n" if ending else ""))
            self.stream.flush()
        else:
            log.info("progress: %s", self.line(ending))

    def _loop(self) -> None:
        interval = 1.0 if self.tty else self.every_s
        while interval and not self.stop.wait(interval):
            self._show()

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        self._show()  # at once: loading the models can take a while
        self.thread = threading.Thread(target=self._loop, name="groundcot-progress", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, kind, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        if kind is not KeyboardInterrupt:
            self._show("failed" if kind else "done")
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
