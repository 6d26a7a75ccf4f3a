"""aperture (TikArt's Think-Aperture-Observe): one action per focus step of the chain,
``<zoom>[..]</zoom>`` (a rectangle crop) or ``<segment>[..]</segment>`` (a SAM2 mask crop,
for a single GT object that fills little of its box); each action is followed by its crop
and an ``<observe>``; the last turn ends with ``<answer>``."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import ClassVar

from PIL import Image

from groundcot.schemas import boxes as B
from groundcot.schemas.codecs import decode_mask
from groundcot.schemas.cot import CotError, plain_text
from groundcot.schemas.record import Record
from groundcot.transforms.crops import crop, png
from groundcot.transforms.styles.base import (
    Checks,
    CropSettings,
    Problem,
    Style,
    answer_problem,
    gt_norm,
    text_part,
)
from groundcot.transforms.styles.pictures import crop_url, picture
from groundcot.transforms.styles.prefix import Request
from groundcot.transforms.styles.words import distance, position, what

FOCUS = ("union", "expansion", "gt")
_TURN = re.compile(r"\s*(?:<observe>(?P<observe>.*?)</observe>)?\s*<think>(?P<think>.*?)</think>\s*"
                   r"<(?P<action>zoom|segment)>(?P<box>.*?)</(?P=action)>\s*", re.S)
_LAST = re.compile(r"\s*<observe>(?P<observe>.*?)</observe>\s*(?:<think>(?P<think>.*?)</think>\s*)?"
                   r"<answer>(?P<answer>.*?)</answer>\s*", re.S)
BIBTEX = ("@article{ding2026tikart,\n  title={TikArt: Aperture-Guided Observation for Fine-Grained Visual Reasoning "
          "via Reinforcement Learning},\n  author={Ding, Hao and Yang, Zhichuan and Ge, Weijie and Gao, Ziqin and "
          "Lu, Chaoyi and Zhao, Lei},\n  journal={arXiv preprint arXiv:2602.14482},\n  year={2026}\n}")


@dataclass(frozen=True)
class Action:
    kind: str  # zoom | segment
    box: tuple[float, float, float, float]


def _norm_box(raw: str) -> tuple[float, float, float, float]:
    try:
        box = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CotError("action_box_not_json", raw[:60]) from err
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise CotError("action_box_not_4_numbers", raw[:60])
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
        raise CotError("action_box_out_of_range", raw[:60])
    return x1, y1, x2, y2


def parse_aperture(turns: list[str]) -> tuple[list[Action], str]:
    """(actions, answer) of a Think-Aperture-Observe trajectory (the assistant turns)."""
    if len(turns) < 2:
        raise CotError("no_actions", "at least one action turn and a final turn")
    actions = []
    for i, turn in enumerate(turns[:-1]):
        m = _TURN.fullmatch(turn)
        if m is None:
            raise CotError("bad_action_turn", f"turn {i + 1}: expected [<observe>] <think> <zoom|segment>")
        if (m.group("observe") is None) != (i == 0):
            raise CotError("observe_misplaced", f"turn {i + 1}: observe after every action, not before the first")
        if i:
            plain_text(m.group("observe"), "observe")
        plain_text(m.group("think"), "think")
        actions.append(Action(m.group("action"), _norm_box(m.group("box"))))
    last = _LAST.fullmatch(turns[-1])
    if last is None:
        raise CotError("bad_final_turn", "expected <observe> [<think>] <answer>")
    plain_text(last.group("observe"), "observe")
    return actions, plain_text(last.group("answer"), "answer")


def split_aperture(reply: str) -> list[str]:
    """One reply holding the whole trajectory -> its assistant turns (cut after each action)."""
    parts = re.split(r"(?<=</zoom>)|(?<=</segment>)", reply.strip())
    return [p.strip() for p in parts if p.strip()]


FILLS = 0.8  # a mask covering less of its GT box's pixels than this is segmented, not zoomed


def irregular(mask, box: list[float]) -> bool:
    """A (decoded) mask that covers little of its box's pixels (what spills outside the box does not
    count): a segment crop shows the object better than a rectangle."""
    x1, y1, x2, y2 = (max(0, round(v)) for v in box)
    inside = mask[y1:y2, x1:x2]
    return inside.size > 0 and 0 < inside.mean() < FILLS


def box_text(box) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in box) + "]"


class Aperture(Style):
    name = "aperture"
    reward_parts = ("aperture",)
    columns = ("actions", "crops")
    crops_per_record = 3  # at most one per focus step: union, expansion, gt
    single_turn = False
    card_text = ("TikArt-style Think-Aperture-Observe: zoom / segment actions, each followed by its crop and an "
                 "observation.")
    citation = ("TikArt", BIBTEX)
    teacher_prompt, train_prompt = "teacher_aperture", "aperture_train"
    plans_crops = True
    # multi-turn RL (trainer/envs/aperture.py): the zoom and segment tools, their prompt words, AGRPO
    multiturn_prompt, observe_prompt = "aperture_multiturn", "aperture_observe"
    multiturn_reward_parts = ("agrpo",)
    prompt_texts: ClassVar[dict[str, str]] = {
        "aperture_multiturn": (
            "$question\nLook closer when you need to. In each turn think in <think></think>, then call a tool: "
            "zoom to see a rectangle, or segment to see only the object there, the box normalised to [0, 1]:\n"
            "<tool_call>\n{\"name\": \"zoom\", \"arguments\": {\"box\": [x1, y1, x2, y2]}}\n</tool_call>\n"
            "You then get the crop; describe it in <observe></observe>. When you know, answer in <answer></answer>."),
        "aperture_observe": "This is the $action crop. Describe it in <observe></observe>, then act again or answer.",
    }

    def plan(self, record: Record, image: Image.Image | None, crops: CropSettings) -> None:
        steps = [s for s in record.chain if s.kind in FOCUS] or record.chain[-1:]
        actions, pieces = [], []
        for step in steps:
            box = B.enclosing(step.boxes)
            mask = decode_mask(record.masks[0]) if (step.kind == "gt" and len(record.masks or []) == 1) else None
            if mask is not None and irregular(mask, record.gt_boxes[0]):
                piece, _ = crop(image, box, mask=mask, min_side=crops.min_side, max_aspect=crops.max_aspect)
                kind = "segment"
            else:
                piece, _ = crop(image, box, min_side=crops.min_side, max_aspect=crops.max_aspect)
                kind = "zoom"
            actions.append({"action": kind, "bbox_2d": box, "step": step.kind,
                            "depth": step.depths[0] if step.depths else None})
            pieces.append(png(piece))
        record.actions, record.crops = actions, pieces

    def template(self, record: Record) -> list[str]:
        turns, said = [], ""
        for action in record.actions:
            how = "segment the object" if action["action"] == "segment" else "zoom in"
            lead = f"The question is: {record.question}" if not turns else "To see more,"
            think = f"{lead} I {how} at the {position(action['bbox_2d'])}."
            opening = "" if not turns else f"<observe>{said}</observe>\n"
            tag = action["action"]
            turns.append(f"{opening}<think>{think}</think>\n<{tag}>{box_text(action['bbox_2d'])}</{tag}>")
            said = (f"The crop shows {what(record)}." if action["step"] == "gt"
                    else f"The crop brings {what(record)} closer{distance(action.get('depth'), numbers=False)}.")
        turns.append(f"<observe>{said}</observe>\n<answer>{record.answer}</answer>")
        return turns

    def request(self, record: Record, prefix: Request) -> Request:
        """The shared prefix, then each planned action with the crop it returns."""
        fmt = prefix.fmt
        content, sizes = [text_part(self.prompt(self.teacher_prompt))], []
        for i, (action, piece) in enumerate(zip(record.actions, record.crops), 1):
            sent = action["action"] != "zoom" or prefix.crop_adds_detail()  # else its pixels are in the image
            line = self.prompt("teacher_action", index=i, n_actions=len(record.actions), action=action["action"],
                                  box=box_text(action["bbox_2d"]),
                                  returns="this crop:" if sent else "that region of the image above, as it is.")
            if not sent:
                content.append({"type": "text", "text": line})
                continue
            url, size = crop_url(piece, fmt, prefix.max_side)
            content += [{"type": "text", "text": line}, picture(url)]
            sizes.append(size)
        return prefix.then(content, sizes)

    def reply(self, record: Record, text: str) -> list[str]:
        return split_aperture(super().reply(record, text)[0])

    def answer(self, record: Record) -> str:
        return parse_aperture(record.turns)[1]

    def check(self, record: Record, checks: Checks) -> Problem:
        actions, answer = parse_aperture(record.turns)
        planned = record.actions
        if len(actions) != len(planned) or any(
                a.kind != p["action"] or max(abs(x - y) for x, y in zip(a.box, p["bbox_2d"])) > checks.box_tol
                for a, p in zip(actions, planned)):
            return "action_mismatch", f"{[(a.kind, a.box) for a in actions]} vs plan {planned}"[:300]
        record.hiou = round(B.hiou([list(actions[-1].box)], [B.enclosing(gt_norm(record))]), 4)
        return answer_problem(record, answer)
