"""groundcot's ``format`` reward: the SIF grammar (``schemas.cot``), boxes with depth, 0/1."""
from __future__ import annotations

from groundcot.schemas.cot import CotError, parse_cot
from groundcot.trainer.rewards.text import text_of


def cot_of(completion):
    """The completion's parsed CoT (depths optional), or None when it does not follow the grammar."""
    try:
        return parse_cot(text_of(completion), require_depth=False)
    except CotError:
        return None


def format_reward(completions, **kwargs) -> list[float]:
    """1 if the completion follows the SIF grammar (boxes with depth), else 0."""
    out = []
    for c in completions:
        try:
            parse_cot(text_of(c), require_depth=True)
            out.append(1.0)
        except CotError:
            out.append(0.0)
    return out
