"""Teachers write each record's trajectory in its style.

One protocol, one module per backend, each with its config section: ``template``
(offline, deterministic), ``api`` (online: a VLM behind an OpenAI-compatible API; ``client``
is its HTTP side) and ``batch`` (the API teacher's requests written as Batch API shards, and
the submit/status/collect jobs). ``connection`` builds every OpenAI client. ``dofn.Teach``
runs any teacher in Beam, many records in flight per worker.
"""
from __future__ import annotations

from typing import Any, Protocol

from groundcot.schemas.record import Record
from groundcot.transforms.teach.client import Ledger
from groundcot.transforms.teach.template import TemplateConfig, TemplateTeacher, write_template

STAGE = "teacher"


class Teacher(Protocol):
    name: str  # stored in each row's ``teacher`` column
    ledger: Ledger  # what the teacher spent, drained into Beam counters
    inline: bool  # write never waits (no I/O): run it on the Beam thread, not the event loop
    max_pending: int  # records a worker may hold in flight

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def redact(self, text: str) -> str:
        """``text`` with any secret removed."""

    def prepare(self, record: Record) -> Any:
        """CPU work for the request (runs on the Beam thread, may raise); the API teacher's is a
        ``styles.prefix.Request`` whose leading messages all styles of the record share."""

    async def write(self, record: Record, request: Any) -> Record:
        """The record with its turns and ``cot``, or rejected with a reason (an exception
        rejects it with ``error_<Type>``)."""

    def take_batch(self) -> list[dict]:
        """The Batch API request lines written down since the last call, to write as a shard
        (none unless the teacher's ``batch.enabled``)."""


def make_teacher(cfg, validate_params: dict, run_id: str = "run") -> Teacher:
    """The teacher a ``teacher`` config section names (an API teacher with ``batch.enabled``
    writes its requests down instead of sending them)."""
    if cfg.kind == "template":
        return TemplateTeacher()
    from groundcot.transforms.teach.api import ApiTeacher

    return ApiTeacher(cfg, validate_params, run_id)


def configs() -> tuple:
    """Every backend's config section, for the job config's ``teacher`` union."""
    from groundcot.transforms.teach.api import OpenAIConfig

    return TemplateConfig, OpenAIConfig


__all__ = ["STAGE", "Teacher", "TemplateTeacher", "configs", "make_teacher", "write_template"]
