"""The HTTP side of an API teacher: one ``openai`` async client per worker, bounded
concurrency, the client's own retries (exponential backoff with jitter, Retry-After, on
408/409/429/5xx, timeouts and connection errors) with every attempt counted through
httpx event hooks, a request budget, the response cache, and a ledger of what it cost.

The API key is read from the environment on the worker and redacted from anything this
module reports.
"""
from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter

from groundcot.transforms.teach.cache import ResponseCache, cache_key

_BUDGETS: dict[str, list[int]] = {}
_BUDGET_LOCK = threading.Lock()


class TeacherError(Exception):
    """A call that failed for good; ``reason`` becomes the record's rejection reason."""

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


class ChatClient:
    """``complete(messages)`` -> the reply text, from the cache or one call (with retries)."""

    def __init__(self, cfg, run_id: str, ledger: Ledger):
        self.cfg, self.run_id, self.ledger = cfg, run_id, ledger
        self.cache = ResponseCache(cfg.cache)
        self.client = None

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

    def params(self) -> dict:
        return {"temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens, **self.cfg.extra_body}

    async def complete(self, messages: list[dict], model: str | None = None) -> str:
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
