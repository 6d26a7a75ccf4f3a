"""sif (SIFThinker): ``<think>`` with ``<area>`` (boxes + depths) and ``<text>`` pairs over
the reverse-expanded chain, coarse to fine, then ``<answer>``."""
from __future__ import annotations

from groundcot.schemas import boxes as B
from groundcot.schemas.codecs import decode_png16
from groundcot.schemas.cot import Cot, Step, parse_cot, render_cot
from groundcot.schemas.depth import box_depths, depth_close, with_depth_input
from groundcot.schemas.record import Record
from groundcot.transforms.styles.base import Checks, Problem, Style, answer_problem, gt_norm, text_part
from groundcot.transforms.styles.prefix import Request
from groundcot.transforms.styles.words import observe

BIBTEX = ("@article{chen2025sifthinker,\n  title={SIFThinker: Spatially-Aware Image Focus for Visual Reasoning},\n"
          "  author={Chen, Zhangquan and Zhao, Ruihui and Luo, Chuwei and Sun, Mingze and Yu, Xinlei and "
          "Kang, Yangyang and Huang, Ruqi},\n  journal={arXiv preprint arXiv:2508.06259},\n  year={2025}\n}")


def chain_request(style: Style, prefix: Request) -> Request:
    """The shared prefix (system text with every step's areas, the image), then the style's instruction."""
    return prefix.then([text_part(style.prompt(style.teacher_prompt))])


class Sif(Style):
    name = "sif"
    reward_parts = ("format", "answer", "box", "depth")
    columns = ("chain", "depth_map", "depth_image")
    card_text = ("SIFThinker's interleaved CoT: `<think>` alternating `<area>` (normalised boxes with depth) and "
                 "`<text>`, coarse to fine, then `<answer>`.")
    citation = ("SIFThinker", BIBTEX)
    teacher_prompt, train_prompt = "teacher_sif", "sif_train"

    def template(self, record: Record) -> list[str]:
        steps = tuple(Step(step.areas(), observe(step, record)) for step in record.chain)
        return [render_cot(Cot(steps, record.answer))]

    def request(self, record: Record, prefix: Request) -> Request:
        return chain_request(self, prefix)

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

    def conversation(self, record: Record) -> list[dict]:
        """As SIF-50K feeds LLaMA-Factory when the record has a depth image (``sif.depth_input``):
        ``Original image: <image>\nDepth image: <image>\n`` then the question and instruction;
        placeholders in order: the image, the depth image. Without one: the image, then the text."""
        out = super().conversation(record)
        if record.depth_image is not None:
            out[0] = {"role": "user", "content": with_depth_input(out[0]["content"][-1]["text"])}
        return out
