"""Validation of a written trajectory: its style's grammar, agreement with the chain or
plan, depth, answer, and HIoU against the GT."""
from __future__ import annotations

from groundcot.schemas.cot import CotError
from groundcot.schemas.record import Record
from groundcot.transforms.styles import Checks, style_of

STAGE = "validate"


def check(record: Record, min_hiou: float = 0.5, box_tol: float = 0.01,
          depth_tol: float = 0.1) -> tuple[str, str] | None:
    """``(reason, detail)`` for the first rule the record's trajectory breaks, else None.

    Sets ``record.hiou`` (the last region vs the GT) once the grammar checks pass.
    """
    try:
        problem = style_of(record).check(record, Checks(min_hiou, box_tol, depth_tol))
    except CotError as err:
        return f"grammar_{err.rule}", err.detail
    if problem is None and record.hiou is not None and record.hiou < min_hiou:
        return "low_hiou", f"HIoU {record.hiou} < {min_hiou}"
    return problem


def validate(record: Record, **params) -> Record:
    problem = check(record, **params)
    return record.reject(STAGE, *problem) if problem else record
