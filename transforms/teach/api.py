"""The online backend: a VLM teacher behind any OpenAI-compatible endpoint (vLLM, hosted APIs),
and its config section (``teacher: {kind: openai, connection: ..., limits: ..., ...}``).

Per record, the conversation is: the style's request (its lines and images), the reply
turned into the style's turns, the validation checks, and, if the reply breaks a rule,
one re-ask naming the violation. An optional LLM judge accepts answers that differ only
in wording. HTTP, retries, budget and cache are ``ChatClient``'s (``batch.BatchClient``'s
when ``batch.enabled``: the requests are written down, not sent).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from groundcot import prompts
from groundcot.schemas.cot import CotError
from groundcot.schemas.record import Record
from groundcot.transforms.styles import style_of
from groundcot.transforms.styles.prefix import Pictures, Request, shared
from groundcot.transforms.teach.backend import STAGE, Backend
from groundcot.transforms.teach.batch import Batch, BatchClient
from groundcot.transforms.teach.client import ChatClient, Ledger, TeacherError
from groundcot.transforms.teach.connection import Connection
from groundcot.transforms.validate import check


def reask_messages(messages: list[dict], reply: str, reason: str, detail: str) -> list[dict]:
    """The conversation so far plus one request to fix the named violation."""
    fix = prompts.render("teacher_reask", reason=reason, detail=detail)
    return messages + [{"role": "assistant", "content": reply}, {"role": "user", "content": fix}]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(Section):
    max_concurrency: int = Field(32, ge=1, description="Requests in flight per teacher DoFn instance (one per "
                                 "worker thread running the stage); --check prints the job-wide bound.")
    request_budget: Optional[int] = Field(None, ge=0, description="Most API calls per worker process (the job's "
                                          "whole budget on the local runner with one worker; --check prints the "
                                          "job-wide bound); records past it are rejected.")


class RequestSettings(Section):
    temperature: float = Field(0.2, ge=0, description="Sampling temperature.")
    max_tokens: int = Field(2048, ge=1, description="Completion length limit.")
    extra_body: dict[str, object] = Field(default_factory=dict, description="Other request parameters "
                                          "(e.g. top_p, seed), sent as they are and part of the cache key.")
    images: Literal["one", "per_step"] = Field("one", description="one: the image once per record, every chain "
                                               "step's boxes drawn and numbered in its own colour (a legend in the "
                                               "text), plus only the crops a style needs; per_step: one image per "
                                               "chain step (SIFThinker's shape, 3-5x the image tokens).")
    image_max_side: int = Field(1024, ge=28, description="Images are downscaled to this longest side before "
                                                         "sending (boxes are normalised, so unchanged).")
    image_format: Literal["jpeg", "png"] = Field("jpeg", description="Encoding of the images sent.")
    crop_min_zoom: float = Field(1.5, ge=1.0, description="A rectangle crop (mgpo's region, aperture's zooms) "
                                 "is sent only when it shows its region at least this many times larger than the "
                                 "downscaled image does; otherwise its pixels are already in the image and the "
                                 "text points there. Segment crops are always sent. 1: always send crops.")


class Cost(Section):
    price_prompt_per_mtok: Optional[float] = Field(None, ge=0, description="USD per million prompt tokens, "
                                                   "for the cost estimate in stats.json.")
    price_completion_per_mtok: Optional[float] = Field(None, ge=0, description="USD per million completion tokens.")
    max_cost_usd: Optional[float] = Field(None, gt=0, description="Stop calling once the calls made cost this much "
                                          "(from usage and the two prices, which it needs; per worker process "
                                          "on cluster runners); later records are rejected as "
                                          "teacher_budget_exhausted.")
    image_token_rule: Literal["qwen2.5-vl", "openai-tiles"] = Field(
        "qwen2.5-vl", description="How the ledger and --check count image tokens: Qwen2.5-VL's 28x28-pixel "
                                  "tokens, or OpenAI's 512-pixel tiles (85 + 170 per tile).")

    @model_validator(mode="after")
    def _cap_needs_prices(self):
        if self.max_cost_usd is not None and None in (self.price_prompt_per_mtok, self.price_completion_per_mtok):
            raise ValueError("max_cost_usd needs price_prompt_per_mtok and price_completion_per_mtok")
        return self


class Judge(Section):
    enabled: bool = Field(False, description="Let an LLM judge accept answers that differ from the GT only in "
                                             "wording.")
    model: Optional[str] = Field(None, description="Judge model (default: the teacher model).")


SECTIONS = {"connection": Connection, "limits": Limits, "request": RequestSettings, "cost": Cost, "batch": Batch}
# the flat keys of the old layout -> where each lives now
MOVED = {**{key: f"{name}.{key}" for name, model in SECTIONS.items() for key in model.model_fields},
         "base_url": "connection.base_url", "model": "connection.model", "mode": "batch.enabled",
         "batch_shard_requests": "batch.shard_requests", "batch_completion_window": "batch.completion_window",
         "judge_model": "judge.model"}
for _same in ("enabled", "shard_requests", "completion_window"):
    MOVED.pop(_same)


class OpenAIConfig(Section):
    """``teacher: {kind: openai, ...}``: a VLM behind an OpenAI-compatible API, in named sub-sections."""

    kind: Literal["openai"] = Field(description="A VLM behind an OpenAI-compatible API (vLLM server, hosted API).")
    connection: Connection = Field(description="Where the endpoint is, the key, timeouts and retries.")
    limits: Limits = Limits()
    request: RequestSettings = RequestSettings()
    cost: Cost = Cost()
    batch: Batch = Batch()
    judge: Judge = Judge()
    cache: Optional[str] = Field(None, description="Response cache folder or bucket prefix: re-runs never pay "
                                                   "twice for the same call.")
    reask: bool = Field(True, description="Ask once more, naming the violation, when a reply fails validation.")

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, data):
        """A key of the old flat layout: one line saying where it moved."""
        if isinstance(data, dict):
            for key in data:
                if key in MOVED:
                    raise PydanticCustomError("moved", f"{key} has moved to teacher.{MOVED[key]}")
            if isinstance(data.get("judge"), bool):
                raise PydanticCustomError("moved", "judge is a section now: write teacher.judge.enabled")
        return data


PREFIXES = 64  # records whose shared prefix a teacher keeps


class Endpoint:
    """What a ``Teacher``-protocol object that calls an OpenAI-compatible endpoint has: its ledger, a
    live or batch client (``cfg.batch``), at most twice ``max_concurrency`` records in flight."""

    def __init__(self, cfg, run_id: str = "run"):
        self.cfg = cfg
        self.ledger = Ledger()
        self.client = (BatchClient if cfg.batch.enabled else ChatClient)(cfg, run_id, self.ledger)
        self.inline, self.max_pending = False, 2 * cfg.limits.max_concurrency

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()

    def redact(self, text: str) -> str:
        return self.client.redact(text)

    def take_batch(self) -> list[dict]:
        """Batch mode: the request lines gathered since the last call (none when calling live)."""
        return self.client.take() if isinstance(self.client, BatchClient) else []


class ApiTeacher(Endpoint):
    """The ``Teacher`` that asks a VLM; ``prepare`` builds the request, ``write`` does the I/O."""

    def __init__(self, cfg, validate_params: dict, run_id: str = "run"):
        super().__init__(cfg, run_id)
        self.validate_params = validate_params
        self.name = f"openai:{cfg.connection.model}"
        req = cfg.request
        self.pictures = Pictures(req.image_max_side, req.image_format, req.images == "per_step", req.crop_min_zoom)
        self._prefixes: OrderedDict[str, Request] = OrderedDict()  # record id -> its shared prefix
        self._lock = threading.Lock()

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
        """The style's request (CPU work, on the DoFn's event loop): the shared prefix, then the style's part."""
        return style_of(record).request(record, self.prefix(record))

    async def judge(self, record: Record) -> bool:
        try:
            candidate = style_of(record).answer(record)
        except (CotError, IndexError, TypeError):
            return False
        prompt = prompts.render("judge", question=record.question, reference=record.answer, candidate=candidate)
        reply = await self.client.complete([{"role": "user", "content": prompt}],
                                           self.cfg.judge.model or self.cfg.connection.model)
        self.ledger.inc("judge_calls")
        return reply.strip().lower().startswith("yes")

    async def _attempt(self, record: Record, messages: list[dict], sizes) -> tuple[str, tuple[str, str] | None]:
        reply = await self.client.complete(messages, sizes=sizes)
        record.turns = style_of(record).reply(record, reply)
        record.cot = "\n\n".join(record.turns)
        problem = check(record, **self.validate_params)  # on the loop: a thread hop costs more (one GIL)
        if problem and problem[0] == "answer_mismatch" and self.cfg.judge.enabled and await self.judge(record):
            record.answer_judged = True
            problem = check(record, **self.validate_params)
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


BACKEND = Backend(OpenAIConfig, ApiTeacher)
