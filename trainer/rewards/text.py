"""What every reward reads from a completion: its text, its tool calls, and the row's depth map."""
from __future__ import annotations

import json
import re


def text_of(completion) -> str:
    """A completion as text, whether a string or a conversational list of messages (the last one)."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"] if completion else ""
    return content if isinstance(content, str) else "".join(p.get("text") or "" for p in content)


def transcript(completion) -> str:
    """Every assistant turn of a completion, blank-line separated (a string is one turn)."""
    if isinstance(completion, str):
        return completion
    return "\n\n".join(text_of([m]) for m in completion if m.get("role", "assistant") == "assistant")


def png_bytes(value) -> bytes | None:
    """A depth map column's value as PNG bytes: bytes as they are, or an Image column's {"bytes", "path"}."""
    return value.get("bytes") if isinstance(value, dict) else value


def per_depth_map(completions, depth_map, score) -> list[float | None]:
    """``score(completion, png)`` for each completion whose row has a depth map; None for the others."""
    return [None if png is None else score(c, png) for c, png in zip(completions, map(png_bytes, depth_map))]


_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def tool_calls(text: str) -> list[dict]:
    """The ``<tool_call>{"name": .., "arguments": {..}}</tool_call>`` blocks of a model's text (the Hermes
    form Qwen's templates and TRL's response parser use), each as {"name", "arguments"}; a block that is
    not such JSON comes back as {"name": "", "arguments": {}, "error": why}."""
    out = []
    for raw in _TOOL_CALL.findall(text):
        try:
            call = json.loads(raw)
            if not (isinstance(call, dict) and isinstance(call.get("name"), str)
                    and isinstance(call.get("arguments", {}), dict)):
                raise TypeError("not {name, arguments}")
            out.append({"name": call["name"], "arguments": call.get("arguments", {})})
        except (ValueError, TypeError) as err:
            out.append({"name": "", "arguments": {}, "error": f"unreadable tool call: {err}"})
    return out


_TOOL_RESPONSE = re.compile(r"<tool_response>.*?</tool_response>", re.DOTALL)
_ROLE_MARKS = re.compile(r"<\|im_(?:start|end)\|>")


def turns_of_text(text: str) -> list[str]:
    """A whole multi-turn response as one string (verl hands its reward the decoded response, tool
    results included) -> the assistant turns: the text between the ``<tool_response>`` blocks, without
    the role lines the chat template puts around them. A string without tool results is one turn."""
    pieces = _TOOL_RESPONSE.split(_ROLE_MARKS.sub("", text))
    if len(pieces) == 1:
        return pieces
    cleaned = [re.sub(r"\s*\buser\s*$", "", re.sub(r"^\s*assistant\b\s*", "", p)) for p in pieces]
    return [p for i, p in enumerate(cleaned) if p.strip() or i == 0]


def calls_of(completion) -> list[list[dict]]:
    """Per assistant turn of a multi-turn completion, its tool calls as {"name", "arguments"}: TRL's parsed
    ``tool_calls`` where present, else read from the turn's text."""
    if isinstance(completion, str):
        return [tool_calls(t) for t in turns_of_text(completion)]
    turns = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        parsed = message.get("tool_calls")
        if parsed:
            turns.append([{"name": c["function"]["name"], "arguments": c["function"].get("arguments") or {}}
                          for c in parsed])
        else:
            turns.append(tool_calls(text_of([message])))
    return turns


def assistant_texts(completion) -> list[str]:
    """The text of each assistant turn."""
    if isinstance(completion, str):
        return turns_of_text(completion)
    return [text_of([m]) for m in completion if m.get("role", "assistant") == "assistant"]
