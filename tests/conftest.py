"""Shared test helpers: images and VisCoT metadata written by the tests."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent


def png_bytes(width: int = 64, height: int = 48, colour=(200, 30, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour if mode == "RGB" else 128).save(buffer, format="PNG")
    return buffer.getvalue()


def viscot_line(image: str, width: int, height: int, boxes, question="What is it?", answer="red", **extra) -> str:
    return json.dumps({"question": question, "answer": answer, "image": image, "width": width,
                       "height": height, "bboxs": boxes, "dataset": "toy", "split": "train", **extra})


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    return root
