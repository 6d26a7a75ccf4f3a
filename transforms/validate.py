"""Validation of a written trajectory: grammar (per style), agreement with the chain or plan,
depth, answer, HIoU."""
from __future__ import annotations

from groundcot.schemas import boxes as B
from groundcot.schemas.answers import answers_match
from groundcot.schemas.codecs import decode_png16
from groundcot.schemas.cot import CotError, parse_cot
from groundcot.schemas.depth import box_depths, depth_close
from groundcot.schemas.record import Record
from groundcot.schemas.styles import parse_aperture, parse_mgpo, parse_textual

STAGE = "validate"


def check(record: Record, min_hiou: float = 0.5, box_tol: float = 0.01,
          depth_tol: float = 0.1) -> tuple[str, str] | None:
    """``(reason, detail)`` for the first rule the record's trajectory breaks, else None.

    Sets ``record.hiou`` (the last region vs the GT) once the grammar checks pass.
    """
    if (record.style or "sif") == "sif":
        return check_sif(record, min_hiou, box_tol, depth_tol)
    try:
        problem = STYLE_CHECKS[record.style](record, box_tol)
    except CotError as err:
        return f"grammar_{err.rule}", err.detail
    if problem is None and record.hiou is not None and record.hiou < min_hiou:
        return "low_hiou", f"HIoU {record.hiou} < {min_hiou}"
    return problem


def _gt_norm(record: Record) -> list[list[float]]:
    return [B.to_norm(b, record.width, record.height) for b in record.gt_boxes]


def _answer(record: Record, answer: str) -> tuple[str, str] | None:
    if record.answer_judged or answers_match(answer, record.answer):
        return None
    return "answer_mismatch", f"{answer!r} vs GT {record.answer!r}"


def check_textual(record: Record, box_tol: float):
    _, answer = parse_textual(record.turns[0] if len(record.turns) == 1 else "")
    return _answer(record, answer)


def check_mgpo(record: Record, box_tol: float):
    if len(record.turns) != 2:
        return "grammar_turn_count", f"{len(record.turns)} assistant turns, MGPO has 2"
    fw, fh = record.frame
    regions, answer = parse_mgpo(record.turns[0], record.turns[1], (fw, fh))
    predicted = [[x1 / fw, y1 / fh, x2 / fw, y2 / fh] for x1, y1, x2, y2 in (r.box for r in regions)]
    # MGPO's key region is one box holding all the evidence: compare with the GT's extent
    record.hiou = round(B.hiou(predicted, [B.enclosing(_gt_norm(record))]), 4)
    return _answer(record, answer)


def check_aperture(record: Record, box_tol: float):
    actions, answer = parse_aperture(record.turns)
    planned = record.actions
    if len(actions) != len(planned) or any(
            a.kind != p["action"] or max(abs(x - y) for x, y in zip(a.box, p["bbox_2d"])) > box_tol
            for a, p in zip(actions, planned)):
        return "action_mismatch", f"{[(a.kind, a.box) for a in actions]} vs plan {planned}"[:300]
    record.hiou = round(B.hiou([list(actions[-1].box)], [B.enclosing(_gt_norm(record))]), 4)
    return _answer(record, answer)


STYLE_CHECKS = {"textual": check_textual, "mgpo": check_mgpo, "aperture": check_aperture}


def check_sif(record: Record, min_hiou: float, box_tol: float, depth_tol: float) -> tuple[str, str] | None:
    """The SIF checks: grammar, the chain given, depths, answer, HIoU."""
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
    if problem := _answer(record, cot.answer):
        return problem
    record.hiou = round(B.hiou([a.box for a in cot.steps[-1].areas], _gt_norm(record)), 4)
    if record.hiou < min_hiou:
        return "low_hiou", f"HIoU {record.hiou} < {min_hiou}"
    return None


def validate(record: Record, **params) -> Record:
    problem = check(record, **params)
    return record.reject(STAGE, *problem) if problem else record
