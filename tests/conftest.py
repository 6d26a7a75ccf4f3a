"""pytest fixtures shared by every test; plain helpers are in ``support``."""
from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from support import REPO, write_toy_job

# One torch thread per test process: `-n auto` already runs a process per core, and torch's extra
# intra-op threads only spin against the other workers (a tiny model's decode step: 0.24 s of CPU
# with one thread, 11-21 s with two). Set before anything imports torch; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    # pytest-xdist's loadfile would re-sort the modules by their number of tests (most first), which
    # puts the slow one-test modules last: keep the order below instead.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """The modules holding slow tests first (their order kept): under ``-n auto --dist loadfile`` they
    start at once, beside the many quick ones, instead of being the last ones left running."""
    slow = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow)


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="session")
def demo_run_and_log(tmp_path_factory) -> tuple[Path, list[str]]:
    """The bundled demo (``groundcot demo``), run once per test process, and the lines it logged at
    INFO. Read-only for its users: a test that changes a run copies it first (``shutil.copytree``)."""
    from groundcot.pipeline.cli import main

    def make(out: Path) -> None:
        logged, logger = _Lines(), logging.getLogger("groundcot")
        level = logger.level
        logger.addHandler(logged)
        logger.setLevel(logging.INFO)  # under pytest the root logger stays at WARNING
        try:
            assert main(["demo", "-o", str(out)]) == 0
        finally:
            logger.removeHandler(logged)
            logger.setLevel(level)
        (out.parent / f"{out.name}.log.json").write_text(json.dumps(logged.lines))

    out = _once(tmp_path_factory, "demo", make)
    lines = json.loads((out.parent / f"{out.name}.log.json").read_text())
    before = _files(out)
    yield out, lines
    changed = sorted(set(before.items()) ^ set(_files(out).items()))
    assert not changed, f"a test changed the shared demo run (copy it first): {changed[:5]}"


def _once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """``make(folder)`` once per test session: under pytest-xdist the workers share one folder (the
    first to take the lock makes it, the others wait and read it); without xdist, the process's own."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # this session's folder, above each worker's own
    folder, done = shared / name, shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed to make it left a part
            make(folder)
            done.touch()
    return folder


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def demo_run(demo_run_and_log) -> Path:
    """The folder of the shared demo run (see ``demo_run_and_log``)."""
    return demo_run_and_log[0]


@pytest.fixture(scope="session")
def small_depth_run(tmp_path_factory) -> Path:
    """A small demo run with depth on and masks off (4 records; sif, textual, mgpo), once per test
    process, for the sif depth image and the trainer tests. Read-only, as ``demo_run``."""
    from groundcot.pipeline.cli import main

    def make(out: Path) -> None:
        assert main(["generate", str(REPO / "jobs" / "demo.yaml"), "-o", str(out), "--limit", "4",
                     "--set", "styles=[sif, textual, mgpo]", "--set", "masks.enabled=false"]) == 0

    out = _once(tmp_path_factory, "small_depth_run", make)
    before = _files(out)
    yield out
    changed = sorted(set(before.items()) ^ set(_files(out).items()))
    assert not changed, f"a test changed the shared small depth run (copy it first): {changed[:5]}"


@pytest.fixture(scope="session")
def worker_image_models(tmp_path_factory) -> tuple[str, str]:
    """Tiny random depth and SAM2 models saved in one folder, as a worker image holds them (the cluster
    runner tests name them by path); once per session. Read-only."""
    def make(folder: Path) -> None:
        from groundcot.transforms.depth import build_tiny_random as build_depth
        from groundcot.transforms.masks import build_tiny_random as build_sam2

        build_depth(str(folder / "depth"))
        build_sam2(str(folder / "sam2"))

    folder = _once(tmp_path_factory, "worker_image_models", make)
    return str(folder / "depth"), str(folder / "sam2")


@pytest.fixture(scope="session")
def local_reference(tmp_path_factory, worker_image_models) -> tuple[Path, dict]:
    """The demo (3 records, sif and aperture) with ``worker_image_models`` on the local runner, once per
    session: what the cluster runners' runs must equal. (its folder, its stats.json). Read-only."""
    from support.runs import demo_with_models

    out = _once(tmp_path_factory, "local_reference", lambda folder: demo_with_models(folder, worker_image_models, 3))
    return out, json.loads((out / "stats.json").read_text())


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    return root


@pytest.fixture
def toy_job(tmp_path, image_root):  # image_root makes tmp_path/images, where the job's images go
    """A small local VisCoT job of six good records (``support.write_toy_job``); returns (config path,
    output folder)."""
    config = write_toy_job(tmp_path)
    return config, tmp_path / "out"
