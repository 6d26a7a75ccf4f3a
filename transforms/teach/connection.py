"""Where an OpenAI-compatible endpoint is and how to reach it: the one place groundcot builds
``openai`` clients (the teacher, the batch commands, the trainer's judges) and checks an endpoint.

The API key is read where the client is built (on each worker), through ``transforms.secrets``
when the config names a secret reference; it is never logged, and ``redact`` removes it from text.
"""
from __future__ import annotations

import os
from typing import Optional
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from groundcot.transforms.teach.retry import FIRST_DELAY_S, MAX_DELAY_S


class Connection(BaseModel):
    """The ``connection`` sub-section of an API teacher (and of a judge that calls an endpoint)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="e.g. http://localhost:8000/v1 for a vLLM server.")
    model: str = Field(description="Model name as the endpoint knows it.")
    api_key_env: Optional[str] = Field("OPENAI_API_KEY", description="Environment variable holding the API key "
                                       "(null: none, as for a local vLLM). The key itself never goes in a config.")
    api_key_secret: Optional[str] = Field(None, description="Instead of api_key_env: where each worker reads the "
                                          "key, env:NAME, file:/path or gcp:projects/P/secrets/S[/versions/V] "
                                          "(Secret Manager, groundcot[gcp]). Only this reference is in the job.")
    timeout_s: float = Field(120.0, gt=0, description="Per-attempt timeout.")
    max_retries: int = Field(5, ge=0, description="Retries on 408/409/429/5xx, timeouts and connection errors "
                                                  "(exponential backoff with jitter, Retry-After honoured).")
    retry_backoff_s: float = Field(FIRST_DELAY_S, ge=0, le=MAX_DELAY_S,
                                   description="Wait before a teacher or critic call's first retry, doubled "
                                   f"for each next one (at most {MAX_DELAY_S:g} s, up to 25% less at random); a "
                                   "server's Retry-After wins. A local server can take less. (The batch commands "
                                   "and the trainer's judges keep the openai client's own backoff.)")

    @field_validator("base_url")
    @classmethod
    def _no_userinfo(cls, url: str) -> str:
        if urlsplit(url).username is not None:  # the clients would send it on some calls and fail others
            raise ValueError("holds user:password@; the clients cannot use credentials in the URL: remove them "
                             "and put the key in an environment variable named by api_key_env")
        return url

    def key(self) -> str | None:
        """The API key: from the secret reference when there is one, else the environment variable."""
        return api_key(self.api_key_env, self.api_key_secret)

    def redact(self, text: str, key: str | None = None) -> str:
        """``text`` with the key (``key``, or the one this connection reads) replaced by ``***``."""
        key = key or self.key()
        return text.replace(key, "***") if key and len(key) >= 4 else text


def api_key(env_name: str | None, secret: str | None = None) -> str | None:
    """The key: from the secret reference when there is one (read on the worker, see transforms.secrets)."""
    if secret:
        from groundcot.transforms.secrets import resolve
        return resolve(secret)
    return os.environ.get(env_name) if env_name else None


def make_client(conn: Connection, *, asynchronous: bool, max_retries: int | None = None, key: str | None = None):
    """An ``openai.AsyncOpenAI`` (``asynchronous``) or ``openai.OpenAI`` client for ``conn``.

    The async client is on the aiohttp transport (``openai[aiohttp]``); the teacher takes only its
    request builder and error types from it and sends through ``make_session``. ``max_retries``
    defaults to the connection's (the teacher passes 0: its own retries also cover malformed
    replies). ``key``: an already-read key.
    """
    import openai

    key = key or conn.key() or "EMPTY"
    retries = conn.max_retries if max_retries is None else max_retries
    if not asynchronous:
        return openai.OpenAI(base_url=conn.base_url, api_key=key, timeout=conn.timeout_s, max_retries=retries)
    return openai.AsyncOpenAI(base_url=conn.base_url, api_key=key, timeout=conn.timeout_s, max_retries=retries,
                              http_client=openai.DefaultAioHttpClient(timeout=conn.timeout_s))


def make_session(url: str, max_connections: int, headers: list[tuple[str, str]]):
    """The ``aiohttp`` session the teacher sends its chat completions to ``url`` through (one per
    client, made on its event loop): a pool of ``max_connections``, ``headers`` (an ``openai``
    client's, see ``client.chat_request``) on every request, TLS and proxy from the environment as
    that client's (looked up once: aiohttp's ``trust_env`` reads them again on every request, in a
    thread), and no timeouts of its own (the teacher bounds each whole attempt)."""
    from urllib.request import getproxies, proxy_bypass

    import aiohttp
    import httpx2

    parts = urlsplit(url)
    proxies = getproxies()
    proxy = None if proxy_bypass(parts.hostname or "") else proxies.get(parts.scheme) or proxies.get("all")
    # idle connections kept 5 s as by the SDK's pool (aiohttp's default 15 s outlives uvicorn's 5 s)
    connector = aiohttp.TCPConnector(limit=max_connections, ssl=httpx2.create_ssl_context(), keepalive_timeout=5.0)
    return aiohttp.ClientSession(connector=connector, headers=headers, proxy=proxy,
                                 timeout=aiohttp.ClientTimeout(total=None))


class EndpointError(RuntimeError):
    """The teacher's endpoint cannot serve this job (one line, never the key)."""


def check_endpoint(conn: Connection, timeout_s: float = 10.0, key_name: str = "teacher.connection",
                   what: str = "teacher endpoint", model_key: str | None = None,
                   key_setting: str | None = None) -> None:
    """Raise ``EndpointError`` when ``GET {base_url}/models`` cannot be reached, refuses the key, or
    lists models without ``conn.model`` (``what`` names the endpoint in the message; ``key_name`` the
    config section; ``model_key`` and ``key_setting`` where the model and the key's variable are set,
    by default ``<key_name>.model`` and ``<key_name>.api_key_env``).

    Any other answer (even a 404 from a server without ``/models``) counts as reachable: the
    run's own retries deal with what is transient.
    """
    import httpx2

    model_key, key_setting = model_key or f"{key_name}.model", key_setting or f"{key_name}.api_key_env"
    key = conn.key()
    url = httpx2.URL(f"{conn.base_url.rstrip('/')}/models")
    shown = str(url.copy_with(userinfo=b"", query=None))  # nothing secret from the URL either
    try:
        response = httpx2.get(url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=timeout_s)
    except httpx2.TimeoutException:
        raise EndpointError(f"{what} {shown}: no answer within {timeout_s:g} s") from None
    except (httpx2.HTTPError, httpx2.InvalidURL) as err:
        reason = str(err).replace(key, "***") if key else str(err)  # e.g. [Errno 111] Connection refused
        reason = reason.splitlines()[0][:200] if reason.strip() else type(err).__name__
        raise EndpointError(f"{what} {shown} is unreachable ({reason})") from None
    if response.status_code in (401, 403):
        source = conn.api_key_secret or conn.api_key_env
        whose = f"the key in {source}" if key else f"requests without a key (set {key_setting})"
        raise EndpointError(f"{what} {shown} refused {whose} (HTTP {response.status_code})")
    served = served_models(response)
    if served is not None and conn.model not in served:
        listed = ", ".join(sorted(served)[:20]) or "none"
        raise EndpointError(f"{model_key}: {conn.model!r} is not served by {shown} (it serves: {listed})")


def served_models(response) -> list[str] | None:
    """The model ids a ``GET /models`` answer lists, or None when it is no such list (no check then)."""
    if response.status_code != 200:
        return None
    try:
        data = response.json()["data"]
        return [str(m["id"]) for m in data]
    except (ValueError, KeyError, TypeError):
        return None
