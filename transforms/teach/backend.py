"""What every teacher backend is: the ``Teacher`` protocol, and a ``Backend`` pairing a config
section with how its teacher is made (each backend module has one, ``BACKEND``)."""
from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from groundcot.schemas.record import Record
from groundcot.transforms.teach.client import Ledger

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
        """CPU work for the request (may raise; on the event loop in the record's task, or on the Beam
        thread for an ``inline`` teacher); the API teacher's is a
        ``styles.prefix.Request`` whose leading messages all styles of the record share."""

    async def write(self, record: Record, request: Any) -> Record:
        """The record with its turns and ``cot``, or rejected with a reason (an exception
        rejects it with ``error_<Type>``)."""

    def take_batch(self) -> list[dict]:
        """The Batch API request lines written down since the last call, to write as a shard
        (none unless the teacher's ``batch.enabled``)."""


@dataclass(frozen=True)
class Backend:
    """A teacher backend: its config section (a pydantic model with ``kind: Literal[...]``) and how
    a teacher is made from it. Each backend module has one (``BACKEND``); other packages add theirs
    under the entry-point group ``groundcot.teachers``."""

    config: type
    make: Callable[..., Teacher]  # (config, validate_params, run_id) -> Teacher

    @property
    def kind(self) -> str:
        return typing.get_args(self.config.model_fields["kind"].annotation)[0]
