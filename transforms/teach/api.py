"""A VLM teacher behind any OpenAI-compatible endpoint (vLLM, hosted APIs).

Per record, the conversation is: the style's request (its lines and images), the reply
turned into the style's turns, the validation checks, and, if the reply breaks a rule,
one re-ask naming the violation. An optional LLM judge accepts answers that differ only
in wording. HTTP, retries, budget and cache are ``ChatClient``'s.
"""
from __future__ import annotations

import asyncio

from groundcot import prompts
from groundcot.schemas.cot import CotError
from groundcot.schemas.record import Record
from groundcot.transforms.styles import style_of
from groundcot.transforms.teach import STAGE
from groundcot.transforms.teach.client import ChatClient, Ledger, TeacherError
from groundcot.transforms.validate import check


def reask_messages(messages: list[dict], reply: str, reason: str, detail: str) -> list[dict]:
    """The conversation so far plus one request to fix the named violation."""
    fix = prompts.render("teacher_reask", reason=reason, detail=detail)
    return messages + [{"role": "assistant", "content": reply}, {"role": "user", "content": fix}]


class ApiTeacher:
    """The ``Teacher`` that asks a VLM; ``prepare`` builds the request, ``write`` does the I/O."""

    def __init__(self, cfg, validate_params: dict, run_id: str = "run"):
        self.cfg, self.validate_params = cfg, validate_params
        self.name = f"openai:{cfg.model}"
        self.ledger = Ledger()
        self.client = ChatClient(cfg, run_id, self.ledger)
        self.inline, self.max_pending = False, 2 * cfg.max_concurrency

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()

    def redact(self, text: str) -> str:
        return self.client.redact(text)

    def prepare(self, record: Record) -> list[dict]:
        return style_of(record).request(record, self.cfg.image_max_side, self.cfg.image_format)

    async def judge(self, record: Record) -> bool:
        try:
            candidate = style_of(record).answer(record)
        except (CotError, IndexError, TypeError):
            return False
        prompt = prompts.render("judge", question=record.question, reference=record.answer, candidate=candidate)
        reply = await self.client.complete([{"role": "user", "content": prompt}],
                                           self.cfg.judge_model or self.cfg.model)
        self.ledger.inc("judge_calls")
        return reply.strip().lower().startswith("yes")

    async def _attempt(self, record: Record, messages: list[dict]) -> tuple[str, tuple[str, str] | None]:
        reply = await self.client.complete(messages)
        record.turns = style_of(record).reply(record, reply)
        record.cot = "\n\n".join(record.turns)
        problem = await asyncio.to_thread(check, record, **self.validate_params)  # CPU: off the loop
        if problem and problem[0] == "answer_mismatch" and self.cfg.judge and await self.judge(record):
            record.answer_judged = True
            problem = await asyncio.to_thread(check, record, **self.validate_params)
        return reply, problem

    async def write(self, record: Record, messages: list[dict]) -> Record:
        """Write the record's trajectory; a failed call rejects it with the reason."""
        record.teacher = self.name
        try:
            reply, problem = await self._attempt(record, messages)
            if problem and self.cfg.reask:
                self.ledger.inc("reasks")
                record.answer_judged = False
                await self._attempt(record, reask_messages(messages, reply, *problem))
        except TeacherError as err:
            record.reject(STAGE, err.reason, err.detail)
        return record
