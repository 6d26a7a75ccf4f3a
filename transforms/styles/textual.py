"""textual (iVGR's textual stream): the same reasoning in words, without coordinates:
``<think>..</think><answer>..</answer>``. Its row shares ``id`` with the sif row."""
from __future__ import annotations

import re

from groundcot.schemas.cot import CotError, plain_text
from groundcot.schemas.record import Record
from groundcot.transforms.styles.base import Checks, Problem, Style, answer_problem
from groundcot.transforms.styles.prefix import Request
from groundcot.transforms.styles.sif import chain_request
from groundcot.transforms.styles.words import observe

_COORDS = re.compile(r"\[\s*-?\d+(\.\d+)?\s*,\s*-?\d+(\.\d+)?\s*,")
_TEXTUAL = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.S)
BIBTEX = ("@inproceedings{zhang2026ivgr,\n  title={iVGR: Internalizing Visually Grounded Reasoning for MLLMs with "
          "Reinforcement Learning},\n  author={Zhang, Chang-Bin and Zhong, Yujie and Zhang, Qiang and Han, Kai},\n"
          "  booktitle={ICML},\n  year={2026},\n  note={arXiv:2605.31096}\n}")


def parse_textual(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a textual trajectory."""
    m = _TEXTUAL.fullmatch(text)
    if m is None:
        raise CotError("not_think_then_answer", "expected <think>...</think><answer>...</answer>")
    think = plain_text(m.group(1), "think")
    if _COORDS.search(think) or "bbox" in think:
        raise CotError("coordinates_in_text", "the textual style has no coordinates")
    return think, plain_text(m.group(2), "answer")


class Textual(Style):
    name = "textual"
    reward_parts = ("answer",)
    columns = ("chain",)
    twin = "sif"
    card_text = ("iVGR's textual stream: the same reasoning in words, without boxes (pairs with the sif row of the "
                 "same `id`).")
    citation = ("iVGR", BIBTEX)
    teacher_prompt, train_prompt = "teacher_textual", "textual_train"

    def template(self, record: Record) -> list[str]:
        focus = [s for s in record.chain if s.kind != "distractor"]
        thoughts = " ".join(observe(s, record, numbers=False) for s in focus)
        return [f"<think>{thoughts}</think>\n<answer>{record.answer}</answer>"]

    def request(self, record: Record, prefix: Request) -> Request:
        return chain_request(self, prefix)

    def answer(self, record: Record) -> str:
        if len(record.turns) != 1:
            raise CotError("turn_count", f"{len(record.turns)} assistant turns, textual has 1")
        return parse_textual(record.turns[0])[1]

    def check(self, record: Record, checks: Checks) -> Problem:
        return answer_problem(record, self.answer(record))
