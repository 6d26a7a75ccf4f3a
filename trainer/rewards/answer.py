"""groundcot's ``answer`` reward: a normalised match (or a judge's yes/no), with an optional
progress bonus when a sample beats its own best earlier score."""
from __future__ import annotations

import re
import threading

from groundcot.schemas.answers import answers_match
from groundcot.trainer.rewards.format import cot_of
from groundcot.trainer.rewards.text import text_of


def answer_of(completion) -> str | None:
    """The completion's ``<answer>`` (the CoT's when it parses), or None."""
    cot = cot_of(completion)
    if cot is not None:
        return cot.answer
    match = re.search(r"<answer>(.*?)</answer>", text_of(completion), re.DOTALL)
    return match.group(1).strip() if match else None


def answer_reward(completions, answer, question=None, judge=None, **kwargs) -> list[float]:
    """1 if the <answer> matches the GT (normalised string or number); else the judge's verdict
    when a judge is given (free-form answers), else 0."""
    questions = question or [""] * len(answer)
    out = []
    for a, gt, q in zip(map(answer_of, completions), answer, questions):
        if a is None:
            out.append(0.0)
        elif answers_match(a, gt):
            out.append(1.0)
        else:
            out.append(judge(q, gt, a) if judge else 0.0)
    return out


class ProgressAnswerReward:
    """The answer score s, plus s - s_prev when a sample beats its previous best (``bonus``).

    ``s_prev`` is the best score the sample (by ``id``) got in earlier calls; the first time
    a sample is seen, or without ``id``, there is no bonus. Picklable, with a ``__name__`` for TRL's logs.
    """

    __name__ = "answer_reward"

    def __init__(self, judge=None, bonus: bool = True):
        self.best: dict[str, float] = {}
        self.judge, self.bonus = judge, bonus
        self._lock = threading.Lock()

    def __call__(self, completions, answer, id=None, question=None, **kwargs) -> list[float]:
        scores = answer_reward(completions, answer, question, self.judge)
        if not self.bonus or id is None:
            return scores
        with self._lock:
            before = dict(self.best)
            rewards = [s + max(0.0, s - before[i]) if i in before else s for s, i in zip(scores, id)]
            for s, i in zip(scores, id):
                self.best[i] = max(self.best.get(i, 0.0), s)
        return rewards

    def __getstate__(self):
        return {"best": self.best, "judge": self.judge, "bonus": self.bonus}

    def __setstate__(self, state):
        self.__dict__.update({"bonus": True, **state})
        self._lock = threading.Lock()
