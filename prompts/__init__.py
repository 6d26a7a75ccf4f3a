"""Prompt templates, filled with ``string.Template`` ($name placeholders).

The defaults are the text files in this folder (and any a plugin adds with ``register_default``).
A job replaces any of them from its ``prompts:`` section; ``check`` says what is wrong with a
replacement (an unknown prompt, an unknown or a missing placeholder), and ``install`` puts the
job's replacements in place in the process that renders (each Beam worker, from its DoFn's setup).

>>> "$question" in load("sif_train")
True
>>> sorted(placeholders("judge"))
['candidate', 'question', 'reference']
>>> check("judge", "Q: $question, A: $reference, B: $candidat")
'prompts.judge: unknown placeholder $candidat (the default uses $candidate, $question, $reference)'
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from string import Template

_DIR = Path(__file__).parent
_PLUGINS: dict[str, tuple[str, str]] = {}  # name -> (text, description) a plugin registered
_REPLACED: dict[str, str] = {}  # name -> the job's text, installed in this process

DESCRIPTIONS = {
    "aperture_train": "aperture rows: the training question (look closer with zoom/segment actions)",
    "critic": "critic: grade a trace against the image with its boxes drawn (JSON score and reason)",
    "flickr30k_question": "flickr30k source: the question asked about a phrase of a caption",
    "judge": "teacher judge: does a candidate answer mean the same as the reference (yes/no)",
    "judge_graded": "trainer's graded judge: a 0-1 score for an answer against the reference",
    "mgpo_train": "mgpo rows: the first training turn (pick the region as JSON)",
    "mgpo_turn2": "mgpo rows: the second training turn, with the crop of the chosen region",
    "sif_train": "sif rows: the training question (SIF-50K's instruction)",
    "teacher_action": "teacher request, aperture: one action and the crop it returns",
    "teacher_aperture": "teacher request, aperture: what to write (think, act, observe, answer)",
    "teacher_mgpo": "teacher request, mgpo: what to write for the second turn",
    "teacher_reask": "teacher re-ask: the violation a reply must fix",
    "teacher_sif": "teacher request, sif: what to write (one <area><text> pair per step)",
    "teacher_step": "teacher request: one step of the chain, with its regions",
    "teacher_system": "teacher request: the shared system text (question, answer, the steps)",
    "teacher_textual": "teacher request, textual: what to write (reasoning in words only)",
    "textual_train": "textual rows: the training question",
}


def register_default(name: str, text: str, description: str = "") -> None:
    """Add a default prompt (e.g. a style from another package ships its own)."""
    if (_DIR / f"{name}.txt").is_file():
        raise ValueError(f"prompt {name!r} is one of groundcot's own")
    if name in _PLUGINS and _PLUGINS[name][0] != text.strip():
        raise ValueError(f"prompt {name!r} is already registered with another text")
    _PLUGINS[name] = (text.strip(), description)


def names() -> list[str]:
    """Every prompt's name."""
    return sorted({p.stem for p in _DIR.glob("*.txt")} | set(_PLUGINS))


def describe(name: str) -> str:
    """One line saying where the prompt is used."""
    return DESCRIPTIONS.get(name) or _PLUGINS.get(name, ("", ""))[1] or "(no description)"


@lru_cache(maxsize=None)
def _file(name: str) -> str | None:
    path = _DIR / f"{name}.txt"
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def default(name: str) -> str:
    """The text groundcot (or a plugin) ships for ``name``."""
    text = _file(name) if name not in _PLUGINS else _PLUGINS[name][0]
    if text is None:
        raise KeyError(f"no prompt {name!r}; known: {', '.join(names())}")
    return text


def load(name: str) -> str:
    """The prompt's text: the job's replacement when one is installed, else the default."""
    return _REPLACED.get(name) or default(name)


def render(name: str, **values: object) -> str:
    """Fill a template; a missing value is an error, not a silent blank."""
    return Template(load(name)).substitute(values)


def placeholders(name: str) -> set[str]:
    """The ``$names`` the default text of ``name`` uses."""
    return set(Template(default(name)).get_identifiers())


def check(name: str, text: str) -> str | None:
    """Why ``text`` cannot replace prompt ``name`` (one line naming the prompt and the placeholder), or None."""
    if name not in names():
        return f"prompts.{name}: no such prompt (known: {', '.join(names())})"
    template = Template(text)
    if not template.is_valid():
        return f"prompts.{name}: a $ that starts no placeholder (write $$ for a dollar sign)"
    wanted, used = placeholders(name), set(template.get_identifiers())
    uses = ", ".join(f"${p}" for p in sorted(wanted)) or "none"
    if extra := sorted(used - wanted):
        return f"prompts.{name}: unknown placeholder ${extra[0]} (the default uses {uses})"
    if missing := sorted(wanted - used):
        return f"prompts.{name}: placeholder ${missing[0]} is missing (the default uses {uses})"
    return None


def install(texts: dict[str, str]) -> None:
    """Make ``texts`` (name -> text) this process's replacements, and only them."""
    for name, text in texts.items():
        if problem := check(name, text):
            raise ValueError(problem)
    _REPLACED.clear()
    _REPLACED.update(texts)


@contextmanager
def restored():
    """This process's replacements as they were, once the block ends: a job run in this process
    installs its own (its steps run here), and they must not outlive it."""
    before = dict(_REPLACED)
    try:
        yield
    finally:
        _REPLACED.clear()
        _REPLACED.update(before)


def hashes(texts: dict[str, str] | None = None) -> dict[str, str]:
    """sha256 (first 12 hex digits) of every prompt's text, ``texts`` replacing defaults."""
    texts = texts or {}
    return {name: hashlib.sha256(texts.get(name, default(name)).encode()).hexdigest()[:12] for name in names()}


class Using:
    """``fn`` run with the job's prompts installed in whatever process calls it: a picklable
    wrapper for Beam steps that render prompts on workers (a module global set on the driver does
    not travel)."""

    def __init__(self, texts: dict[str, str], fn):
        self.texts, self.fn, self._installed = dict(texts), fn, False

    def __call__(self, *args, **kwargs):
        if not self._installed:
            install(self.texts)
            self._installed = True
        return self.fn(*args, **kwargs)
