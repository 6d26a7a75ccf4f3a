"""pytest fixtures shared by every test; plain helpers are in ``support``."""
from __future__ import annotations

from pathlib import Path

import pytest

from support import png_bytes, viscot_line


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    return root


@pytest.fixture
def toy_job(tmp_path, image_root):
    """A small local VisCoT job of six good records; returns (config path, output folder)."""
    lines = []
    for i in range(6):
        (image_root / f"img{i}.png").write_bytes(png_bytes(64, 48))
        lines.append(viscot_line(f"img{i}.png", 64, 48, [[10, 10, 30 + i, 30]], question=f"What is {i}?"))
    (tmp_path / "toy_cot_train.jsonl").write_text("\n".join(lines) + "\n")
    config = tmp_path / "job.yaml"
    config.write_text("sources: [{kind: viscot, path: toy_cot_train.jsonl, image_root: images}]\n")
    return config, tmp_path / "out"
