"""The progress lines as a user sees them: the first one at once, naming the phase, and figures that
count every record read, the ones a reader rejected too."""
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from groundcot.pipeline.cli import main

from support import png_bytes, viscot_line


def test_a_record_the_reader_rejects_counts_as_read_and_finished(tmp_path, caplog):
    (tmp_path / "images").mkdir()
    lines = []
    for i in range(3):
        (tmp_path / "images" / f"img{i}.png").write_bytes(png_bytes(64, 48))
        width = 0 if i == 1 else 64  # the reader rejects this one: bad_size
        lines.append(viscot_line(f"img{i}.png", width, 48, [[10, 10, 30, 30]], question=f"What is {i}?"))
    (tmp_path / "toy_cot_train.jsonl").write_text("\n".join(lines) + "\n")
    config = tmp_path / "job.yaml"
    config.write_text("sources: [{kind: viscot, path: toy_cot_train.jsonl, image_root: images}]\n")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="groundcot"):
        assert main(["generate", str(config), "-o", str(out), "--set", "depth.enabled=false",
                     "--set", "masks.enabled=false"]) == 0
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress: ")]
    assert progress[-1].startswith("progress: done after ")
    assert ": read 3/3 records; " in progress[-1] and " 3 finished (2 kept, 1 rejected)" in progress[-1]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["records_in"] == 3 and stats["rejected_by_reason"] == {"bad_size": 1}
    assert stats["counters"]["read.rejected.bad_size"] == 1 and stats["counters"]["image.ok"] == 2


def first_lines(command: list[str], cwd: Path, env: dict, until) -> tuple[list[str], float]:
    """Start the installed console script; its stderr lines up to the first that ``until`` accepts, and
    the seconds from the spawn to the first line. The process is killed then (it has written nothing)."""
    script = Path(sys.executable).parent / "groundcot"
    started = time.monotonic()
    proc = subprocess.Popen([str(script), *command], cwd=cwd, env={**os.environ, **env}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines, first_after = [], None
    try:
        while True:
            line = proc.stderr.readline()
            assert line, f"no line that {until} accepts: {lines[-20:]}"
            first_after = first_after or time.monotonic() - started
            lines.append(line.rstrip("\n"))
            if until(line):
                return lines, first_after
    finally:
        proc.kill()
        proc.wait()


STARTING = re.compile(r"\d\d:\d\d:\d\d INFO progress: starting: reading \S*demo\.yaml, loading Beam$")


def test_the_first_progress_line_names_the_phase_within_a_second(tmp_path):
    lines, took = first_lines(["demo", "-o", str(tmp_path / "out")], tmp_path, {}, lambda line: True)
    assert STARTING.match(lines[0]), lines
    busy = os.getloadavg()[0] >= (os.cpu_count() or 1)  # a loaded machine: a margin, never more
    assert took < (2.0 if busy else 1.0), (took, os.getloadavg())


def test_the_first_progress_line_comes_before_beam_and_torch_are_imported(tmp_path):
    # every import is logged as it finishes (python -X importtime): the line must precede the heavy ones
    lines, _ = first_lines(["generate", "demo", "-o", str(tmp_path / "out")], tmp_path,
                           {"PYTHONPROFILEIMPORTTIME": "1"}, lambda line: "| apache_beam" in line)
    at = [i for i, line in enumerate(lines) if STARTING.match(line)]
    assert at, lines[-5:]
    assert not [line for line in lines[:at[0]] if re.search(r"\| +(apache_beam|torch|transformers)\b", line)]
    assert "| apache_beam" in lines[-1]  # and Beam is imported after it
