"""A small OpenAI-compatible chat server on loopback, for teacher tests and the bench.

Behaviour per record comes from a ``[[mode]]`` marker in the question (the system prompt
carries it). A good reply copies the step areas it was sent and ends with the answer
given in the system prompt, as a faithful teacher would. Broken endpoints are modes too:
``BROKEN`` bodies (HTML, cut JSON, ...; ``<mode>_once``: on the first attempt only), a
reply ``trickle``d a few bytes at a time, and replies echoing the caller's key.
``GET /models`` answers 401 unless it carries ``key`` (when one is given).
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_AREA = re.compile(r"<area>(.*?)</area>")
_ANSWER = re.compile(r"Correct answer: (.*)")
_MODE = re.compile(r"\[\[(\w+)\]\]")


_ACTION = re.compile(r"<(zoom|segment)>(.*?)</\1>")

# 200 replies that are no chat completion: (content type, body)
BROKEN = {
    "html": ("text/html", b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"),
    "bad_json": ("application/json", b'{"id": "x", "choices": [{"message": {"content": "<thi'),
    "choices_not_list": ("application/json", b'{"id": "x", "choices": {"message": {"content": "hi"}}}'),
    "no_choices": ("application/json", b'{"id": "x", "object": "chat.completion", "choices": []}'),
    "bad_utf8": ("application/json", b'{"choices": [{"message": {"content": "caf\xe9 \xff"}}]}'),
}


def good_reply(body: dict) -> str:
    """What a faithful teacher writes for the request's style."""
    system = body["messages"][0]["content"]
    user = next(m for m in body["messages"] if m["role"] == "user")["content"]
    answer = _ANSWER.search(system).group(1).strip()
    texts = [part["text"] for part in user if part["type"] == "text"]
    if "reasons in words" in system:  # textual
        return f"<think>The whole scene, then the part that matters, described in words.</think><answer>{answer}</answer>"
    if "picks the key region" in system:  # mgpo
        return f"The crop shows the object clearly. \\boxed{{{answer}}}"
    if "looks closer step by step" in system:  # aperture
        actions = [a for t in texts for a in _ACTION.findall(t)]
        steps = "".join(f"<think>Look there.</think><{kind}>{box}</{kind}><observe>It shows part {i}.</observe>"
                        for i, (kind, box) in enumerate(actions, 1))
        return f"{steps}<answer>{answer}</answer>"
    areas = [a for t in texts for a in _AREA.findall(t)]
    steps = "".join(f"<area>{a}</area>\n<text>Region {i} holds part of the scene.</text>\n"
                    for i, a in enumerate(areas, 1))
    return f"<think>\n{steps}</think>\n<answer>{answer}</answer>"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _send_raw(self, content_type: str, data: bytes, trickle_s: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        pieces = 20 if trickle_s else 1  # a trickle: each piece well within any per-read timeout
        step = -(-len(data) // pieces)
        try:
            for i in range(0, len(data), step):
                self.wfile.write(data[i:i + step])
                self.wfile.flush()
                time.sleep(trickle_s / pieces)
        except OSError:  # the client gave up
            self.close_connection = True

    def _reply(self, text: str, trickle_s: float = 0.0) -> None:
        payload = {"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text}}],
                   "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}}
        self._send_raw("application/json", json.dumps(payload).encode(), trickle_s)

    def do_GET(self):  # noqa: N802 - the health check
        fake: FakeOpenAI = self.server.fake
        with fake.lock:
            fake.health_checks += 1
        if self.path.rstrip("/").endswith("/models"):
            if fake.key and self.headers.get("Authorization") != f"Bearer {fake.key}":
                return self._send(401, {"error": {"message": "invalid api key"}})
            return self._send(200, {"object": "list", "data": [{"id": "fake-vlm", "object": "model"}]})
        return self._send(404, {"error": {"message": "not found"}})

    def do_POST(self):  # noqa: N802
        fake: FakeOpenAI = self.server.fake
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with fake.lock:
            fake.requests.append({"body": body, "headers": {k.lower(): v for k, v in self.headers.items()}})
        with fake.slots:  # the endpoint's own concurrency limit
            time.sleep(fake.latency)
            self._answer(fake, body)

    def _answer(self, fake, body):
        first = body["messages"][0]["content"]
        if "Reference answer" in str(first):  # the judge
            return self._reply("yes" if "[[paraphrase]]" in str(first) else "no")
        marker = _MODE.search(first)
        mode = marker.group(1) if marker else "good"
        reask = len(body["messages"]) > 2
        with fake.lock:
            fake.attempts[(first, reask)] += 1
            n = fake.attempts[(first, reask)]
        good = good_reply(body)
        broken = mode[:-len("_once")] if mode.endswith("_once") and n == 1 else mode
        if broken in BROKEN:
            return self._send_raw(*BROKEN[broken])
        if mode == "trickle" or mode == "trickle_once" and n == 1:
            return self._reply(good, trickle_s=fake.trickle_s)
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        if mode == "echo_key":  # a valid reply that quotes the key: it must not reach the row
            return self._reply(good.replace("holds part of the scene", f"holds part of the scene ({key})"))
        if mode == "echo_key_bad":  # an invalid one: it must not reach rejected/
            return self._reply(f"I cannot do that with the key {key}.")
        if mode == "fenced":
            return self._reply(f"Here is the data.\n```xml\n{good}\n```\nDone.")
        if mode == "malformed_once":
            return self._reply(good if reask else "Let me think... the answer is obvious.")
        if mode == "malformed":
            return self._reply("I cannot do that.")
        if mode == "wrong_box":
            return self._reply(re.sub(r"\[(\d\.\d{3}), ", lambda m: f"[{min(float(m.group(1)) + 0.2, 0.9):.3f}, ",
                                      good))
        if mode == "paraphrase":
            return self._reply(re.sub(r"<answer>(.*)</answer>", r"<answer>I would say it is \1 indeed</answer>", good))
        if mode == "rate_limited_once" and n == 1:
            return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0.05"})
        if mode == "server_error_once" and n == 1:
            return self._send(500, {"error": {"message": "boom"}})
        if mode == "server_error":
            return self._send(500, {"error": {"message": "boom"}})
        if mode == "slow_once" and n == 1:
            time.sleep(fake.slow_s)
        if mode == "echo_auth":
            return self._send(400, {"error": {"message": f"bad request; you sent {self.headers.get('Authorization')}"}})
        return self._reply(good)


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # the listen backlog: many clients connect at once
    daemon_threads = True


class FakeOpenAI:
    """``with FakeOpenAI() as fake: fake.base_url ...``; ``fake.requests`` records every call."""

    def __init__(self, latency: float = 0.0, max_concurrency: int = 1000, slow_s: float = 2.0,
                 trickle_s: float = 3.0, key: str | None = None):
        self.latency, self.slow_s, self.trickle_s, self.key = latency, slow_s, trickle_s, key
        self.health_checks = 0
        self.slots = threading.BoundedSemaphore(max_concurrency)
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.attempts: Counter = Counter()

    def __enter__(self) -> "FakeOpenAI":
        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.fake = self
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
