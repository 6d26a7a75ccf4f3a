"""pytest fixtures shared by every test; plain helpers are in ``support``."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    return root
