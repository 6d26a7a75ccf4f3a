"""A small OpenAI-compatible chat server on loopback, for teacher tests and the bench.

Behaviour per record comes from a ``[[mode]]`` marker in the question (the system prompt
carries it). A good reply copies the step areas it was sent and ends with the answer
given in the system prompt, as a faithful teacher would.
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

    def _reply(self, text: str) -> None:
        self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": text}}],
                         "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}})

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

    def __init__(self, latency: float = 0.0, max_concurrency: int = 1000, slow_s: float = 2.0):
        self.latency, self.slow_s = latency, slow_s
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
