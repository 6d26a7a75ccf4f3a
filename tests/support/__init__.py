"""Helpers the tests share: sample images and records, the repository's paths.

The fake OpenAI-compatible server is in ``support.fake_openai``, tiny random models in
``support.tiny_models``.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def png_bytes(width: int = 64, height: int = 48, colour=(200, 30, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour if mode == "RGB" else 128).save(buffer, format="PNG")
    return buffer.getvalue()


def viscot_line(image: str, width: int, height: int, boxes, question="What is it?", answer="red", **extra) -> str:
    return json.dumps({"question": question, "answer": answer, "image": image, "width": width,
                       "height": height, "bboxs": boxes, "dataset": "toy", "split": "train", **extra})



def write_toy_job(root: Path) -> Path:
    """A small local VisCoT job of six good records in ``root`` (images under ``root/images``, which
    must exist); its config's path."""
    lines = []
    for i in range(6):
        (root / "images" / f"img{i}.png").write_bytes(png_bytes(64, 48))
        lines.append(viscot_line(f"img{i}.png", 64, 48, [[10, 10, 30 + i, 30]], question=f"What is {i}?"))
    (root / "toy_cot_train.jsonl").write_text("\n".join(lines) + "\n")
    config = root / "job.yaml"
    config.write_text("sources: [{kind: viscot, path: toy_cot_train.jsonl, image_root: images}]\n")
    return config


class CountingNet:
    """The loaded network, counting the images it is given."""

    def __init__(self, net):
        self.net, self.images = net, 0

    def __call__(self, **inputs):
        self.images += len(inputs["pixel_values"])
        return self.net(**inputs)

    def __getattr__(self, name):
        return getattr(self.net, name)



def one_line(capfd) -> str:
    """The one error line a failed command printed (no traceback anywhere)."""
    err = capfd.readouterr().err.strip()
    last = err.splitlines()[-1]
    assert last.startswith("groundcot: ") and "Traceback" not in err
    return last


# A scene graph for the real image 2371269 (500x375), written in GQA's documented layout.
GQA_GRAPH = {"2371269": {"width": 500, "height": 375, "objects": {
    "1669822": {"name": "camera", "x": 40, "y": 60, "w": 30, "h": 20, "attributes": [], "relations": []},
    "3855001": {"name": "traffic light", "x": 20, "y": 50, "w": 70, "h": 120, "attributes": ["red"],
                "relations": [{"name": "to the left of", "object": "3007398"}]},
    "1837456": {"name": "car", "x": 300, "y": 250, "w": 150, "h": 90},
    "3484036": {"name": "trash can", "x": 470, "y": 300, "w": 60, "h": 90},  # spills past the edge
    "3007398": {"name": "traffic light", "x": 400, "y": 40, "w": 40, "h": 100}}}}
