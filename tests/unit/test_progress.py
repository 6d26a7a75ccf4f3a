"""The live progress line: figures from the stages' counts, summed across worker processes."""
from __future__ import annotations

import io
import multiprocessing
import os
import time

from groundcot.pipeline.progress import Live, duration, figures
from groundcot.transforms.stage import Tally


def test_figures_read_written_rejected_rate_and_eta():
    counters = {"image.ok": 40, "image.rejected.missing_image": 10, "teacher.rejected.teacher_timeout": 2,
                "depth_image.ok": 120}
    assert figures(counters, 100, 10.0) == ("read 50/100 records, written 120 rows, rejected 12, "
                                           "5.0 records/s, ETA 10s")
    assert figures(counters, None, 10.0) == "read 50 records, written 120 rows, rejected 12, 5.0 records/s"
    assert "ETA" not in figures({"image.ok": 100}, 100, 10.0)  # all read
    # the local tallies: the last stage saw every rejection made upstream (the teacher's too)
    local = {"image.ok": 5, "image.rejected.bad": 1, "depth_image.arrived_rejected": 3, "depth_image.rejected.x": 1,
             "depth_image.ok": 16}
    assert "rejected 4," in figures(local, None, 1.0)
    assert duration(59) == "59s" and duration(61) == "1m01s" and duration(7322) == "2h02m"


def _worker(folder: str, stage: str, n: int) -> None:
    tally = Tally(folder, stage)
    for i in range(n):
        tally.add(f"{stage}.ok" if i % 4 else f"{stage}.rejected.missing_image")
    tally.flush()


def test_live_line_sums_the_tallies_of_worker_processes():
    stream = io.StringIO()
    with Live(total=20, every_s=0, stream=stream) as live:
        procs = [multiprocessing.get_context("spawn").Process(target=_worker, args=(live.folder, "image", 10))
                 for _ in range(2)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=60)
        _worker(live.folder, "depth_image", 7)
        time.sleep(0.01)
        counts = live.counters()
        folder = live.folder
    assert counts["image.ok"] == 14 and counts["image.rejected.missing_image"] == 6
    assert not os.path.exists(folder) and not live.counters()  # the folder goes with the run


def test_live_line_on_a_terminal_is_redrawn_in_place():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    with Live(total=None, every_s=0, stream=stream) as live:
        _worker(live.folder, "image", 8)
        time.sleep(1.3)  # the line is redrawn every second on a terminal
    text = stream.getvalue()
    assert text.count("\r\x1b[2K") >= 2 and text.endswith("\n")
    assert "read 8 records, written 0 rows, rejected 2" in text.rsplit("\r\x1b[2K", 1)[-1]
