"""Prompt templates as text files, filled with ``string.Template`` ($name placeholders).

>>> "$question" in load("sif_train")
True
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from string import Template

_DIR = Path(__file__).parent


@lru_cache(maxsize=None)
def load(name: str) -> str:
    """The raw text of ``prompts/<name>.txt``."""
    path = _DIR / f"{name}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in _DIR.glob("*.txt"))
        raise KeyError(f"no prompt {name!r}; known: {', '.join(known)}")
    return path.read_text(encoding="utf-8").strip()


def render(name: str, **values: object) -> str:
    """Fill a template; a missing value is an error, not a silent blank."""
    return Template(load(name)).substitute(values)
