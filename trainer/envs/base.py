"""What every multi-turn environment shares: the record's original image, the turn budget, counters.

TRL's ``GRPOTrainer(environment_factory=...)`` makes one instance per rollout, calls ``reset(**row)``
with the dataset row, and exposes every public method but ``reset`` as a tool; a tool returns
content parts (the crop as ``{"type": "image", "image": PIL}`` and text) that TRL appends as a tool
message. A tool that raises is a failed call (TRL answers ``{"error": ...}``).
"""
from __future__ import annotations

import io

from PIL import Image


def as_pil(image) -> Image.Image:
    """A PIL image from a PIL image or an Image column's {"bytes", "path"}."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    return Image.open(io.BytesIO(image["bytes"])).convert("RGB")


class Environment:
    """The record's full-resolution image and the question, a call budget, and per-rollout counts."""

    style = ""

    def __init__(self, max_calls: int = 1, min_side: int = 28, max_aspect: float = 4.0, **settings):
        self.max_calls, self.min_side, self.max_aspect = max_calls, min_side, max_aspect
        self.image, self.row = None, {}
        self.calls = self.failed = self.images_added = 0

    def reset(self, **row) -> None:
        """Start a rollout on ``row`` (its ``images[0]``: the original image)."""
        self.row, self.image = row, as_pil(row["images"][0])
        self.calls = self.failed = self.images_added = 0

    def _spend(self) -> None:
        self.calls += 1
        if self.calls > self.max_calls:
            self.failed += 1
            raise ValueError(f"turn budget spent: {self.max_calls} tool call(s) per rollout")

    def _fail(self, why: str):
        self.failed += 1
        raise ValueError(why)

    def _returns(self, image: Image.Image, text: str) -> list[dict]:
        self.images_added += 1
        return [{"type": "image", "image": image}, {"type": "text", "text": text}]
