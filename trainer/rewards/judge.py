"""The answer judges behind an OpenAI-compatible endpoint: groundcot's yes/no ``OpenAIJudge`` and
SIFThinker's graded ``GradedJudge``. Both reach it through a ``Connection`` (the client is built
by ``teach.connection.make_client``, on first use), cache their verdicts and are picklable."""
from __future__ import annotations

import base64
import io
import json
import re

from groundcot.transforms.teach.connection import Connection, make_client


def connection(conn: Connection | str, model: str | None = None, **settings) -> Connection:
    """``conn`` itself, or one built from a base URL, a model and the other Connection fields."""
    if isinstance(conn, Connection):
        return conn
    return Connection(base_url=conn, model=model, **{"api_key_env": None, "timeout_s": 60.0, **settings})


class OpenAIJudge:
    """An LLM judge with groundcot's judge prompt: 1 when it says yes, else 0."""

    def __init__(self, conn: Connection | str, model: str | None = None, **settings):
        self.conn = connection(conn, model, **settings)
        self.verdicts: dict[tuple, float] = {}
        self._client = None

    def __call__(self, question: str, reference: str, candidate: str) -> float:
        from groundcot import prompts

        key = (question, reference, candidate)
        if key not in self.verdicts:
            if self._client is None:
                self._client = make_client(self.conn, asynchronous=False)
            prompt = prompts.render("judge", question=question, reference=reference, candidate=candidate)
            reply = self._client.chat.completions.create(model=self.conn.model, max_tokens=4, temperature=0.0,
                                                         messages=[{"role": "user", "content": prompt}])
            self.verdicts[key] = float((reply.choices[0].message.content or "").strip().lower().startswith("yes"))
        return self.verdicts[key]

    def __getstate__(self):
        return {**self.__dict__, "_client": None}


def parse_score(reply: str) -> float:
    """The judge's ``{"score": x}`` (or a bare number, fenced or not); 0 when unreadable."""
    for raw in (reply, re.sub(r"```json|```", "", reply).strip()):
        try:
            data = json.loads(raw)
            return float(data if isinstance(data, (int, float)) else data["score"])
        except (ValueError, TypeError, KeyError):
            continue
    return 0.0


class GradedJudge:
    """SIFThinker's answer judge: a VLM scores the answer against the standard one in [0, 1],
    seeing the image."""

    def __init__(self, conn: Connection | str, model: str | None = None, **settings):
        self.conn = connection(conn, model, **settings)
        self.scores: dict[tuple, float] = {}
        self._client = None

    def __call__(self, question: str, reference: str, candidate: str | None, image=None) -> float:
        import openai

        from groundcot import prompts

        key = (question, reference, candidate, id(image) if image is not None else None)
        if key not in self.scores:
            if self._client is None:
                self._client = make_client(self.conn, asynchronous=False)
            text = prompts.render("judge_graded", question=question, reference=reference, candidate=str(candidate))
            system, _, user = text.partition("\n---\n")
            content = [{"type": "text", "text": user}]
            if image is not None:
                content.append({"type": "image_url", "image_url": {"url": _data_url(image)}})
            try:
                reply = self._client.chat.completions.create(model=self.conn.model, messages=[
                    {"role": "system", "content": system}, {"role": "user", "content": content}])
                self.scores[key] = parse_score(reply.choices[0].message.content or "")
            except openai.OpenAIError:
                return 0.0  # SIFThinker scores a failed judge call 0 (not cached: the next call asks again)
        return self.scores[key]

    def __getstate__(self):
        return {**self.__dict__, "_client": None}


def _data_url(image) -> str:
    if isinstance(image, dict):
        image = image.get("bytes")
    if not isinstance(image, (bytes, bytearray)):
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        image = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")
