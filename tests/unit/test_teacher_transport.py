"""The teacher's HTTP transport (openai's aiohttp one) names failures as httpx's did: a refused or
dropped connection is a connection error, a silent server a timeout (loopback servers only)."""
from __future__ import annotations

import asyncio
import socket

import pytest

from groundcot.transforms.teach.api import OpenAIConfig
from groundcot.transforms.teach.client import ChatClient, Ledger, TeacherError


def cfg(base_url: str) -> OpenAIConfig:
    return OpenAIConfig(kind="openai", limits={"max_concurrency": 2}, request={"temperature": 0.0, "max_tokens": 8},
                        connection={"base_url": base_url, "model": "fake", "api_key_env": None, "timeout_s": 0.5,
                                    "max_retries": 0})


async def failure(handler) -> tuple[TeacherError, dict]:
    """The error of one call to a loopback server running ``handler`` (None: a closed port)."""
    server = None
    if handler is None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    else:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    ledger = Ledger()
    client = ChatClient(cfg(f"http://127.0.0.1:{port}/v1"), "transport", ledger)
    await client.open()
    try:
        with pytest.raises(TeacherError) as caught:
            await client.complete([{"role": "user", "content": "hi"}])
    finally:
        await client.close()
        if server is not None:
            server.close()
    return caught.value, ledger.take()


async def hang_up(reader, writer):
    await reader.read(100)
    writer.close()


async def say_nothing(reader, writer):
    await reader.read(100)
    await asyncio.sleep(2)
    writer.close()


@pytest.mark.parametrize("handler", [None, hang_up], ids=["refused", "hung_up"])
def test_a_refused_or_dropped_connection_is_a_connection_error(handler):
    err, ledger = asyncio.run(failure(handler))
    assert err.reason == "teacher_connection_error"
    assert err.detail.startswith("APIConnectionError: Connection error.")
    assert ledger["errors.connection_error"] == 1 and "errors.timeout" not in ledger


def test_a_silent_server_is_a_timeout():
    err, ledger = asyncio.run(failure(say_nothing))
    assert err.reason == "teacher_timeout"
    assert ledger["errors.timeout"] == 1 and "errors.connection_error" not in ledger


def reply_ok(seen: list):
    """A loopback endpoint answering every request with one short chat completion; it keeps each
    request's line, headers (lower-cased names) and body in ``seen``."""

    async def handle(reader, writer):
        try:
            while True:
                line, *fields = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")[:-2]
                headers = sorted((k.lower(), v.strip()) for k, v in (f.split(":", 1) for f in fields))
                length = int(dict(headers)["content-length"])
                seen.append((line, headers, await reader.readexactly(length)))
                body = b'{"choices": [{"message": {"content": "hi"}}], "usage": {}}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return handle


def test_a_call_is_the_request_the_openai_client_would_send(monkeypatch):
    """The teacher sends each call through its own aiohttp session (not the SDK's per-call path):
    the endpoint sees the same request line, headers (key included) and body bytes as from
    ``client.post``."""
    import httpx2

    monkeypatch.setenv("TRANSPORT_KEY", "sk-test-transport-key")
    seen = []

    async def run():
        server = await asyncio.start_server(reply_ok(seen), "127.0.0.1", 0)
        conf = cfg(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1")
        conf.connection.api_key_env = "TRANSPORT_KEY"
        client = ChatClient(conf, "transport", Ledger())
        await client.open()
        messages = [{"role": "user", "content": [{"type": "text", "text": "héllo"},
                                                 {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]
        _, body = client.body(messages)
        await client.client.post("/chat/completions", cast_to=httpx2.Response, body=body)  # the SDK's own path
        assert await client.complete(messages) == "hi"
        await client.close()
        server.close()

    asyncio.run(run())
    sdk, ours = seen
    assert ours == sdk
    assert ours[0] == "POST /v1/chat/completions HTTP/1.1"
    names = {k for k, _ in ours[1]}
    assert {"authorization", "content-type", "user-agent", "x-stainless-lang", "x-stainless-retry-count"} <= names
    assert ("authorization", "Bearer sk-test-transport-key") in ours[1]
    assert '"héllo"'.encode() in ours[2]


def test_calls_go_through_the_proxy_the_environment_names(monkeypatch):
    """HTTP_PROXY is honoured as by the openai client (looked up once, not per call): the proxy
    (here the loopback endpoint itself) gets the request with the endpoint's whole URL."""
    seen = []
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def run():
        server = await asyncio.start_server(reply_ok(seen), "127.0.0.1", 0)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        client = ChatClient(cfg("http://teacher.invalid/v1"), "transport", Ledger())
        await client.open()
        assert await client.complete([{"role": "user", "content": "hi"}]) == "hi"
        await client.close()
        server.close()

    asyncio.run(run())
    assert [line for line, _, _ in seen] == ["POST http://teacher.invalid/v1/chat/completions HTTP/1.1"]
