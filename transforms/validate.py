"""Validation of a written CoT: grammar, agreement with the chain, depth, answer, HIoU."""
from __future__ import annotations

from schemas import boxes as B
from schemas.answers import answers_match
from schemas.cot import CotError, parse_cot
from schemas.depth import depth_close
from schemas.record import Record
from transforms.depth import box_depths, decode_png16

STAGE = "validate"


def check(record: Record, min_hiou: float = 0.5, box_tol: float = 0.01,
          depth_tol: float = 0.1) -> tuple[str, str] | None:
    """``(reason, detail)`` for the first rule the record's CoT breaks, else None.

    Sets ``record.hiou`` (last area vs GT) once the grammar and chain checks pass.
    """
    has_depth = record.depth_map is not None
    try:
        cot = parse_cot(record.cot or "", require_depth=has_depth)
    except CotError as err:
        return f"grammar_{err.rule}", err.detail
    if len(cot.steps) != len(record.chain):
        return "chain_length_mismatch", f"{len(cot.steps)} steps, chain has {len(record.chain)}"
    for i, (step, link) in enumerate(zip(cot.steps, record.chain), 1):
        stated = [list(a.box) for a in step.areas]
        if len(stated) != len(link.boxes) or any(
                max(abs(s - g) for s, g in zip(sb, gb)) > box_tol for sb, gb in zip(stated, link.boxes)):
            return "chain_box_mismatch", f"step {i}: {stated} vs chain {link.boxes}"
    if has_depth:
        depth = decode_png16(record.depth_map)
        for i, step in enumerate(cot.steps, 1):
            true = box_depths(depth, [a.box for a in step.areas])
            if not all(depth_close(a.depth, t, depth_tol) for a, t in zip(step.areas, true)):
                return "depth_mismatch", f"step {i}: stated {[a.depth for a in step.areas]}, map {true}"
    if not record.answer_judged and not answers_match(cot.answer, record.answer):
        return "answer_mismatch", f"{cot.answer!r} vs GT {record.answer!r}"
    gt = [B.to_norm(b, record.width, record.height) for b in record.gt_boxes]
    record.hiou = round(B.hiou([a.box for a in cot.steps[-1].areas], gt), 4)
    if record.hiou < min_hiou:
        return "low_hiou", f"HIoU {record.hiou} < {min_hiou}"
    return None


def validate(record: Record, **params) -> Record:
    problem = check(record, **params)
    return record.reject(STAGE, *problem) if problem else record
