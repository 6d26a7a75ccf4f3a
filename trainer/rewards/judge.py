"""The answer judges behind an OpenAI-compatible endpoint: groundcot's yes/no ``OpenAIJudge`` and
SIFThinker's graded ``GradedJudge``. Both read the key from the environment variable
``api_key_env``, cache their verdicts and are picklable (the client is made on first use)."""
from __future__ import annotations

import base64
import io
import json
import os
import re


class OpenAIJudge:
    """An LLM judge with groundcot's judge prompt: 1 when it says yes, else 0."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, timeout_s: float = 60.0):
        self.base_url, self.model, self.api_key_env, self.timeout_s = base_url, model, api_key_env, timeout_s
        self.verdicts: dict[tuple, float] = {}
        self._client = None

    def __call__(self, question: str, reference: str, candidate: str) -> float:
        import openai

        from groundcot import prompts

        key = (question, reference, candidate)
        if key not in self.verdicts:
            if self._client is None:
                api_key = os.environ.get(self.api_key_env) if self.api_key_env else None
                self._client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "EMPTY",
                                             timeout=self.timeout_s)
            prompt = prompts.render("judge", question=question, reference=reference, candidate=candidate)
            reply = self._client.chat.completions.create(model=self.model, max_tokens=4, temperature=0.0,
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

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, timeout_s: float = 60.0):
        self.base_url, self.model, self.api_key_env, self.timeout_s = base_url, model, api_key_env, timeout_s
        self.scores: dict[tuple, float] = {}
        self._client = None

    def __call__(self, question: str, reference: str, candidate: str | None, image=None) -> float:
        import openai

        from groundcot import prompts

        key = (question, reference, candidate, id(image) if image is not None else None)
        if key not in self.scores:
            if self._client is None:
                api_key = os.environ.get(self.api_key_env) if self.api_key_env else None
                self._client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "EMPTY", timeout=self.timeout_s)
            text = prompts.render("judge_graded", question=question, reference=reference, candidate=str(candidate))
            system, _, user = text.partition("\n---\n")
            content = [{"type": "text", "text": user}]
            if image is not None:
                content.append({"type": "image_url", "image_url": {"url": _data_url(image)}})
            try:
                reply = self._client.chat.completions.create(model=self.model, messages=[
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
