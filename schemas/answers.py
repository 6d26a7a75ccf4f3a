"""Answer normalisation and matching (validation and the answer reward share it).

>>> answers_match("Two.", "2"), answers_match("The red car", "red car"), answers_match("yes", "no")
(True, True, False)
"""
from __future__ import annotations

import string

_NUMBERS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
_ARTICLES = {"a", "an", "the"}
_PUNCT = str.maketrans({c: " " for c in string.punctuation if c not in ".-/"})


def normalise_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, spell numbers as digits."""
    words = text.lower().translate(_PUNCT).split()
    words = [_NUMBERS.get(w.strip(".").strip("-"), w.strip(".")) for w in words]
    return " ".join(w for w in words if w and w not in _ARTICLES)


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def answers_match(predicted: str, truth: str) -> bool:
    """Normalised string equality, or numeric equality when both are numbers."""
    p, t = normalise_answer(predicted), normalise_answer(truth)
    if p == t:
        return True
    pn, tn = _number(p), _number(t)
    return pn is not None and tn is not None and abs(pn - tn) < 1e-9
