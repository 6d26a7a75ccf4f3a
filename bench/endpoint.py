"""A lean OpenAI-compatible endpoint for benchmarks: asyncio, HTTP/1.1 keep-alive, a
fixed latency per call, replies built like tests/support/fake_openai.py's good teacher
(run with ``PYTHONPATH=tests``, as the README's bench commands do).

The threaded test server spends more CPU per call than the client being measured; on a
small machine that, not the client, would set the pace.
"""
from __future__ import annotations

import asyncio
import json

from support.fake_openai import good_reply


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            body = json.loads(await reader.readexactly(length))
            await asyncio.sleep(latency)
            reply = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                                "choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant", "content": good_reply(body)}}],
                                "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(reply), reply))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def serve(latency: float, port_out) -> None:
    async def main():
        server = await asyncio.start_server(lambda r, w: handle(r, w, latency), "127.0.0.1", 0, backlog=1024)
        port_out.put(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1")
        await server.serve_forever()

    asyncio.run(main())
