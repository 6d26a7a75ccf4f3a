"""sif (SIFThinker): ``<think>`` with ``<area>`` (boxes + depths) and ``<text>`` pairs over
the reverse-expanded chain, coarse to fine, then ``<answer>``."""
from __future__ import annotations

from groundcot import prompts
from groundcot.schemas import boxes as B
from groundcot.schemas.codecs import decode_png16
from groundcot.schemas.cot import Cot, Step, parse_cot, render_area, render_cot
from groundcot.schemas.depth import box_depths, depth_close
from groundcot.schemas.record import Record
from groundcot.transforms.styles.base import Checks, Problem, Style, answer_problem, gt_norm
from groundcot.transforms.styles.pictures import downscale, picture, with_boxes
from groundcot.transforms.styles.words import observe

ROLES = {"full": "the whole image", "distractor": "a distractor: a nearby region without the answer",
         "union": "the region spanning all the evidence", "expansion": "closer to the evidence",
         "gt": "the evidence"}


def chain_request(record: Record, max_side: int, fmt: str, system_prompt: str) -> list[dict]:
    """The system prompt, then per chain step a line with its areas and the image with them drawn."""
    image = downscale(record.image, max_side)
    n = len(record.chain)
    content: list[dict] = []
    for i, step in enumerate(record.chain, 1):
        line = prompts.render("teacher_step", index=i, n_steps=n, role=ROLES.get(step.kind, step.kind),
                              area=render_area(step.areas()))
        content += [{"type": "text", "text": line}, picture(with_boxes(image, step.boxes, fmt))]
    system = prompts.render(system_prompt, question=record.question, answer=record.answer, n_steps=n)
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


class Sif(Style):
    name = "sif"

    def template(self, record: Record) -> list[str]:
        steps = tuple(Step(step.areas(), observe(step, record)) for step in record.chain)
        return [render_cot(Cot(steps, record.answer))]

    def request(self, record: Record, max_side: int, fmt: str) -> list[dict]:
        return chain_request(record, max_side, fmt, "teacher_sif")

    def answer(self, record: Record) -> str:
        return parse_cot(record.cot or "", require_depth=False).answer

    def check(self, record: Record, checks: Checks) -> Problem:
        """The chain given (same steps, boxes within ``box_tol``), depths, answer; HIoU of the last area."""
        has_depth = record.depth_map is not None
        cot = parse_cot(record.cot or "", require_depth=has_depth)
        if len(cot.steps) != len(record.chain):
            return "chain_length_mismatch", f"{len(cot.steps)} steps, chain has {len(record.chain)}"
        for i, (step, link) in enumerate(zip(cot.steps, record.chain), 1):
            stated = [list(a.box) for a in step.areas]
            if len(stated) != len(link.boxes) or any(
                    max(abs(s - g) for s, g in zip(sb, gb)) > checks.box_tol for sb, gb in zip(stated, link.boxes)):
                return "chain_box_mismatch", f"step {i}: {stated} vs chain {link.boxes}"
        if has_depth:
            depth = decode_png16(record.depth_map)
            for i, step in enumerate(cot.steps, 1):
                true = box_depths(depth, [a.box for a in step.areas])
                if not all(depth_close(a.depth, t, checks.depth_tol) for a, t in zip(step.areas, true)):
                    return "depth_mismatch", f"step {i}: stated {[a.depth for a in step.areas]}, map {true}"
        if problem := answer_problem(record, cot.answer):
            return problem
        record.hiou = round(B.hiou([a.box for a in cot.steps[-1].areas], gt_norm(record)), 4)
        return None
