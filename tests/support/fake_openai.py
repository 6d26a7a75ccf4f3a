"""A small OpenAI-compatible chat server on loopback, for teacher tests and the bench.

Behaviour per record comes from a ``[[mode]]`` marker in the question (the system prompt
carries it). A good reply copies the step areas it was sent and ends with the answer
given in the system prompt, as a faithful teacher would. Broken endpoints are modes too:
``BROKEN`` bodies (HTML, cut JSON, ...; ``<mode>_once``: on the first attempt only), a
reply ``trickle``d a few bytes at a time, and replies echoing the caller's key.
``GET /models`` answers 401 unless it carries ``key`` (when one is given). The files and
batches endpoints of OpenAI's Batch API are here too: a batch moves one state per retrieve
(validating, in_progress, completed) and answers its lines as the chat endpoint would.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from email.parser import BytesParser
from email.policy import HTTP
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


def texts_of(message: dict) -> list[str]:
    content = message["content"]
    return [content] if isinstance(content, str) else [p["text"] for p in content if p["type"] == "text"]


def batch_line_problem(item: dict, seen: set) -> str | None:
    """Why a batch input line would be refused (OpenAI's request input object), or None."""
    if set(item) != {"custom_id", "method", "url", "body"}:
        return f"fields {sorted(item)}, expected custom_id, method, url, body"
    if not isinstance(item["custom_id"], str) or not item["custom_id"] or item["custom_id"] in seen:
        return f"custom_id {item['custom_id']!r} is empty or repeated"
    if item["method"] != "POST" or item["url"] != "/v1/chat/completions":
        return f"{item['method']} {item['url']}: only POST /v1/chat/completions"
    if not isinstance(item["body"], dict) or "model" not in item["body"] or "messages" not in item["body"]:
        return "body needs model and messages"
    return None


def good_reply(body: dict) -> str:
    """What a faithful teacher writes for the request's style: the shared system text holds the
    answer and the steps' areas, the style's instruction (the last user turn before any re-ask) says
    which style."""
    messages = body["messages"]
    system = messages[0]["content"]
    answer = _ANSWER.search(system).group(1).strip()
    users = [m for m in messages if m["role"] == "user"]
    asked = users[len(users) - 1 - sum(m["role"] == "assistant" for m in messages)]  # before any re-ask
    texts = texts_of(asked)
    instruction = " ".join(texts)
    if "reasons in words" in instruction:  # textual
        return f"<think>The whole scene, then the part that matters, described in words.</think><answer>{answer}</answer>"
    if "picks the key region" in instruction:  # mgpo
        return f"The crop shows the object clearly. \\boxed{{{answer}}}"
    if "looks closer step by step" in instruction:  # aperture
        actions = [a for t in texts for a in _ACTION.findall(t)]
        steps = "".join(f"<think>Look there.</think><{kind}>{box}</{kind}><observe>It shows part {i}.</observe>"
                        for i, (kind, box) in enumerate(actions, 1))
        return f"{steps}<answer>{answer}</answer>"
    areas = _AREA.findall(system)
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
        self._send_raw("application/json", json.dumps(self.server.fake.completion(text, self._body)).encode(),
                       trickle_s)

    def do_GET(self):
        fake: FakeOpenAI = self.server.fake
        path = self.path.split("?")[0].rstrip("/")
        if "/batches/" in path or "/files/" in path:
            return self._batch_get(fake, path)
        with fake.lock:
            fake.health_checks += 1
        if path.endswith("/models"):
            if fake.key and self.headers.get("Authorization") != f"Bearer {fake.key}":
                return self._send(401, {"error": {"message": "invalid api key"}})
            return self._send(200, {"object": "list", "data": [{"id": "fake-vlm", "object": "model"}]})
        return self._send(404, {"error": {"message": "not found"}})

    def do_POST(self):
        fake: FakeOpenAI = self.server.fake
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/files"):
            if fake.files_key and self.headers.get("Authorization") != f"Bearer {fake.files_key}":
                sent = self.headers.get("Authorization")
                return self._send(401, {"error": {"message": f"Incorrect API key provided: {sent}"}})
            return self._upload(fake, raw)
        if path.endswith("/batches"):
            return self._create_batch(fake, json.loads(raw))
        body = self._body = json.loads(raw)
        with fake.lock:
            fake.requests.append({"body": body, "headers": {k.lower(): v for k, v in self.headers.items()}})
        with fake.slots:  # the endpoint's own concurrency limit
            time.sleep(fake.latency)
            self._answer(fake, body)

    def _answer(self, fake, body):
        if fake.reply_with is not None:  # a model under evaluation: the test says what it answers
            return self._reply(fake.reply_with(body))
        first = body["messages"][0]["content"]
        if "Reference answer" in str(first):  # the judge
            return self._reply("yes" if "[[paraphrase]]" in str(first) else "no")
        marker = _MODE.search(first)
        mode = marker.group(1) if marker else "good"
        reask = any(m["role"] == "assistant" for m in body["messages"])
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
        if mode == "unprocessable":  # FastAPI's refusal body, as `transformers serve` sends it
            return self._send(422, {"detail": "Unexpected fields in the request: {'top_k'}"})
        if mode == "echo_auth":
            return self._send(400, {"error": {"message": f"bad request; you sent {self.headers.get('Authorization')}"}})
        return self._reply(good)


    # --- the files and batches endpoints (OpenAI Batch API) -------------------------------------

    def _upload(self, fake, raw: bytes):
        """POST /files, multipart: ``file`` and ``purpose``."""
        form = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw)
        parts = {p.get_param("name", header="content-disposition"): p for p in form.iter_parts()}
        if "file" not in parts or "purpose" not in parts:
            return self._send(400, {"error": {"message": "file and purpose are required"}})
        data = parts["file"].get_payload(decode=True)
        with fake.lock:
            fid = f"file-{len(fake.files) + 1}"
            fake.files[fid] = data
            fake.batch_calls.append(("upload", fid))
        return self._send(200, {"id": fid, "object": "file", "bytes": len(data), "created_at": 0,
                                "filename": parts["file"].get_filename(), "purpose": parts["purpose"].get_content().strip(),
                                "status": "processed"})

    def _create_batch(self, fake, body: dict):
        if body.get("input_file_id") not in fake.files:
            return self._send(404, {"error": {"message": f"no file {body.get('input_file_id')}"}})
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return self._send(400, {"error": {"message": "unsupported endpoint or completion_window"}})
        with fake.lock:
            bid = f"batch_{len(fake.batches) + 1}"
            fake.batches[bid] = {"id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                                 "input_file_id": body["input_file_id"], "completion_window": "24h",
                                 "status": "validating", "output_file_id": None, "error_file_id": None,
                                 "created_at": 0, "request_counts": {"total": 0, "completed": 0, "failed": 0}}
            fake.batch_calls.append(("create", bid))
            return self._send(200, fake.batches[bid])

    def _batch_get(self, fake, path: str):
        _, _, rest = path.partition("/batches/") if "/batches/" in path else path.partition("/files/")
        with fake.lock:
            if "/batches/" in path:
                batch = fake.batches.get(rest)
                if batch is None:
                    return self._send(404, {"error": {"message": f"no batch {rest}"}})
                fake.batch_calls.append(("retrieve", rest))
                fake.advance(batch)  # one state per look: validating -> in_progress -> completed
                return self._send(200, batch)
            fid, _, content = rest.partition("/")
            if fid not in fake.files:
                return self._send(404, {"error": {"message": f"no file {fid}"}})
            fake.batch_calls.append(("content" if content else "file", fid))
        if content:
            return self._send_raw("application/octet-stream", fake.files[fid])
        return self._send(200, {"id": fid, "object": "file", "bytes": len(fake.files[fid]), "purpose": "batch"})


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # the listen backlog: many clients connect at once
    daemon_threads = True


class FakeOpenAI:
    """``with FakeOpenAI() as fake: fake.base_url ...``; ``fake.requests`` records every call."""

    def __init__(self, latency: float = 0.0, max_concurrency: int = 1000, slow_s: float = 2.0,
                 trickle_s: float = 3.0, key: str | None = None, reply_with=None):
        self.reply_with = reply_with  # body -> reply text, instead of the teacher's replies
        self.latency, self.slow_s, self.trickle_s, self.key = latency, slow_s, trickle_s, key
        self.health_checks = 0
        self.slots = threading.BoundedSemaphore(max_concurrency)
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.attempts: Counter = Counter()
        self.prefixes: set[str] = set()  # leading messages seen: later ones report cached tokens
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_calls: list[tuple[str, str]] = []
        self.files_key: str | None = None  # set: uploads without this key are refused (401, echoing the key)

    def completion(self, text: str, body: dict | None = None) -> dict:
        """A chat completion; its usage reports 64 cached prompt tokens when the request's first two
        messages (system text and image) were seen before, as a server with prefix caching does."""
        usage = {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}
        if body is not None and len(body.get("messages", [])) > 2:
            prefix = json.dumps(body["messages"][:2], sort_keys=True)
            with self.lock:
                seen = prefix in self.prefixes
                self.prefixes.add(prefix)
            usage["prompt_tokens_details"] = {"cached_tokens": 64 if seen else 0}
        return {"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                "usage": usage}

    def advance(self, batch: dict) -> None:
        """Move a batch one state on; on completing, answer every line of its input file (under ``lock``)."""
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
            return
        if batch["status"] != "in_progress":
            return
        lines = self.files[batch["input_file_id"]].decode().splitlines()
        out, errors, seen = [], [], set()
        for i, line in enumerate(lines):
            item = json.loads(line)
            problem = batch_line_problem(item, seen)
            if problem:
                batch.update(status="failed", errors={"object": "list", "data": [
                    {"code": "invalid_request", "line": i + 1, "message": problem, "param": None}]})
                return
            seen.add(item["custom_id"])
            mode = (_MODE.search(item["body"]["messages"][0]["content"]) or [None, "good"])[1]
            result = {"id": f"batch_req_{i}", "custom_id": item["custom_id"], "error": None}
            if mode == "server_error":
                result["response"] = {"status_code": 500, "request_id": f"req_{i}",
                                      "body": {"error": {"message": "boom"}}}
                errors.append(result)
                continue
            text = ("I cannot do that." if mode == "malformed" else good_reply(item["body"])
                    if self.reply_with is None else self.reply_with(item["body"]))
            self.lock.release()  # completion takes the lock
            try:
                payload = self.completion(text, item["body"])
            finally:
                self.lock.acquire()
            result["response"] = {"status_code": 200, "request_id": f"req_{i}", "body": payload}
            out.append(result)
        for name, rows in (("output_file_id", out), ("error_file_id", errors)):
            if rows:
                fid = f"file-{len(self.files) + 1}"
                self.files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[name] = fid
        batch.update(status="completed", request_counts={"total": len(lines), "completed": len(out),
                                                         "failed": len(errors)})

    def __enter__(self) -> FakeOpenAI:
        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.fake = self
        # shutdown() waits for the loop to look again: poll often, or every `with` ends 0.5 s late
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
