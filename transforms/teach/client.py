"""The HTTP side of an API teacher: one ``openai`` async client per worker, bounded
concurrency, retries (``retry``: backoff with jitter, Retry-After) of every transient
failure, malformed replies (``reply``) and whole-attempt timeouts included, every attempt
counted through httpx event hooks, a request budget, the response cache, a ledger of what
it cost, and ``check_endpoint``, the health check a job runs before it starts.

The API key is read from the environment on the worker and redacted from replies before
anything stores them, and from anything this module reports.
"""
from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter

from groundcot.transforms.cache import Cache, json_key
from groundcot.transforms.teach.reply import BadReply, parse_reply
from groundcot.transforms.teach.retry import backoff, classify, dropped
from groundcot.transforms.teach.tokens import image_cost

_BUDGETS: dict[str, list[int]] = {}
_SPENT: dict[str, list[float]] = {}  # run id -> USD the calls made so far cost (per process)
_BUDGET_LOCK = threading.Lock()
CHAT_URL = "/v1/chat/completions"  # the url of a batch request line (OpenAI and vLLM)


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


def call_cost(cfg, prompt_tokens: int, completion_tokens: int) -> float:
    """USD of one call at the config's prices (0 without them)."""
    if cfg.price_prompt_per_mtok is None or cfg.price_completion_per_mtok is None:
        return 0.0
    return prompt_tokens / 1e6 * cfg.price_prompt_per_mtok + completion_tokens / 1e6 * cfg.price_completion_per_mtok


def spend(run_id: str, cap: float | None, usd: float = 0.0) -> bool:
    """Add ``usd`` to the job's spending; False once it has reached ``cap`` (no new call starts)."""
    with _BUDGET_LOCK:
        spent = _SPENT.setdefault(run_id, [0.0])
        spent[0] += usd
        return cap is None or spent[0] < cap


def api_key(env_name: str | None, secret: str | None = None) -> str | None:
    """The key: from the secret reference when there is one (read on the worker, see transforms.secrets)."""
    if secret:
        from groundcot.transforms.secrets import resolve
        return resolve(secret)
    return os.environ.get(env_name) if env_name else None


class ChatClient:
    """``complete(messages)`` -> the reply text, from the cache or one call (with retries)."""

    def __init__(self, cfg, run_id: str, ledger: Ledger):
        self.cfg, self.run_id, self.ledger = cfg, run_id, ledger
        self.cache = Cache(cfg.cache)
        self.client = None
        self.batch: dict[str, dict] = {}  # batch mode: custom_id -> request line, until the DoFn writes them

    async def open(self) -> None:
        import httpx2
        import openai

        self._key = api_key(self.cfg.api_key_env, self.cfg.api_key_secret)
        hooks = {"request": [self._on_request], "response": [self._on_response]}
        limits = httpx2.Limits(max_connections=self.cfg.max_concurrency,
                               max_keepalive_connections=self.cfg.max_concurrency)
        # The aiohttp transport (openai[aiohttp]): httpcore's pool scans every connection on each
        # request and reply, which at 64 connections cost more CPU per call than the rest of the client.
        self.client = openai.AsyncOpenAI(  # retries are ours (_call): bad replies are retried too
            base_url=self.cfg.base_url, api_key=self._key or "EMPTY", timeout=self.cfg.timeout_s, max_retries=0,
            http_client=openai.DefaultAioHttpClient(limits=limits, event_hooks=hooks, timeout=self.cfg.timeout_s))
        self.semaphore = asyncio.Semaphore(self.cfg.max_concurrency)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def _on_request(self, request) -> None:
        self.ledger.inc("attempts")

    async def _on_response(self, response) -> None:
        self.ledger.inc(f"status_{response.status_code}")

    def redact(self, text: str) -> str:
        key = getattr(self, "_key", None) or api_key(self.cfg.api_key_env, self.cfg.api_key_secret)
        return text.replace(key, "***") if key and len(key) >= 4 else text

    def params(self) -> dict:
        return {"temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens, **self.cfg.extra_body}

    def body(self, messages: list[dict], model: str | None = None, keyed: bool = True) -> tuple[str, dict]:
        """The request body and its cache key (also its ``custom_id`` in batch shards; "" unless
        ``keyed``: hashing a body with its images costs CPU only a cache or a batch needs)."""
        model = model or self.cfg.model
        key = json_key({"model": model, "messages": messages, "params": self.params()}) if keyed else ""
        return key, {"model": model, "messages": messages, **self.params()}

    async def complete(self, messages: list[dict], model: str | None = None, sizes=()) -> str:
        """The reply to ``messages`` (``sizes``: its images' (w, h), for the ledger)."""
        batch = getattr(self.cfg, "mode", "live") == "batch"
        key, body = self.body(messages, model, keyed=bool(self.cache.root) or batch)
        cached = await asyncio.to_thread(self.cache.get, key) if self.cache.root else None
        if cached is not None:
            self.ledger.inc("cache_hits")
            return self.redact(cached["content"])  # entries written before redaction existed
        self.ledger.inc("cache_misses")
        if batch:
            self.batch[key] = {"custom_id": key, "method": "POST", "url": CHAT_URL, "body": body}
            self.ledger.inc("batch_requests")
            raise TeacherError("teacher_batch_pending", "the request is in this run's batch/ shards; "
                               "`groundcot teacher submit`, then `collect`, then generate again")
        if not take_budget(self.run_id, self.cfg.request_budget):
            raise TeacherError("teacher_budget_exhausted", f"request_budget {self.cfg.request_budget} used up")
        cap = getattr(self.cfg, "max_cost_usd", None)
        async with self.semaphore:
            if not spend(self.run_id, cap):
                raise TeacherError("teacher_budget_exhausted", f"max_cost_usd {cap:g} spent")
            self.ledger.inc("requests")
            for name, n in image_cost(sizes, getattr(self.cfg, "image_token_rule", "qwen2.5-vl")).items():
                self.ledger.inc(name, n)
            content, usage = await self._call(body)
        prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
        spend(self.run_id, cap, call_cost(self.cfg, prompt, completion))
        self.ledger.inc("prompt_tokens", prompt)
        self.ledger.inc("completion_tokens", completion)
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and details.get("cached_tokens"):
            self.ledger.inc("cached_prompt_tokens", details["cached_tokens"])
        content = self.redact(content)  # before the cache, the rows or rejected/ can keep it
        if not content.strip():
            raise self._failure("empty_reply", ValueError("the reply has no text"), 1)
        if self.cache.root:
            await asyncio.to_thread(self.cache.put, key, {"content": content})
        return content

    async def _call(self, body: dict) -> tuple[str, dict]:
        """The reply's text and usage, retrying transient failures up to ``max_retries`` times."""
        for retry in range(self.cfg.max_retries + 1):
            try:
                # the whole attempt, however slowly the bytes come (httpx's timeouts are per read)
                return await asyncio.wait_for(self._attempt(body), self.cfg.timeout_s)
            except Exception as err:  # noqa: BLE001 - classify re-raises what is not a call failure
                kind, transient, told = classify(err)
                self.ledger.inc(f"errors.{kind}")
                if isinstance(err, BadReply):
                    self.ledger.inc(f"errors.bad_reply.{err.what}")
                if not transient or retry == self.cfg.max_retries:
                    raise self._failure(kind, err, retry + 1) from None
            await asyncio.sleep(backoff(retry, told))
        raise AssertionError("unreachable")

    async def _attempt(self, body: dict) -> tuple[str, dict]:
        import httpx2
        import openai

        # The client's documented custom-request path: its auth, headers and status errors;
        # the body is checked here (parse_reply), so a malformed one is a named, retried failure.
        try:
            response = await self.client.post("/chat/completions", cast_to=httpx2.Response, body=body)
        except openai.APITimeoutError as err:
            if dropped(err):  # what httpx reports as a connection error, as the aiohttp transport does not
                raise openai.APIConnectionError(request=err.request) from err.__cause__
            raise
        return parse_reply(response.content, response.headers.get("content-type", ""))

    def _failure(self, kind: str, err: Exception, attempts: int) -> TeacherError:
        self.ledger.inc(f"failures.{kind}")
        text = f"{type(err).__name__}: {str(err) or f'no whole reply within timeout_s={self.cfg.timeout_s}'}"
        tried = f" (after {attempts} attempts)" if attempts > 1 else ""
        return TeacherError(f"teacher_{kind}", self.redact(text)[:400] + tried)


class EndpointError(RuntimeError):
    """The teacher's endpoint cannot serve this job (one line, never the key)."""


def check_endpoint(cfg, timeout_s: float = 10.0) -> None:
    """Raise ``EndpointError`` when ``GET {base_url}/models`` cannot be reached or refuses the key.

    Any other answer (even a 404 from a server without ``/models``) counts as reachable: the
    run's own retries deal with what is transient.
    """
    import httpx2

    key = api_key(cfg.api_key_env, cfg.api_key_secret)
    url = httpx2.URL(f"{cfg.base_url.rstrip('/')}/models")
    shown = str(url.copy_with(userinfo=b"", query=None))  # nothing secret from the URL either
    try:
        response = httpx2.get(url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=timeout_s)
    except httpx2.TimeoutException:
        raise EndpointError(f"teacher endpoint {shown}: no answer within {timeout_s:g} s") from None
    except (httpx2.HTTPError, httpx2.InvalidURL) as err:
        reason = str(err).replace(key, "***") if key else str(err)  # e.g. [Errno 111] Connection refused
        reason = reason.splitlines()[0][:200] if reason.strip() else type(err).__name__
        raise EndpointError(f"teacher endpoint {shown} is unreachable ({reason})") from None
    if response.status_code in (401, 403):
        source = cfg.api_key_secret or cfg.api_key_env
        whose = f"the key in {source}" if key else "requests without a key (set teacher.api_key_env)"
        raise EndpointError(f"teacher endpoint {shown} refused {whose} (HTTP {response.status_code})")
