"""The critic: a VLM that grades each validated trace (``quality.critic``), and ``quality.min_score``.

It sees the image with the chain's boxes drawn, numbered and coloured as the teacher saw them
(``styles.pictures.numbered``), the steps' legend, the question, the answer and the trace, and
answers a score in [0, 1] and a one-line reason (prompt ``critic``, replaceable like every prompt).
The calls go through the teacher's client (``teach.client.ChatClient``, or ``teach.batch.BatchClient``
when ``teacher.batch.enabled``): the same endpoint by default, retries, the job's request budget and
cost cap, the response cache, and a ledger counted as ``critic.<x>``. ``teach.dofn.Critique`` is the
teacher's Beam step running a ``Critic`` instead of a teacher (this module imports no Beam: the job's
config reads ``CriticConfig``).
"""
from __future__ import annotations

import json
import re
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from groundcot import prompts
from groundcot.schemas.record import Record
from groundcot.transforms.cache import with_teacher_cache
from groundcot.transforms.styles.pictures import data_url, downscale, numbered, picture
from groundcot.transforms.styles.prefix import legend
from groundcot.transforms.teach import is_api
from groundcot.transforms.teach.api import Endpoint, OpenAIConfig
from groundcot.transforms.teach.client import TeacherError
from groundcot.transforms.teach.connection import Connection

STAGE = "critic"
REASON_CHARS = 300


class CriticConfig(BaseModel):
    """``quality.critic``."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="Grade every validated trace with a VLM: a score in [0, 1] and a "
                          "one-line reason in the columns critic_score and critic_reason.")
    connection: Optional[Connection] = Field(None, description="The critic's endpoint (default: the teacher's; "
                                             "needed when the teacher calls no endpoint).")
    model: Optional[str] = Field(None, description="The critic model (default: its connection's model).")
    max_tokens: int = Field(256, ge=1, description="Completion length limit of a grade.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature.")


class BadGrade(ValueError):
    """A reply holding no score in [0, 1]."""


def parse_grade(reply: str) -> tuple[float, str]:
    """``(score, one-line reason)`` from a reply: JSON ``{"score": .., "reason": ..}`` or ``score: ..`` lines.

    >>> parse_grade('{"score": 0.75, "reason": "step 2 names a dog,\\n the box holds a cat"}')
    (0.75, 'step 2 names a dog, the box holds a cat')
    >>> parse_grade("Score: 1\\nReason: every step is true")
    (1.0, 'every step is true')
    """
    found = re.search(r"\{.*\}", reply, re.S)
    try:
        data = json.loads(found.group(0), strict=False) if found else {}  # a raw newline in the reason too
    except ValueError:
        data = {}
    if not isinstance(data, dict) or "score" not in data:
        score = re.search(r"score\W*([0-9.]+)", reply, re.I)
        reason = re.search(r"reason\W*(.+)", reply, re.I | re.S)
        data = {"score": score.group(1) if score else None, "reason": reason.group(1) if reason else ""}
    try:
        value = float(data["score"])
    except (TypeError, ValueError):
        raise BadGrade(f"no score in the reply {reply[:200]!r}") from None
    if not 0 <= value <= 1:
        raise BadGrade(f"score {value:g} is outside [0, 1]")
    return value, " ".join(str(data.get("reason") or "").split())[:REASON_CHARS]


def client_config(critic: CriticConfig, teacher, cache: str | None) -> OpenAIConfig:
    """The API settings the critic's client uses: the teacher's (limits, cost, batch, cache), its own
    connection, model and sampling."""
    base = with_teacher_cache(teacher if is_api(teacher) else OpenAIConfig(kind="openai", connection=critic.connection),
                              cache)
    conn = critic.connection or base.connection
    if critic.model:
        conn = conn.model_copy(update={"model": critic.model})
    request = base.request.model_copy(update={"temperature": critic.temperature, "max_tokens": critic.max_tokens})
    return base.model_copy(update={"connection": conn, "request": request})


def messages(record: Record, max_side: int, fmt: str) -> tuple[list[dict], tuple[int, int]]:
    """The critic's request: its prompt (with the teacher's legend of the steps), then the teacher's
    picture (the image, every step's boxes drawn in its colour and numbered); the picture's size."""
    image = numbered(downscale(record.image, max_side), [s.boxes for s in record.chain])
    text = prompts.render("critic", question=record.question, answer=record.answer, legend=legend(record),
                          trace=record.cot or "")
    return [{"role": "system", "content": text},
            {"role": "user", "content": [picture(data_url(image, fmt))]}], image.size


class Critic(Endpoint):
    """Grades one record at a time (the ``Teacher`` protocol ``Teach`` runs)."""

    def __init__(self, cfg: OpenAIConfig, min_score: float | None, run_id: str):
        super().__init__(cfg, run_id)
        self.min_score = min_score

    def prepare(self, record: Record):
        return messages(record, self.cfg.request.image_max_side, self.cfg.request.image_format)

    async def write(self, record: Record, request) -> Record:
        asked, size = request
        try:
            reply = await self.client.complete(asked, sizes=[size])
            score, reason = parse_grade(reply)
        except TeacherError as err:  # the client's reasons, named for this stage
            return record.reject(STAGE, err.reason.replace("teacher_", "critic_", 1), err.detail)
        except BadGrade as err:
            self.ledger.inc("bad_grades")
            return record.reject(STAGE, "critic_bad_grade", self.redact(str(err)))
        self.ledger.inc("graded")
        record.critic_score, record.critic_reason = score, reason
        if self.min_score is not None and score < self.min_score:
            record.reject(STAGE, "low_quality", f"score {score:g} < min_score {self.min_score:g}: {reason}")
        return record
