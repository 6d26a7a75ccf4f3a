"""textual (iVGR's textual stream): the same reasoning in words, without coordinates:
``<think>..</think><answer>..</answer>``. Its row shares ``id`` with the sif row."""
from __future__ import annotations

from groundcot.schemas.cot import CotError
from groundcot.schemas.record import Record
from groundcot.schemas.styles import parse_textual
from groundcot.transforms.styles.base import Checks, Problem, Style, answer_problem
from groundcot.transforms.styles.prefix import Request
from groundcot.transforms.styles.sif import chain_request
from groundcot.transforms.styles.words import observe


class Textual(Style):
    name = "textual"
    reward_parts = ("answer",)

    def template(self, record: Record) -> list[str]:
        focus = [s for s in record.chain if s.kind != "distractor"]
        thoughts = " ".join(observe(s, record, numbers=False) for s in focus)
        return [f"<think>{thoughts}</think>\n<answer>{record.answer}</answer>"]

    def request(self, record: Record, prefix: Request) -> Request:
        return chain_request(record, prefix, "teacher_textual")

    def answer(self, record: Record) -> str:
        if len(record.turns) != 1:
            raise CotError("turn_count", f"{len(record.turns)} assistant turns, textual has 1")
        return parse_textual(record.turns[0])[1]

    def check(self, record: Record, checks: Checks) -> Problem:
        return answer_problem(record, self.answer(record))
