"""What every reward reads from a completion: its text, and the row's depth map."""
from __future__ import annotations


def text_of(completion) -> str:
    """A completion as text, whether a string or a conversational list of messages (the last one)."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"] if completion else ""
    return content if isinstance(content, str) else "".join(p.get("text") or "" for p in content)


def transcript(completion) -> str:
    """Every assistant turn of a completion, blank-line separated (a string is one turn)."""
    if isinstance(completion, str):
        return completion
    return "\n\n".join(text_of([m]) for m in completion if m.get("role", "assistant") == "assistant")


def png_bytes(value) -> bytes | None:
    """A depth map column's value as PNG bytes: bytes as they are, or an Image column's {"bytes", "path"}."""
    return value.get("bytes") if isinstance(value, dict) else value


def per_depth_map(completions, depth_map, score) -> list[float | None]:
    """``score(completion, png)`` for each completion whose row has a depth map; None for the others."""
    return [None if png is None else score(c, png) for c, png in zip(completions, map(png_bytes, depth_map))]
