"""The live progress line: figures from the stages' counts, summed across worker processes."""
from __future__ import annotations

import io
import multiprocessing
import os
import time

import pytest

from groundcot.pipeline.progress import Live, duration, figures, phase
from groundcot.transforms.stage import Tally


def test_figures_count_rows_per_stage_and_take_the_eta_from_the_slowest_stage():
    # every record read (reading would say 0s), rows still on their way: the rows' remaining work decides
    counters = {"image.ok": 90, "image.rejected.missing_image": 10, "expand.ok": 90, "styles.ok": 180,
                "validate.ok": 50, "depth_image.ok": 40, "depth_image.arrived_rejected": 20}
    line = figures(counters, 100, 10.0)
    assert line == ("read 100/100 records; rows: 180 planned, 50 validated, 60/190 finished (40 kept, 20 rejected); "
                    "6.0 rows/s; ETA 21s")
    assert phase(counters, 100) == "writing"
    # no ETA while no row has finished: it would only know the reading, and run low
    assert "ETA" not in figures({"image.ok": 10, "expand.ok": 10, "styles.ok": 20}, 100, 5.0)
    # a stage's file lags the next one's: never fewer records read than went on
    assert figures({"expand.ok": 2, "styles.ok": 4, "depth_image.ok": 2}, 70, 1.0).startswith("read 2/70 records")
    assert figures(counters, 100, 10.0, final=True) == ("read 100/100 records; rows: 180 planned, 50 validated, "
                                                        "60 finished (40 kept, 20 rejected); 6.0 rows/s")
    # records a reader rejected were read: counted by the first stage as read.rejected.<reason>
    readers = {"read.rejected.bad_size": 1, "image.ok": 2, "expand.ok": 2, "styles.ok": 2, "validate.ok": 2,
               "depth_image.ok": 2, "depth_image.arrived_rejected": 1}
    assert figures(readers, 3, 1.0, final=True).startswith("read 3/3 records; rows: 2 planned, 2 validated, "
                                                           "3 finished (2 kept, 1 rejected)")
    assert phase(readers, 3) == "writing" and phase({"read.rejected.bad_json": 1}, 3) == "reading"
    # Beam's counters (cluster runners): what they tell, named as such
    beam_counts = {"image.ok": 40, "image.rejected.missing_image": 10, "depth_image.ok": 120}
    assert figures(beam_counts, 100, 10.0) == "read 50/100 records; rows: 120 kept, 10 rejected (records and rows); " \
                                              "ETA 10s to read"
    assert duration(59) == "59s" and duration(61) == "1m01s" and duration(7322) == "2h02m"


def test_the_first_line_comes_at_once_and_a_failed_run_claims_nothing(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="groundcot"):
        with pytest.raises(OSError):
            with Live(total=20, every_s=0, stream=io.StringIO()) as live:
                first = [r.getMessage() for r in caplog.records]
                _worker(live.folder, "image", 8)
                _worker(live.folder, "depth_image", 4)
                raise OSError(28, "No space left on device")
    assert first == ["progress: loading models (0s)"]
    last = caplog.records[-1].getMessage()
    assert last.startswith("progress: failed after 0s: read 8/20 records;") and last.endswith("; nothing published")
    assert "written" not in last


def test_a_run_whose_counts_come_at_its_end_reports_its_rate_over_the_whole_run(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="groundcot"):
        with Live(total=8, every_s=0, stream=io.StringIO()) as live:
            time.sleep(0.2)  # no line saw counts before the last one
            for stage in ("image", "styles", "validate", "depth_image"):
                _worker(live.folder, stage, 8)
    rate = float(caplog.records[-1].getMessage().split(" rows/s")[0].rsplit(" ", 1)[-1])
    assert 8 / 0.5 < rate < 8 / 0.2  # 8 rows over the run's ~0.2 s, not "0.0 rows/s"


def _worker(folder: str, stage: str, n: int) -> None:
    tally = Tally(folder, stage)
    for i in range(n):
        tally.add(f"{stage}.ok" if i % 4 else f"{stage}.rejected.missing_image")
    tally.flush()


def test_live_line_sums_the_tallies_of_worker_processes():
    stream = io.StringIO()
    with Live(total=20, every_s=0, stream=stream) as live:
        fork = multiprocessing.get_context("fork")  # two processes, without each importing Beam again
        procs = [fork.Process(target=_worker, args=(live.folder, "image", 10)) for _ in range(2)]
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
    assert text.rsplit("\r\x1b[2K", 1)[-1].startswith("done after 1s: read 8 records; rows: ")
