"""A chat-completion reply body checked byte by byte: the text, or ``BadReply`` naming what was wrong.

Endpoints behind proxies answer 200 with an HTML error page, cut JSON, an object without
choices or bytes that are not UTF-8; each is a ``BadReply`` the client retries and counts.
Details are whole: the client redacts the key before it shortens them.
"""
from __future__ import annotations

import json


class BadReply(ValueError):
    """A 200 reply that is not a usable chat completion; ``what`` is a snake_case name."""

    def __init__(self, what: str, detail: str):
        super().__init__(f"{what}: {detail}")
        self.what = what


def parse_reply(body: bytes, content_type: str = "application/json") -> tuple[str, dict]:
    """The first choice's text and the usage object of a chat-completion body.

    >>> parse_reply(b'{"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": 3}}')
    ('hi', {'prompt_tokens': 3})
    >>> parse_reply(b'<html>502 Bad Gateway</html>', 'text/html')
    Traceback (most recent call last):
    ...
    groundcot.transforms.teach.reply.BadReply: html: <html>502 Bad Gateway</html>
    >>> parse_reply(b'{"choices": []}')
    Traceback (most recent call last):
    ...
    groundcot.transforms.teach.reply.BadReply: no_choices: the reply has an empty choices list
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadReply("invalid_utf8", f"byte {err.start} of {len(body)} is not UTF-8") from None
    if "html" in content_type.lower() or text.lstrip()[:1] == "<":
        raise BadReply("html", text.strip())
    try:
        data = json.loads(text)
    except ValueError as err:
        raise BadReply("invalid_json", f"{err} in {text!r}") from None
    if not isinstance(data, dict):
        raise BadReply("not_an_object", f"the reply is a JSON {type(data).__name__}")
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise BadReply("choices_not_a_list", f"choices is {json.dumps(choices)}")
    if not choices:
        raise BadReply("no_choices", "the reply has an empty choices list")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise BadReply("no_message", "the first choice has no message object")
    content = message.get("content")
    if not isinstance(content, (str, type(None))):
        raise BadReply("content_not_text", f"message content is a {type(content).__name__}")
    usage = data.get("usage")
    return content or "", usage if isinstance(usage, dict) else {}
