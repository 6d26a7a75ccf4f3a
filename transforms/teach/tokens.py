"""What an image costs a VLM in prompt tokens, under a configurable rule.

- ``qwen2.5-vl``: Qwen2.5-VL resizes to multiples of 28 pixels within its pixel limits
  (``smart_resize``, with the min/max pixels of its preprocessor config) and spends one token
  per 28x28-pixel patch.
- ``openai-tiles``: OpenAI's high-detail rule: fit in 2048x2048, scale the short side down
  to 768, then 85 tokens plus 170 per 512x512 tile.

>>> image_tokens(64, 48, "qwen2.5-vl")
4
>>> image_tokens(1024, 1024, "openai-tiles")
765
"""
from __future__ import annotations

import math

from groundcot.schemas.boxes import qwen_resize

RULES = ("qwen2.5-vl", "openai-tiles")


def image_tokens(width: int, height: int, rule: str = "qwen2.5-vl") -> int:
    """Prompt tokens one ``width`` x ``height`` image costs under ``rule``."""
    if rule == "qwen2.5-vl":
        h, w = qwen_resize(height, width)
        return (h // 28) * (w // 28)
    if rule == "openai-tiles":
        scale = min(1.0, 2048 / max(width, height))
        w, h = width * scale, height * scale
        scale = min(1.0, 768 / min(w, h))
        w, h = w * scale, h * scale
        return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)
    raise ValueError(f"unknown image token rule {rule!r}; known: {', '.join(RULES)}")


def image_cost(sizes, rule: str) -> dict[str, int]:
    """Images, pixels and image tokens of a request's images, as ledger counts."""
    sizes = list(sizes)
    return {"images": len(sizes), "image_pixels": sum(w * h for w, h in sizes),
            "image_tokens": sum(image_tokens(w, h, rule) for w, h in sizes)}
