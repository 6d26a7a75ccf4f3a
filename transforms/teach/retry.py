"""When a failed teacher attempt is tried again, and after how long.

Transient: timeouts, connection errors, 408/409/429/5xx (or ``x-should-retry: true``) and
bad replies (HTML, cut JSON, no choices...). Everything else (400, 401, 404...) fails at once.
Backoff is exponential with jitter, as the ``openai`` client's own; ``Retry-After`` wins.
"""
from __future__ import annotations

import asyncio
import email.utils
import random
import time

from groundcot.transforms.teach.reply import BadReply

FIRST_DELAY_S, MAX_DELAY_S, MAX_RETRY_AFTER_S = 0.5, 8.0, 60.0
RETRY_STATUS = {408, 409, 429}


def classify(err: Exception) -> tuple[str, bool, float | None]:
    """(failure kind, whether to retry, the server's Retry-After in seconds) of a failed attempt.

    Raises ``err`` again when it is not a failure of the call (a bug: Beam's backstop names it).
    """
    import openai

    if isinstance(err, BadReply):
        return "bad_reply", True, None
    if isinstance(err, (asyncio.TimeoutError, openai.APITimeoutError)):  # ours bounds the whole attempt
        return "timeout", True, None
    if isinstance(err, openai.APIConnectionError):
        return "connection_error", True, None
    if isinstance(err, openai.APIStatusError):
        status, headers = err.status_code, err.response.headers
        kind = "rate_limited" if status == 429 else "server_error" if status >= 500 else f"http_{status}"
        told = headers.get("x-should-retry")
        retry = told == "true" if told in ("true", "false") else status in RETRY_STATUS or status >= 500
        return kind, retry, retry_after(headers)
    raise err


def retry_after(headers) -> float | None:
    """Seconds the server asks to wait (``retry-after-ms``, ``retry-after`` seconds or date).

    >>> retry_after({"retry-after": "0.05"}), retry_after({"retry-after-ms": "250"}), retry_after({})
    (0.05, 0.25, None)
    """
    for name, scale in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            return float(headers[name]) / scale
        except (KeyError, ValueError):
            pass
    date = email.utils.parsedate_tz(headers.get("retry-after") or "")
    return None if date is None else max(0.0, email.utils.mktime_tz(date) - time.time())


def backoff(retry: int, told: float | None = None, first: float = FIRST_DELAY_S) -> float:
    """Seconds to sleep before retry number ``retry`` (0-based): the server's word, capped, or
    exponential from ``first`` (``connection.retry_backoff_s``) with up to 25% jitter.

    >>> backoff(0, told=2.0), 0.375 <= backoff(0) <= 0.5, 0.75 <= backoff(1) <= 1.0, 6.0 <= backoff(10) <= 8.0
    (2.0, True, True, True)
    >>> 0.015 <= backoff(1, first=0.02) <= 0.04, backoff(3, first=0.0)
    (True, 0.0)
    """
    if told is not None and 0 <= told <= MAX_RETRY_AFTER_S:
        return told
    return min(first * 2 ** min(retry, 30), MAX_DELAY_S) * (1 - 0.25 * random.random())
