"""The offline baseline teacher: each style's template turns, from what the record knows."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from groundcot.schemas.record import Record
from groundcot.transforms.styles import style_of
from groundcot.transforms.teach.backend import Backend
from groundcot.transforms.teach.client import Ledger


class TemplateConfig(BaseModel):
    """``teacher: {kind: template}``."""

    model_config = ConfigDict(extra="forbid")
    offline_baseline: ClassVar[bool] = True  # stats.json and the plan call it so
    kind: Literal["template"] = Field("template", description="template: offline deterministic baseline.")


def write_template(record: Record) -> Record:
    """The record with its style's template turns (deterministic, offline)."""
    record.turns, record.teacher = style_of(record).template(record), TemplateTeacher.name
    record.cot = "\n\n".join(record.turns)
    return record


class TemplateTeacher:
    """The ``Teacher`` that needs no model: nothing to prepare, nothing to wait for."""

    name = "template"
    inline = True
    max_pending = 1

    def __init__(self):
        self.ledger = Ledger()  # stays empty

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def redact(self, text: str) -> str:
        return text

    def prepare(self, record: Record) -> None:
        return None

    async def write(self, record: Record, request: None = None) -> Record:
        return write_template(record)

    def take_batch(self) -> list[dict]:
        return []


BACKEND = Backend(TemplateConfig, lambda cfg, validate_params, run_id="run": TemplateTeacher())
