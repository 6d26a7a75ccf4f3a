"""The output folder through the real CLI: staged runs, the manifest, the lock, exit codes."""
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from groundcot.pipeline.cli import main
from groundcot.pipeline.outputs import disk_full

from support import REPO, one_line, png_bytes, viscot_line, write_toy_job
from support.fake_openai import FakeOpenAI

FAST = ["--set", "depth.enabled=false", "--set", "masks.enabled=false"]


@pytest.fixture
def job(toy_job):
    config, out = toy_job
    return str(config), out


def generate(config, out, *args):
    return main(["generate", config, "-o", str(out), *FAST, *args])


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """The toy job (``toy_job``'s six records), run once for this module."""
    root = tmp_path_factory.mktemp("toy_run")
    (root / "images").mkdir()
    write_toy_job(root)
    assert generate(str(root / "job.yaml"), root / "out") == 0
    return root / "out"


@pytest.fixture
def published(job, toy_run):
    """``job`` whose output folder holds a finished run of it (a copy of ``toy_run``)."""
    config, out = job
    shutil.copytree(toy_run, out)
    return config, out


def snapshot(out):
    """Every file under ``out`` with its bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def stats_of(out):
    stats = json.loads((out / "stats.json").read_text())
    assert stats["balanced"]
    return stats


def test_a_run_publishes_its_files_and_a_manifest(toy_run):
    out = toy_run
    manifest = json.loads((out / "_groundcot.json").read_text())
    assert manifest["state"] == "published" and manifest["run_id"] == stats_of(out)["run_id"]
    assert sorted(manifest["files"]) == sorted(p for p in snapshot(out) if p != "_groundcot.json")
    assert not (out / ".groundcot.lock").exists() and not (out / ".groundcot-staging").exists()


@pytest.mark.parametrize("bad, key", [
    ("sources.0.path=typo_cot_train.jsonl", "sources.0.path"),
    ("sources.0.path=[toy_cot_train.jsonl, 'nothing_*.jsonl']", "sources.0.path"),
    ("teacher={kind: openai, connection: {base_url: 'http://127.0.0.1:9/v1', model: m, "
     "api_key_env: GROUNDCOT_NO_SUCH_KEY}}",
     "GROUNDCOT_NO_SUCH_KEY"),
])
def test_a_run_that_fails_its_checks_leaves_the_previous_outputs_byte_identical(published, capfd, bad, key):
    config, out = published
    before = snapshot(out)
    assert generate(config, out, "--set", bad) != 0
    assert key in one_line(capfd)
    assert snapshot(out) == before


def test_a_rerun_replaces_only_what_groundcot_wrote(job):
    config, out = job
    assert generate(config, out, "--set", "output.num_shards=2") == 0
    assert len(list((out / "data" / "sif").glob("train-*-of-00002.parquet"))) == 2
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    (out / "mine" / "model.bin").write_bytes(b"\0" * 10)
    (out / "data" / "README.md").write_text("my card")
    assert generate(config, out, "--limit", "3") == 0
    assert stats_of(out)["records_in"] == 3
    assert (out / "notes.txt").read_text() == "mine" and (out / "mine" / "model.bin").read_bytes() == b"\0" * 10
    assert (out / "data" / "README.md").read_text() == "my card"
    assert [p.name for p in (out / "data" / "sif").glob("*.parquet")] == ["train-00000-of-00001.parquet"]  # old gone


def test_a_folder_groundcot_did_not_write_is_refused_unless_overwrite(job, capfd):
    config, out = job
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert generate(config, out) == 2
    line = one_line(capfd)
    assert "thesis.tex" in line and "--overwrite" in line
    assert snapshot(out) == {"thesis.tex": b"years of work"} and os.listdir(out) == ["thesis.tex"]
    assert generate(config, out, "--overwrite") == 0
    assert (out / "thesis.tex").read_text() == "years of work" and stats_of(out)["written"] == 6


def test_overwrite_never_replaces_a_file_of_the_same_name(job, capfd):
    config, out = job
    out.mkdir()
    (out / "README.md").write_text("my notes")
    assert generate(config, out, "--overwrite") == 2  # refused before anything runs
    line = one_line(capfd)
    assert "README.md" in line and "move it" in line
    assert snapshot(out) == {"README.md": b"my notes"}
    (out / "README.md").unlink()
    (out / "figures").mkdir()
    (out / "figures" / "hiou.png").write_bytes(b"my plot")  # a clash found only when the run publishes
    assert generate(config, out, "--overwrite") == 2
    line = one_line(capfd)
    assert "figures/hiou.png" in line and ".groundcot-staging" in line
    assert (out / "figures" / "hiou.png").read_bytes() == b"my plot" and not (out / "stats.json").exists()
    assert not (out / "_groundcot.json").exists() or "figures/hiou.png" not in (out / "_groundcot.json").read_text()


def _lock(out, pid, run_id):
    (out / ".groundcot.lock").write_text(json.dumps(
        {"run_id": run_id, "pid": pid, "host": socket.gethostname(), "started": "2024-01-01T00:00:00+00:00"}))


def test_a_run_is_refused_while_another_holds_the_lock(published, capfd):
    config, out = published
    _lock(out, os.getpid(), "the-other-run")  # a live process holds it
    before = snapshot(out)
    assert generate(config, out) == 2
    line = one_line(capfd)
    assert "in use by run the-other-run" in line and f"pid {os.getpid()}" in line
    assert snapshot(out) == before  # the other run's lock stays


def test_a_stale_lock_is_taken_over(job, caplog):
    caplog.set_level(logging.INFO, logger="groundcot")
    config, out = job
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _lock(out, gone.pid, "a-killed-run")
    (out / ".groundcot-staging" / "a-killed-run" / "data").mkdir(parents=True)
    assert generate(config, out) == 0
    assert "taking over the lock" in caplog.text and "a-killed-run" in caplog.text
    assert stats_of(out)["written"] == 6
    assert not (out / ".groundcot.lock").exists() and not (out / ".groundcot-staging").exists()


def test_a_killed_run_leaves_the_previous_outputs_and_a_rerun_succeeds(published, capfd):
    config, out = published  # the previous run: the toy job with the template teacher
    with FakeOpenAI(latency=0.5) as fake:  # 6 teacher calls, 0.5 s each, one at a time
        teacher = (f"{{kind: openai, connection: {{base_url: '{fake.base_url}', model: fake-vlm, api_key_env: null}}, "
                   "limits: {max_concurrency: 1}}")
        Path(config).write_text(Path(config).read_text() + f"teacher: {teacher}\n")
        before = snapshot(out)
        proc = subprocess.Popen([sys.executable, "-m", "groundcot", "generate", config, "-o", str(out), *FAST],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while len(fake.requests) < 2:  # the job is under way, writing into its staging folder
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
                time.sleep(0.1)
            other = json.loads((out / ".groundcot.lock").read_text())
            assert other["pid"] == proc.pid
            assert generate(config, out) == 2  # a second, concurrent run
            assert f"in use by run {other['run_id']}" in one_line(capfd)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert (out / ".groundcot-staging" / other["run_id"]).is_dir()
        assert {k: v for k, v in snapshot(out).items() if not k.startswith(".groundcot")} == before
        fake.latency = 0
        assert generate(config, out) == 0
    stats = stats_of(out)
    assert stats["written"] == 6 and stats["teacher"]["kind"] == "openai"
    assert not (out / ".groundcot.lock").exists() and not (out / ".groundcot-staging").exists()


def test_a_run_that_reads_no_records_fails_unless_allow_empty(published, capfd):
    config, out = published
    before = snapshot(out)
    none = "sources.0.filters.datasets=[not_there]"
    assert generate(config, out, "--set", none) == 1
    line = one_line(capfd)
    assert "0 records (6 filtered out)" in line and "--allow-empty" in line and "nothing published" in line
    assert {k: v for k, v in snapshot(out).items() if not k.startswith(".groundcot-staging")} == before
    assert generate(config, out, "--set", none, "--allow-empty") == 0
    stats = stats_of(out)
    assert stats["records_in"] == 0 and stats["filtered_out"] == 6 and stats["written"] == 0
    assert not (out / ".groundcot-staging").exists()  # the failed run's staging folder went with the next run


def test_a_run_whose_image_root_holds_none_of_its_images_fails_before_it_starts(job, tmp_path, capfd):
    config, out = job
    (tmp_path / "empty").mkdir()
    elsewhere = ["--set", f"sources.0.image_root={tmp_path / 'empty'}"]
    for extra in ([], ["--allow-empty"]):
        assert generate(config, out, *elsewhere, *extra) == 2
        assert "sources.0.image_root: none of the 6 first records' images is under" in one_line(capfd)
        assert not out.exists()


def test_a_run_whose_teacher_always_fails_fails(tmp_path, image_root, capfd):
    (image_root / "a.png").write_bytes(png_bytes(64, 48))
    lines = [viscot_line("a.png", 64, 48, [[10, 10, 30, 30]], question=f"Q{i} [[server_error]]") for i in range(3)]
    (tmp_path / "toy_cot_train.jsonl").write_text("\n".join(lines) + "\n")
    with FakeOpenAI() as fake:
        config = tmp_path / "job.yaml"
        config.write_text("sources: [{kind: viscot, path: toy_cot_train.jsonl, image_root: images}]\n"
                          f"teacher: {{kind: openai, connection: {{base_url: '{fake.base_url}', model: fake-vlm, "
                          "api_key_env: null, max_retries: 0}}\n")
        assert generate(str(config), tmp_path / "out") == 1
        assert "every one of 3 records was rejected with teacher_server_error" in one_line(capfd)


def test_a_partly_good_run_is_published(job, image_root):
    config, out = job
    (image_root / "img0.png").unlink()
    assert generate(config, out) == 0
    assert stats_of(out)["rejected_by_reason"] == {"missing_image": 1}


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_a_limit_below_one_is_a_usage_error(job, capfd, limit):
    config, out = job
    with pytest.raises(SystemExit) as usage:  # argparse's usage error, as from the command line
        generate(config, out, "--limit", limit)
    assert usage.value.code == 2
    err = capfd.readouterr().err.strip()
    assert err == f"groundcot generate: error: argument --limit: must be at least 1 (got {limit}) " \
                  "(see groundcot generate --help)"
    assert not out.exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root), unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_leaves_the_previous_run(job, small_disk):
    config, _ = job
    out = small_disk / "out"
    assert generate(config, out) == 0  # a small previous run, of one style
    before = snapshot(out)
    # the disk filled but for as much as that run's data took: room for a lock, not for four styles' data
    room = sum(len(data) for name, data in before.items() if name.startswith("data/"))
    disk = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(bytes(disk.f_bavail * disk.f_frsize - room))
    proc = subprocess.run([str(Path(sys.executable).parent / "groundcot"), "generate", config, "-o", str(out), *FAST,
                           "--set", "styles=[sif, mgpo, aperture, textual]"],
                          capture_output=True, text=True, timeout=600, cwd=small_disk.parent)
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == f"groundcot: {out}: no space left on device; nothing published, {out} is as it was", \
        proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not [line for line in lines if " ERROR " in line], proc.stderr[-3000:]
    assert "progress: failed after " in lines[-2]
    assert snapshot(out) == before and proc.stdout == ""


def test_a_full_disk_is_named_from_the_error_it_wraps_or_its_text():
    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError as err:  # as Beam raises a step's error again
            raise RuntimeError(f"OSError: {err} [while running 'Write']")  # noqa: B904
    except RuntimeError as err:
        assert disk_full(err, "/o") == "/o: no space left on device"
    worker = RuntimeError("OSError: [Errno 28] No space left on device [while running 'Write']")  # a worker's text
    assert disk_full(worker, "/o") == "/o: no space left on device"
    assert disk_full(OSError(28, "No space left on device", "/tmp/cache/a"), "/o") == "/tmp/cache/a: no space " \
                                                                                     "left on device"
    assert disk_full(OSError(28, "No space left on device", "/o/x/stats.json"), "/o") == "/o: no space left on device"
    assert disk_full(RuntimeError("ValueError: bad row [while running 'Write']"), "/o") is None
