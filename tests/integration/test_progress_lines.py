"""The progress lines as a user sees them: the first one at once, naming the phase, and figures that
count every record read, the ones a reader rejected too."""
import json
import logging

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
