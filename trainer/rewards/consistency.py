"""iVGR's ``consistency`` reward, offline form: word overlap with the grounded twin's reasoning."""
from __future__ import annotations

import re
from collections import Counter

from groundcot.schemas.answers import answers_match
from groundcot.trainer.rewards.answer import answer_of
from groundcot.trainer.rewards.text import text_of

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> Counter:
    text = re.sub(r"<area>.*?</area>|<[^>]+>|\(depth [0-9.]+\)", " ", text.lower(), flags=re.DOTALL)
    return Counter(_WORD.findall(text))


def consistency_reward(completions, twin_text, answer, **kwargs) -> list[float]:
    """Word-overlap F1 of the reasoning with the grounded twin's (coordinates and tags removed),
    counted only when the answer is right."""
    out = []
    for c, twin, gt in zip(completions, twin_text, answer):
        a = answer_of(c)
        mine, theirs = _words(text_of(c)), _words(twin or "")
        common = sum((mine & theirs).values())
        if not (a and answers_match(a, gt)) or not common:
            out.append(0.0)
            continue
        p, r = common / sum(mine.values()), common / sum(theirs.values())
        out.append(2 * p * r / (p + r))
    return out
