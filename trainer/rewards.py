"""Rewards in TRL's shape: ``f(completions, **columns) -> list[float | None]``.

The GRPO-SIF rewards (REFERENCE.md section 2): ``format`` (the SIF grammar, 0/1),
``answer`` (a match score, or an LLM judge's verdict for free-form answers, plus a progress
bonus when a sample improves), ``box``
(H_end + max(0, H_end - H_ini) with HIoU against the GT), and ``depth`` (the share of
stated depths within 10% of the depth map's box mean). Also MGPO's binary
``boxed_answer``, iVGR's ``consistency`` of textual reasoning with its grounded twin, and
``aperture`` for TikArt-style trajectories. These are groundcot's stricter forms;
``trainer.sifthinker`` has GRPO-SIF's exact ones (``reward_set: sifthinker``).

>>> c = '<think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0.5}]</area><text>All.</text></think><answer>no</answer>'
>>> format_reward([c]), answer_reward([c], answer=["No"])
([1.0], [1.0])
"""
from __future__ import annotations

import json
import re
import threading
from collections import Counter

from groundcot.schemas import boxes as B
from groundcot.schemas.answers import answers_match
from groundcot.schemas.boxes import hiou
from groundcot.schemas.codecs import decode_png16
from groundcot.schemas.cot import CotError, parse_cot
from groundcot.schemas.depth import box_depths, depth_close

FULL = (0.0, 0.0, 1.0, 1.0)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_WORD = re.compile(r"[a-z0-9]+")


def text_of(completion) -> str:
    """A completion as text, whether a string or a conversational list of messages."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"] if completion else ""
    return content if isinstance(content, str) else "".join(p.get("text") or "" for p in content)


def _cot(completion):
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


def _answer_of(completion) -> str | None:
    cot = _cot(completion)
    if cot is not None:
        return cot.answer
    match = re.search(r"<answer>(.*?)</answer>", text_of(completion), re.DOTALL)
    return match.group(1).strip() if match else None


def answer_reward(completions, answer, question=None, judge=None, **kwargs) -> list[float]:
    """1 if the <answer> matches the GT (normalised string or number); else the judge's verdict
    when a judge is given (free-form answers), else 0."""
    questions = question or [""] * len(answer)
    out = []
    for a, gt, q in zip(map(_answer_of, completions), answer, questions):
        if a is None:
            out.append(0.0)
        elif answers_match(a, gt):
            out.append(1.0)
        else:
            out.append(judge(q, gt, a) if judge else 0.0)
    return out


class OpenAIJudge:
    """An LLM judge behind an OpenAI-compatible endpoint, with groundcot's judge prompt.

    The key is read from the environment variable ``api_key_env``; verdicts are cached per
    (question, reference, candidate). Picklable: the client is made on first use.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, timeout_s: float = 60.0):
        self.base_url, self.model, self.api_key_env, self.timeout_s = base_url, model, api_key_env, timeout_s
        self.verdicts: dict[tuple, float] = {}
        self._client = None

    def __call__(self, question: str, reference: str, candidate: str) -> float:
        import os

        import openai

        from groundcot import prompts

        key = (question, reference, candidate)
        if key not in self.verdicts:
            if self._client is None:
                api_key = os.environ.get(self.api_key_env) if self.api_key_env else None
                self._client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "EMPTY",
                                             timeout=self.timeout_s)
            prompt = prompts.render("judge", question=question, reference=reference, candidate=candidate)
            reply = self._client.chat.completions.create(model=self.model, max_tokens=4, temperature=0.0,
                                                         messages=[{"role": "user", "content": prompt}])
            self.verdicts[key] = float((reply.choices[0].message.content or "").strip().lower().startswith("yes"))
        return self.verdicts[key]

    def __getstate__(self):
        return {**self.__dict__, "_client": None}


class ProgressAnswerReward:
    """GRPO-SIF's answer reward: the score s plus s - s_prev when a sample beats its previous best.

    ``s_prev`` is the best score the sample (by ``id``) got in earlier calls; the first time
    a sample is seen there is no bonus. Picklable, with a ``__name__`` for TRL's logs.
    """

    __name__ = "answer_reward"

    def __init__(self, judge: OpenAIJudge | None = None):
        self.best: dict[str, float] = {}
        self.judge = judge
        self._lock = threading.Lock()

    def __call__(self, completions, answer, id, question=None, **kwargs) -> list[float]:
        scores = answer_reward(completions, answer, question, self.judge)
        with self._lock:
            before = dict(self.best)
            rewards = [s + max(0.0, s - before[i]) if i in before else s for s, i in zip(scores, id)]
            for s, i in zip(scores, id):
                self.best[i] = max(self.best.get(i, 0.0), s)
        return rewards

    def __getstate__(self):
        return {"best": self.best, "judge": self.judge}

    def __setstate__(self, state):
        self.best, self.judge, self._lock = state["best"], state["judge"], threading.Lock()


def box_reward(completions, gt_boxes, **kwargs) -> list[float]:
    """H_end + max(0, H_end - H_ini): HIoU of the last area, and of the first that is not the whole image."""
    out = []
    for c, gt in zip(completions, gt_boxes):
        cot = _cot(c)
        if cot is None:
            out.append(0.0)
            continue
        areas = [[list(a.box) for a in step.areas] for step in cot.steps]
        h_end = hiou(areas[-1], gt)
        first = next((a for a in areas if not (len(a) == 1 and tuple(a[0]) == FULL)), areas[-1])
        out.append(h_end + max(0.0, h_end - hiou(first, gt)))
    return out


def png_bytes(value) -> bytes | None:
    """A depth map column's value as PNG bytes: bytes as they are, or an Image column's {"bytes", "path"}."""
    return value.get("bytes") if isinstance(value, dict) else value


def per_depth_map(completions, depth_map, score) -> list[float | None]:
    """``score(completion, png)`` for each completion whose row has a depth map; None for the others."""
    return [None if png is None else score(c, png) for c, png in zip(completions, map(png_bytes, depth_map))]


def _depth_share(completion, png: bytes) -> float:
    cot = _cot(completion)
    areas = [a for step in cot.steps for a in step.areas] if cot else []
    if not areas:
        return 0.0
    true = box_depths(decode_png16(png), [a.box for a in areas])
    return sum(a.depth is not None and depth_close(a.depth, t) for a, t in zip(areas, true)) / len(areas)


def depth_reward(completions, depth_map, **kwargs) -> list[float | None]:
    """Share of stated depths within 10% of the depth map's mean inside their box (None: no map)."""
    return per_depth_map(completions, depth_map, _depth_share)


def boxed_answer_reward(completions, answer, **kwargs) -> list[float]:
    """MGPO's reward: 1 if the \\boxed{} answer matches the GT."""
    out = []
    for c, gt in zip(completions, answer):
        boxed = _BOXED.findall(text_of(c))
        out.append(float(len(boxed) == 1 and answers_match(boxed[0], gt)))
    return out


def _words(text: str) -> Counter:
    text = re.sub(r"<area>.*?</area>|<[^>]+>|\(depth [0-9.]+\)", " ", text.lower(), flags=re.DOTALL)
    return Counter(_WORD.findall(text))


def consistency_reward(completions, twin_text, answer, **kwargs) -> list[float]:
    """iVGR's consistency, offline form: word-overlap F1 of the reasoning with the grounded twin's
    (coordinates and tags removed), counted only when the answer is right."""
    out = []
    for c, twin, gt in zip(completions, twin_text, answer):
        a = _answer_of(c)
        mine, theirs = _words(text_of(c)), _words(twin or "")
        common = sum((mine & theirs).values())
        if not (a and answers_match(a, gt)) or not common:
            out.append(0.0)
            continue
        p, r = common / sum(mine.values()), common / sum(theirs.values())
        out.append(2 * p * r / (p + r))
    return out


def transcript(completion) -> str:
    """Every assistant turn of a completion, blank-line separated (a string is one turn)."""
    if isinstance(completion, str):
        return completion
    return "\n\n".join(text_of([m]) for m in completion if m.get("role", "assistant") == "assistant")


_ACTION = re.compile(r"<(zoom|segment)>(.*?)</\1>", re.DOTALL)


def _action_boxes(text: str) -> list[list[float] | None]:
    """The box of each ``<zoom>``/``<segment>`` action (None where it is not 4 numbers in [0, 1])."""
    out = []
    for _, raw in _ACTION.findall(text):
        try:
            box = [float(v) for v in json.loads(raw)]
            out.append(box if len(box) == 4 and all(0 <= v <= 1 for v in box) and not B.is_degenerate(box) else None)
        except (ValueError, TypeError):
            out.append(None)
    return out


def aperture_reward(completions, answer, gt_boxes, **kwargs) -> list[float]:
    """The aperture style's reward, in the spirit of TikArt's AGRPO (task success coupled with
    purposeful aperture use): ``a * (1 + H) / 2 - w / 2``.

    a: 1 if the final ``<answer>`` matches the GT; H: IoU of the last action's box with the
    evidence E (the box enclosing the GT boxes), 0 without actions; w: the share of actions
    that are wasted, i.e. malformed or not touching E. Range [-0.5, 1]: a right answer
    without looking gets 0.5, a right answer whose last aperture is exactly E gets 1.
    """
    out = []
    for c, gt, boxes in zip(completions, answer, gt_boxes):
        text = transcript(c)
        match = re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)
        a = float(bool(match) and answers_match(match[-1].strip(), gt))
        actions, evidence = _action_boxes(text), B.enclosing(boxes)
        h = B.iou(actions[-1], evidence) if actions and actions[-1] else 0.0
        wasted = sum(b is None or B.iou(b, evidence) == 0 for b in actions) / len(actions) if actions else 0.0
        out.append(a * (1 + h) / 2 - wasted / 2)
    return out


def select(weights: dict[str, float], progress_bonus: bool = True, judge=None,
           reward_set: str = "groundcot") -> tuple[list, list[float]]:
    """The reward functions named in ``weights``, and their weights, in TRL's form.

    ``reward_set`` sifthinker swaps format, answer, box and depth for SIFThinker's exact
    forms (``trainer.sifthinker``; ``judge`` then is a ``GradedJudge``).
    """
    table = {"format": format_reward, "answer": ProgressAnswerReward(judge) if progress_bonus or judge else answer_reward,
             "box": box_reward, "depth": depth_reward, "boxed_answer": boxed_answer_reward,
             "consistency": consistency_reward, "aperture": aperture_reward}
    if reward_set == "sifthinker":
        from groundcot.trainer import sifthinker as S

        table.update(format=S.format_reward, answer=S.BatchMeanProgress(judge), box=S.box_reward,
                     depth=S.depth_reward)
    names = [n for n, w in weights.items() if w]
    return [table[n] for n in names], [float(weights[n]) for n in names]
