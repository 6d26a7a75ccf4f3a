"""The built wheel: one top-level package, ``groundcot``, carrying the prompts, the job configs and
the demo data (so an installed copy runs ``groundcot demo``)."""
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import PurePosixPath

import pytest

from support import REPO

# Built from a copy, so a checkout's own build/ (which may hold deleted modules) never leaks in.
PACKAGES = sorted(p.parent.name for p in REPO.glob("*/__init__.py"))  # every subpackage of the checkout
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "out", "*.egg-info", "__pycache__", ".*_cache")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    src, dist = tmp_path_factory.mktemp("src") / "groundcot", tmp_path_factory.mktemp("dist")
    shutil.copytree(REPO, src, ignore=SKIP)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(dist), str(src)], check=True, capture_output=True, timeout=600)
    (built,) = dist.glob("groundcot-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def names(wheel) -> list[PurePosixPath]:
    return [PurePosixPath(n) for n in wheel.namelist()]


def test_nothing_but_groundcot_is_top_level(wheel):
    top = {n.parts[0] for n in names(wheel)}
    (info,) = top - {"groundcot"}
    assert "groundcot" in top and re.fullmatch(r"groundcot-[^-]+\.dist-info", info)
    scripts = wheel.read(f"{info}/entry_points.txt").decode()
    assert re.search(r"^groundcot = groundcot\.pipeline\.cli:main$", scripts, re.M)


def test_it_carries_every_subpackage_and_no_tests(wheel):
    inside = names(wheel)
    packages = {n.parts[1] for n in inside if n.parts[0] == "groundcot" and len(n.parts) > 2}
    assert packages == set(PACKAGES)
    assert {PurePosixPath("groundcot/__main__.py"), PurePosixPath("groundcot/schemas/runs.py")} <= set(inside)
    assert not any(part in ("tests", "bench", ".ci") for n in inside for part in n.parts)


def test_it_carries_every_module_of_the_checkout(wheel):
    """A new subpackage must be listed in pyproject's packages, or an installed copy lacks it."""
    modules = {p.relative_to(REPO).as_posix() for sub in PACKAGES for p in (REPO / sub).rglob("*.py")
               if "__pycache__" not in p.parts}
    inside = {n.relative_to("groundcot").as_posix() for n in names(wheel) if n.parts[0] == "groundcot"}
    assert modules and not modules - inside, f"missing from the wheel: {sorted(modules - inside)}"


def test_it_carries_prompts_job_configs_and_the_demo_data(wheel):
    def shipped(folder: str, pattern: str) -> set[str]:
        return {p.relative_to(REPO).as_posix() for p in (REPO / folder).glob(pattern) if "__pycache__" not in p.parts}

    inside = {n.relative_to("groundcot").as_posix() for n in names(wheel) if n.parts[0] == "groundcot"}
    assert shipped("prompts", "*.txt") and shipped("prompts", "*.txt") <= inside
    assert {"jobs/demo.yaml", "jobs/train_sft.yaml", "jobs/train_grpo.yaml"} <= shipped("jobs", "*.yaml") <= inside
    demo = shipped("jobs/demo_data", "**/*.*")
    assert len(demo) > 16 and demo <= inside
