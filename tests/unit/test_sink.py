import errno
import gc
import io
import json
import math
import sys

import pytest
from test_styles import record, styled

from groundcot.schemas.record import Record
from groundcot.transforms.sink import ParquetRowsSink, to_rejected, to_row


def test_a_rejected_line_is_standard_json_even_with_non_finite_boxes():
    record = Record(id="r1", source="viscot", source_id="a.jsonl@0",
                    gt_boxes=[[math.nan, 1.0, math.inf, 4.0], [1.0, 2.0, 3.0, 4.0]])
    record.reject("read", "box_not_finite", "a.jsonl@0: box 0 is not finite")
    line = to_rejected(record)
    assert "NaN" not in line and "Infinity" not in line
    row = json.loads(line, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert row["gt_boxes"] == [[None, 1.0, None, 4.0], [1.0, 2.0, 3.0, 4.0]] and row["reason"] == "box_not_finite"


class FullDisk(io.RawIOBase):
    """A file whose disk is full after its first ``room`` bytes."""

    def __init__(self, room: int):
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return len(data)


def test_a_shard_whose_disk_fills_leaves_no_writer_to_fail_again_at_exit(monkeypatch):
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    sink = ParquetRowsSink("sif", row_group_size=1, buffer_mb=1)
    sink.open(FullDisk(room=4))  # the magic bytes fit, the first row group does not
    with pytest.raises(OSError, match="No space left"):
        sink.write(to_row(styled(record(), "sif")))
    sink.flush()  # Beam closes the file after a failed write: nothing is left to close
    del sink
    gc.collect()
    assert not unraisable  # was: "Exception ignored in ParquetWriter.__del__" after the run's last line


def test_a_shard_dropped_unclosed_when_its_bundle_fails_writes_nothing_at_exit(monkeypatch):
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    sink = ParquetRowsSink("sif", row_group_size=8, buffer_mb=1)
    sink.open(FullDisk(room=4))
    sink.write(to_row(styled(record(), "sif")))  # held for its row group; then another shard fails the bundle
    del sink
    gc.collect()
    assert not unraisable  # the footer is not written (onto the full disk) when the writer is collected
