"""A VLM teacher behind any OpenAI-compatible endpoint (vLLM, hosted APIs).

Per record, the conversation is: the style's request (its lines and images), the reply
turned into the style's turns, the validation checks, and, if the reply breaks a rule,
one re-ask naming the violation. An optional LLM judge accepts answers that differ only
in wording. HTTP, retries, budget and cache are ``ChatClient``'s.
"""
from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict

from groundcot import prompts
from groundcot.schemas.cot import CotError
from groundcot.schemas.record import Record
from groundcot.transforms.styles import style_of
from groundcot.transforms.styles.prefix import Pictures, Request, shared
from groundcot.transforms.teach import STAGE
from groundcot.transforms.teach.client import ChatClient, Ledger, TeacherError
from groundcot.transforms.validate import check


def reask_messages(messages: list[dict], reply: str, reason: str, detail: str) -> list[dict]:
    """The conversation so far plus one request to fix the named violation."""
    fix = prompts.render("teacher_reask", reason=reason, detail=detail)
    return messages + [{"role": "assistant", "content": reply}, {"role": "user", "content": fix}]


PREFIXES = 64  # records whose shared prefix a teacher keeps


class ApiTeacher:
    """The ``Teacher`` that asks a VLM; ``prepare`` builds the request, ``write`` does the I/O."""

    def __init__(self, cfg, validate_params: dict, run_id: str = "run"):
        self.cfg, self.validate_params = cfg, validate_params
        self.name = f"openai:{cfg.model}"
        self.ledger = Ledger()
        self.client = ChatClient(cfg, run_id, self.ledger)
        self.inline, self.max_pending = False, 2 * cfg.max_concurrency
        self.pictures = Pictures(cfg.image_max_side, cfg.image_format, getattr(cfg, "images", "one") == "per_step",
                                 getattr(cfg, "crop_min_zoom", 1.5))
        self._prefixes: OrderedDict[str, Request] = OrderedDict()  # record id -> its shared prefix
        self._lock = threading.Lock()

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()

    def redact(self, text: str) -> str:
        return self.client.redact(text)

    def take_batch(self) -> list[dict]:
        """Batch mode: the request lines gathered since the last call (each ``custom_id`` once)."""
        lines, self.client.batch = self.client.batch, {}
        return list(lines.values())

    def prefix(self, record: Record) -> Request:
        """The record's shared prefix, built once for all its styles (they arrive close together
        after the fan-out, so a small LRU keeps each until its last style is prepared)."""
        with self._lock:
            found = self._prefixes.get(record.id)
            if found is not None:
                self._prefixes.move_to_end(record.id)
                self.ledger.inc("prefix_reused")
                return found
        built = shared(record, self.pictures)  # image decoded, resized, drawn and encoded: once per record
        with self._lock:
            self._prefixes[record.id] = built
            while len(self._prefixes) > PREFIXES:
                self._prefixes.popitem(last=False)
        self.ledger.inc("prefix_built")
        return built

    def prepare(self, record: Record) -> Request:
        """The style's request (CPU work, off the event loop): the shared prefix, then the style's part."""
        return style_of(record).request(record, self.prefix(record))

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

    async def _attempt(self, record: Record, messages: list[dict], sizes) -> tuple[str, tuple[str, str] | None]:
        reply = await self.client.complete(messages, sizes=sizes)
        record.turns = style_of(record).reply(record, reply)
        record.cot = "\n\n".join(record.turns)
        problem = await asyncio.to_thread(check, record, **self.validate_params)  # CPU: off the loop
        if problem and problem[0] == "answer_mismatch" and self.cfg.judge and await self.judge(record):
            record.answer_judged = True
            problem = await asyncio.to_thread(check, record, **self.validate_params)
        return reply, problem

    async def write(self, record: Record, request: Request) -> Record:
        """Write the record's trajectory; a failed call rejects it with the reason."""
        record.teacher = self.name
        style = record.style or "sif"
        try:
            reply, problem = await self._attempt(record, request.messages, request.sizes)
            if problem and self.cfg.reask:
                self.ledger.inc("reasks")
                self.ledger.inc(f"quality.{style}.reasked")
                record.answer_judged = False
                _, problem = await self._attempt(record, reask_messages(request.messages, reply, *problem),
                                                 request.sizes)
                if problem is None:
                    self.ledger.inc(f"quality.{style}.accepted_after_reask")
        except TeacherError as err:
            record.reject(STAGE, err.reason, err.detail)
        return record
