"""MGPO's ``boxed_answer`` reward: 1 if the single ``\\boxed{}`` answer matches the GT."""
from __future__ import annotations

import re

from groundcot.schemas.answers import answers_match
from groundcot.trainer.rewards.text import text_of

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def boxed_answer_reward(completions, answer, **kwargs) -> list[float]:
    """MGPO's reward: 1 if the \\boxed{} answer matches the GT."""
    out = []
    for c, gt in zip(completions, answer):
        boxed = _BOXED.findall(text_of(c))
        out.append(float(len(boxed) == 1 and answers_match(boxed[0], gt)))
    return out
