"""Headless Chromium for the tests that look at a page as a browser shows it (Debian's chromium in CI)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def chromium() -> str:
    """The browser's path; skips the test when there is none."""
    found = next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))),
                 None)
    if found is None:
        pytest.skip("no chromium binary on PATH (.ci/run installs Debian's chromium; here: apt-get install chromium)")
    return found


def browse(page: Path, profile: Path, shot: Path, height: int, *flags: str) -> str:
    """The DOM of ``page`` after it loaded, and a 1280 x ``height`` screenshot at ``shot``: one browser for both."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", *flags, f"--window-size=1280,{height}", f"--screenshot={shot}", "--dump-dom", page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
