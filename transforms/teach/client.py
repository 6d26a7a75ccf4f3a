"""The HTTP side of an API teacher: per worker, one ``openai`` async client (built by
``connection.make_client``) for the URL, headers and error types of a chat completion, and one
``aiohttp`` session (``connection.make_session``) that sends the calls; bounded concurrency,
retries (``retry``: backoff with jitter, Retry-After) of every transient failure, malformed
replies (``reply``) and whole-attempt timeouts included, every attempt and reply status counted
here, a request budget, the response cache, a ledger of what it cost. ``batch.BatchClient`` is
the same client writing requests down instead of sending them.

Each call is the request the SDK's builder gives (``chat_request``, worked out once) with the
JSON it would send (``dumps``), posted through the session: the SDK's per-call path and httpx on
top of aiohttp cost as much CPU as the rest of a call. Failures become the SDK's errors (a
timeout ``APITimeoutError``, a refused, reset or cut connection ``APIConnectionError``, an HTTP
error the status error the SDK makes from an ``httpx2.Response`` built only then), so
``retry.classify`` and ``error_body`` read them as before. That leans on a few of the SDK's
private names; a unit test holds what an endpoint receives equal to what ``client.post`` sends.

The API key is read on the worker and redacted from replies before anything stores them, and
from anything this module reports.
"""
from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter

from groundcot.transforms.cache import Cache, json_key
from groundcot.transforms.teach.connection import make_client, make_session
from groundcot.transforms.teach.reply import BadReply, parse_reply
from groundcot.transforms.teach.retry import backoff, classify
from groundcot.transforms.teach.tokens import image_cost

_BUDGETS: dict[str, list[int]] = {}
_SPENT: dict[str, list[float]] = {}  # run id -> USD the calls made so far cost (per process)
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

    def add(self, counts: dict[str, int]) -> None:
        """Several counts at once (one lock)."""
        with self._lock:
            self._counts.update(counts)

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


def call_cost(cost, prompt_tokens: int, completion_tokens: int) -> float:
    """USD of one call at the ``cost`` section's prices (0 without them)."""
    if cost.price_prompt_per_mtok is None or cost.price_completion_per_mtok is None:
        return 0.0
    return prompt_tokens / 1e6 * cost.price_prompt_per_mtok + completion_tokens / 1e6 * cost.price_completion_per_mtok


def spend(run_id: str, cap: float | None, usd: float = 0.0) -> bool:
    """Add ``usd`` to the job's spending; False once it has reached ``cap`` (no new call starts)."""
    with _BUDGET_LOCK:
        spent = _SPENT.setdefault(run_id, [0.0])
        spent[0] += usd
        return cap is None or spent[0] < cap


def error_body(err: Exception) -> str:
    """The reason an endpoint gave in a refusal's body: OpenAI's ``{"error": {"message"}}``,
    FastAPI's ``{"detail": ...}`` (text or a list of field errors), or the body's text; "" if none.

    >>> class E(Exception): body = {"detail": "Unexpected fields in the request: {'top_k'}"}
    >>> error_body(E())
    "Unexpected fields in the request: {'top_k'}"
    >>> E.body = {"detail": [{"loc": ["body", "model"], "msg": "Field required"}]}
    >>> error_body(E())
    'body.model: Field required'
    """
    body = getattr(err, "body", None)  # openai's APIStatusError: the JSON body ("error" unwrapped) or its text
    if isinstance(body, dict):
        body = body.get("message") or body.get("detail") or body.get("error") or body
    if isinstance(body, list):  # FastAPI's validation errors
        body = "; ".join(".".join(map(str, e.get("loc", ()))) + ": " + str(e.get("msg", e)) if isinstance(e, dict)
                         else str(e) for e in body)
    if isinstance(body, dict):
        body = body.get("message") or json.dumps(body)
    return " ".join(str(body).split()) if body else ""


def chat_request(client) -> tuple[str, list[tuple[str, str]]]:
    """The URL and headers ``client`` (an ``openai.AsyncOpenAI``) sends a chat completion with,
    from its own request builder (worked out once: they are the same for every call)."""
    from openai._models import FinalRequestOptions

    options = FinalRequestOptions.construct(method="post", url="/chat/completions", json_data={})
    request = client._build_request(options)
    skip = ("content-length", "host")  # aiohttp sets both per request
    return str(request.url), [(k, v) for k, v in request.headers.multi_items() if k.lower() not in skip]


def dumps(body: dict) -> bytes:
    """The JSON the ``openai`` client sends for ``body``."""
    from openai._utils._json import openapi_dumps

    return openapi_dumps(body)


class ChatClient:
    """``complete(messages)`` -> the reply text, from the cache or one call (with retries)."""

    keyed = False  # whether every body needs its key (a batch does: it is the line's custom_id)

    def __init__(self, cfg, run_id: str, ledger: Ledger):
        self.cfg, self.run_id, self.ledger = cfg, run_id, ledger
        self.conn, self.limits, self.cost = cfg.connection, cfg.limits, cfg.cost
        self.cache = Cache(cfg.cache)
        self.client = self.session = None
        self._key = None

    async def open(self) -> None:
        self._key = self.conn.key()
        # the SDK client gives the URL, headers and error types; the calls go out through our session
        self.client = make_client(self.conn, asynchronous=True, max_retries=0, key=self._key)  # retries: _call
        self.url, self.headers = chat_request(self.client)
        self.session = make_session(self.url, self.limits.max_concurrency, self.headers)
        self.semaphore = asyncio.Semaphore(self.limits.max_concurrency)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.client is not None:
            await self.client.close()

    def redact(self, text: str) -> str:
        return self.conn.redact(text, self._key)

    def params(self) -> dict:
        req = self.cfg.request
        return {"temperature": req.temperature, "max_tokens": req.max_tokens, **req.extra_body}

    def body(self, messages: list[dict], model: str | None = None, keyed: bool = True) -> tuple[str, dict]:
        """The request body and its cache key (also its ``custom_id`` in batch shards; "" unless
        ``keyed``: hashing a body with its images costs CPU only a cache or a batch needs)."""
        model = model or self.conn.model
        key = json_key({"model": model, "messages": messages, "params": self.params()}) if keyed else ""
        return key, {"model": model, "messages": messages, **self.params()}

    async def complete(self, messages: list[dict], model: str | None = None, sizes=()) -> str:
        """The reply to ``messages`` (``sizes``: its images' (w, h), for the ledger)."""
        key, body = self.body(messages, model, keyed=bool(self.cache.root) or self.keyed)
        cached = await asyncio.to_thread(self.cache.get, key) if self.cache.root else None
        if cached is not None:
            self.ledger.inc("cache_hits")
            if cached.get("via") == "batch":  # a batch reply: this run is the one that asked for it
                self.ledger.inc("batch_replies")
                self.count_usage(cached.get("usage") or {})
            return self.redact(cached["content"])  # entries written before redaction existed
        self.ledger.inc("cache_misses")
        content = await self.ask(key, body, sizes)
        if self.cache.root:
            await asyncio.to_thread(self.cache.put, key, {"content": content})
        return content

    async def ask(self, key: str, body: dict, sizes) -> str:
        """One call within the budgets: the reply's text, redacted, counted."""
        budget, cap = self.limits.request_budget, self.cost.max_cost_usd
        if not take_budget(self.run_id, budget):
            raise TeacherError("teacher_budget_exhausted", f"request_budget {budget} used up")
        async with self.semaphore:
            if not spend(self.run_id, cap):
                raise TeacherError("teacher_budget_exhausted", f"max_cost_usd {cap:g} spent")
            self.ledger.add({"requests": 1, **image_cost(sizes, self.cost.image_token_rule)})
            content, usage = await self._call(body)
        self.count_usage(usage)
        content = self.redact(content)  # before the cache, the rows or rejected/ can keep it
        if not content.strip():
            raise self._failure("empty_reply", ValueError("the reply has no text"), 1)
        return content

    def count_usage(self, usage: dict) -> None:
        """A reply's ``usage`` into the ledger and the job's spending."""
        prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
        spend(self.run_id, self.cost.max_cost_usd, call_cost(self.cost, prompt, completion))
        self.ledger.add({"prompt_tokens": prompt, "completion_tokens": completion})
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and details.get("cached_tokens"):
            self.ledger.inc("cached_prompt_tokens", details["cached_tokens"])

    async def _call(self, body: dict) -> tuple[str, dict]:
        """The reply's text and usage, retrying transient failures up to ``max_retries`` times."""
        for retry in range(self.conn.max_retries + 1):
            try:
                # the whole attempt, however slowly the bytes come (the session has no timeouts);
                # asyncio.timeout, not wait_for: no extra task per attempt
                async with asyncio.timeout(self.conn.timeout_s):
                    return await self._attempt(body)
            except Exception as err:  # noqa: BLE001 - classify re-raises what is not a call failure
                kind, transient, told = classify(err)
                self.ledger.inc(f"errors.{kind}")
                if isinstance(err, BadReply):
                    self.ledger.inc(f"errors.bad_reply.{err.what}")
                if not transient or retry == self.conn.max_retries:
                    raise self._failure(kind, err, retry + 1) from None
            await asyncio.sleep(backoff(retry, told, self.conn.retry_backoff_s))
        raise AssertionError("unreachable")

    async def _attempt(self, body: dict) -> tuple[str, dict]:
        """One call: the ``openai`` client's URL, headers and JSON, sent through our aiohttp session
        (the SDK's per-call path and httpx's cost as much CPU as the rest of a call), its failures
        raised as the SDK's errors; the body is checked here (parse_reply), so a malformed one is a
        named, retried failure."""
        import aiohttp

        self.ledger.inc("attempts")
        try:
            async with self.session.post(self.url, data=dumps(body)) as response:
                self.ledger.inc(f"status_{response.status}")
                content = await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:  # not ours: that one cancels this call
            raise self._transport_error(err) from err
        if response.status >= 400:
            raise self._status_error(response, content)
        return parse_reply(content, response.headers.get("content-type", ""))

    def _transport_error(self, err: Exception) -> Exception:
        """The SDK's error for a failed exchange: a timeout, or a refused, reset or cut connection."""
        import httpx2
        import openai

        request = httpx2.Request("POST", self.url)
        if isinstance(err, asyncio.TimeoutError):
            return openai.APITimeoutError(request=request)
        return openai.APIConnectionError(request=request)

    def _status_error(self, response, content: bytes) -> Exception:
        """The SDK's status error (its type, body and headers) for an HTTP error reply."""
        import httpx2

        # the body is decoded already: no content-encoding, and httpx counts its own length
        headers = [(k, v) for k, v in response.raw_headers if k.lower() not in (b"content-encoding", b"content-length")]
        reply = httpx2.Response(response.status, headers=headers, content=content,
                                request=httpx2.Request("POST", self.url))
        return self.client._make_status_error_from_response(reply)

    def _failure(self, kind: str, err: Exception, attempts: int) -> TeacherError:
        self.ledger.inc(f"failures.{kind}")
        text = f"{type(err).__name__}: {str(err) or f'no whole reply within timeout_s={self.conn.timeout_s}'}"
        if isinstance(getattr(err, "status_code", None), int) and (reason := error_body(err)):
            text = f"{type(err).__name__}: HTTP {err.status_code}: {reason}"
        tried = f" (after {attempts} attempts)" if attempts > 1 else ""
        return TeacherError(f"teacher_{kind}", self.redact(text)[:400] + tried)
