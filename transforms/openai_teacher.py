"""A VLM teacher behind any OpenAI-compatible endpoint (vLLM, hosted APIs).

Per record: one call with the chain (lines + boxed images). The reply's CoT is checked
with the validation rules, and if it breaks one, the teacher is asked once more with the
violation named. An optional LLM judge accepts answers that differ only in wording.
Retries (exponential backoff with jitter, honouring Retry-After, on 408/409/429/5xx,
timeouts and connection errors) are the ``openai`` client's own. Every attempt is
counted through httpx event hooks. Responses are cached by content hash. The API key is
read from the environment on the worker, and is redacted from anything this module
writes.
"""
from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter

from groundcot import prompts
from groundcot.schemas.cot import CotError, parse_cot
from groundcot.schemas.record import Record
from groundcot.transforms.response_cache import ResponseCache, cache_key
from groundcot.transforms.teacher_request import build_messages, reask_messages, reply_turns
from groundcot.transforms.validate import check

STAGE = "teacher"
_BUDGETS: dict[str, list[int]] = {}
_BUDGET_LOCK = threading.Lock()


class TeacherError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class Ledger:
    """Thread-safe counters; ``take`` hands the deltas to Beam metrics on the DoFn's thread."""

    def __init__(self):
        self._counts: Counter = Counter()
        self._lock = threading.Lock()

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def take(self) -> dict[str, int]:
        with self._lock:
            counts, self._counts = dict(self._counts), Counter()
        return counts


def take_budget(run_id: str, budget: int | None) -> bool:
    """One request from the job's budget (shared by the workers of one process)."""
    if budget is None:
        return True
    with _BUDGET_LOCK:
        left = _BUDGETS.setdefault(run_id, [budget])
        if left[0] <= 0:
            return False
        left[0] -= 1
        return True


def api_key(env_name: str | None) -> str | None:
    return os.environ.get(env_name) if env_name else None


def final_answer(record: Record) -> str | None:
    """The answer a record's trajectory states, whatever its style (None if unreadable)."""
    from groundcot.schemas.styles import parse_aperture, parse_mgpo, parse_textual

    try:
        style = record.style or "sif"
        if style == "sif":
            return parse_cot(record.cot or "", require_depth=False).answer
        if style == "textual":
            return parse_textual(record.turns[0])[1]
        if style == "mgpo":
            return parse_mgpo(record.turns[0], record.turns[1], tuple(record.frame))[1]
        return parse_aperture(record.turns)[1]
    except (CotError, IndexError, TypeError):
        return None


class OpenAITeacher:
    """``prepare(record)`` builds the request (CPU, caller's thread); ``run`` does the I/O (async)."""

    def __init__(self, cfg, validate_params: dict, run_id: str = "run"):
        self.cfg, self.validate_params, self.run_id = cfg, validate_params, run_id
        self.name = f"openai:{cfg.model}"
        self.ledger = Ledger()
        self.cache = ResponseCache(cfg.cache)
        self.client = None

    # -- lifecycle (inside the event loop) -------------------------------------------------

    async def open(self) -> None:
        import httpx2
        import openai

        self._key = api_key(self.cfg.api_key_env)
        hooks = {"request": [self._on_request], "response": [self._on_response]}
        limits = httpx2.Limits(max_connections=self.cfg.max_concurrency,
                               max_keepalive_connections=self.cfg.max_concurrency)
        self.client = openai.AsyncOpenAI(
            base_url=self.cfg.base_url, api_key=self._key or "EMPTY", timeout=self.cfg.timeout_s,
            max_retries=self.cfg.max_retries,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits, event_hooks=hooks, timeout=self.cfg.timeout_s))
        self.semaphore = asyncio.Semaphore(self.cfg.max_concurrency)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def _on_request(self, request) -> None:
        self.ledger.inc("attempts")

    async def _on_response(self, response) -> None:
        self.ledger.inc(f"status_{response.status_code}")

    def redact(self, text: str) -> str:
        key = getattr(self, "_key", None) or api_key(self.cfg.api_key_env)
        return text.replace(key, "***") if key and len(key) >= 4 else text

    # -- one call ---------------------------------------------------------------------------

    def params(self) -> dict:
        return {"temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens, **self.cfg.extra_body}

    async def complete(self, messages: list[dict], model: str | None = None) -> str:
        """The reply text for ``messages``: from the cache, or one call (with the client's retries)."""
        import openai
        from openai.types.chat import ChatCompletion

        model = model or self.cfg.model
        key = cache_key({"model": model, "messages": messages, "params": self.params()})
        cached = await asyncio.to_thread(self.cache.get, key) if self.cache.root else None
        if cached is not None:
            self.ledger.inc("cache_hits")
            return cached["content"]
        self.ledger.inc("cache_misses")
        if not take_budget(self.run_id, self.cfg.request_budget):
            raise TeacherError("teacher_budget_exhausted", f"request_budget {self.cfg.request_budget} used up")
        async with self.semaphore:
            self.ledger.inc("requests")
            try:
                # The client's documented custom-request path: same auth, retries, errors and
                # response parsing as chat.completions.create, without its per-call walk
                # over every message part (milliseconds per call with images inline).
                reply = await self.client.post("/chat/completions", cast_to=ChatCompletion,
                                               body={"model": model, "messages": messages, **self.params()})
            except openai.APIStatusError as err:
                status = err.status_code
                kind = "rate_limited" if status == 429 else "server_error" if status >= 500 else f"http_{status}"
                raise self._failure(kind, err) from None
            except openai.APITimeoutError as err:
                raise self._failure("timeout", err) from None
            except openai.APIConnectionError as err:
                raise self._failure("connection_error", err) from None
        content = (reply.choices[0].message.content or "") if reply.choices else ""
        if reply.usage is not None:
            self.ledger.inc("prompt_tokens", reply.usage.prompt_tokens or 0)
            self.ledger.inc("completion_tokens", reply.usage.completion_tokens or 0)
        if not content.strip():
            raise self._failure("empty_reply", ValueError("the reply has no text"))
        if self.cache.root:
            await asyncio.to_thread(self.cache.put, key, {"content": content})
        return content

    def _failure(self, kind: str, err: Exception) -> TeacherError:
        self.ledger.inc(f"failures.{kind}")
        return TeacherError(f"teacher_{kind}", self.redact(f"{type(err).__name__}: {err}")[:400])

    # -- one record -------------------------------------------------------------------------

    def prepare(self, record: Record) -> list[dict]:
        return build_messages(record, self.cfg.image_max_side, self.cfg.image_format)

    async def judge(self, record: Record) -> bool:
        candidate = final_answer(record)
        if candidate is None:
            return False
        prompt = prompts.render("judge", question=record.question, reference=record.answer, candidate=candidate)
        reply = await self.complete([{"role": "user", "content": prompt}], self.cfg.judge_model or self.cfg.model)
        self.ledger.inc("judge_calls")
        return reply.strip().lower().startswith("yes")

    async def _write(self, record: Record, messages: list[dict]) -> tuple[str, tuple[str, str] | None]:
        reply = await self.complete(messages)
        record.turns = reply_turns(record, reply)
        record.cot = "\n\n".join(record.turns)
        problem = await asyncio.to_thread(check, record, **self.validate_params)  # CPU: off the loop
        if problem and problem[0] == "answer_mismatch" and self.cfg.judge and await self.judge(record):
            record.answer_judged = True
            problem = await asyncio.to_thread(check, record, **self.validate_params)
        return reply, problem

    async def run(self, record: Record, messages: list[dict]) -> Record:
        """Write the record's CoT; never raises (failures become rejections)."""
        record.teacher = self.name
        try:
            reply, problem = await self._write(record, messages)
            if problem and self.cfg.reask:
                self.ledger.inc("reasks")
                record.answer_judged = False
                await self._write(record, reask_messages(messages, reply, *problem))
        except TeacherError as err:
            record.reject(STAGE, err.reason, err.detail)
        except Exception as err:  # noqa: BLE001 - a record's failure must not stop the run
            record.reject(STAGE, f"error_{type(err).__name__}", self.redact(str(err))[:400])
        return record
