"""mgpo (two-turn grounding): turn 1 is the key region as fenced JSON
``[{"bbox_2d": [..], "label": ..}]`` in whole pixels of the frame the model sees; turn 2
sees the crop of that region (cut from the full-resolution image) and the question again,
reasons, and answers in ``\\boxed{}``."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import ClassVar

from PIL import Image

from groundcot.schemas import boxes as B
from groundcot.schemas.cot import CotError, plain_text
from groundcot.schemas.record import Record
from groundcot.transforms.crops import crop, png
from groundcot.transforms.styles.base import (
    IMAGE,
    Checks,
    CropSettings,
    Problem,
    Style,
    answer_problem,
    gt_norm,
    label_of,
    text_part,
)
from groundcot.transforms.styles.pictures import crop_url, picture
from groundcot.transforms.styles.prefix import Request
from groundcot.transforms.styles.words import position, what

_FENCED_JSON = re.compile(r"\s*```json\s*\n(.*?)\n?```\s*", re.S)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
BIBTEX = ("@article{huang2025mgpo,\n  title={High-Resolution Visual Reasoning via Multi-Turn Grounding-Based "
          "Reinforcement Learning},\n  author={Huang, Xinyu and Dong, Yuhao and Li, Wei and Wu, Jinming and Deng, "
          "Zihao and Li, Bo and Ma, Zejun},\n  journal={arXiv preprint arXiv:2507.05920},\n  year={2025}\n}")


@dataclass(frozen=True)
class Region:
    box: tuple[int, int, int, int]
    label: str


def parse_mgpo(turn1: str, turn2: str, frame: tuple[int, int]) -> tuple[list[Region], str]:
    """(regions in the frame, answer) of a two-turn MGPO trajectory."""
    m = _FENCED_JSON.fullmatch(turn1)
    if m is None:
        raise CotError("region_not_fenced_json", "turn 1 must be only a ```json fenced block")
    try:
        items = json.loads(m.group(1))
    except json.JSONDecodeError as err:
        raise CotError("region_not_json", err.msg) from err
    if not isinstance(items, list) or not items:
        raise CotError("region_not_list")
    regions = []
    for item in items:
        box = item.get("bbox_2d") if isinstance(item, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) for v in box)):
            raise CotError("region_box_not_4_ints", repr(item)[:100])
        x1, y1, x2, y2 = box
        if not (0 <= x1 < x2 <= frame[0] and 0 <= y1 < y2 <= frame[1]):
            raise CotError("region_box_outside_frame", f"{box} in a {frame[0]}x{frame[1]} frame")
        regions.append(Region((x1, y1, x2, y2), str(item.get("label", ""))))
    boxed = _BOXED.findall(turn2)
    if len(boxed) != 1:
        raise CotError("not_one_boxed_answer", f"{len(boxed)} \\boxed{{}} in turn 2")
    plain_text(_BOXED.sub("", turn2), "reasoning")
    return regions, plain_text(boxed[0], "answer")


def model_frame(width: int, height: int, frame: str, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(w, h) of the image as the model sees it: its own size, or Qwen2.5-VL's resize."""
    if frame == "original":
        return width, height
    h, w = B.qwen_resize(height, width, factor=28, min_pixels=min_pixels, max_pixels=max_pixels)
    return w, h


def region_json(record: Record) -> str:
    region = record.actions[0]
    return json.dumps([{"bbox_2d": region["bbox_2d"], "label": region["label"]}])


def region_turn(record: Record) -> str:
    """Turn 1: the planned region, as the model should say it."""
    return f"```json\n{region_json(record)}\n```"


class Mgpo(Style):
    name = "mgpo"
    reward_parts = ("boxed_answer",)
    columns = ("frame", "actions", "crops")
    crops_per_record = 1
    single_turn = False
    card_text = "MGPO's two-turn grounding: the model names the key region (frame pixels), sees the crop, answers."
    citation = ("MGPO", BIBTEX)
    teacher_prompt, train_prompt = "teacher_mgpo", "mgpo_train"
    plans_crops = True
    # multi-turn RL (trainer/envs/mgpo.py): the crop tool, its prompt words, MGPO's rewards
    multiturn_prompt, crop_prompt, full_image_prompt = "mgpo_multiturn", "mgpo_turn2", "mgpo_full_image"
    multiturn_reward_parts = ("boxed_answer", "mgpo_format")
    prompt_texts: ClassVar[dict[str, str]] = {
        "mgpo_multiturn": (
            "$question\nFirst find the region of the image that answers the question: call the crop tool with "
            "its box in pixel coordinates of this ${width}x${height} image, as\n<tool_call>\n{\"name\": \"crop\", "
            "\"arguments\": {\"bbox_2d\": [x1, y1, x2, y2], \"label\": \"what it is\"}}\n</tool_call>\n"
            "You then get that region cropped from the full-resolution image."),
        # MGPO's fallback when the box is unusable: the whole image again (its ori_image_token_prompt)
        "mgpo_full_image": ("That region could not be cropped, so here is the whole image again. $question\n"
                            "Reason about it, then give the final answer as \\boxed{answer}."),
    }

    def plan(self, record: Record, image: Image.Image | None, crops: CropSettings) -> None:
        fw, fh = model_frame(record.width, record.height, crops.frame, crops.min_pixels, crops.max_pixels)
        x1, y1, x2, y2 = B.enclosing(record.gt_boxes)
        sx, sy = fw / record.width, fh / record.height
        region = [max(0, math.floor(x1 * sx)), max(0, math.floor(y1 * sy)),
                  min(fw, math.ceil(x2 * sx)), min(fh, math.ceil(y2 * sy))]
        piece, _ = crop(image, region, frame=(fw, fh), min_side=crops.min_side, max_aspect=crops.max_aspect)
        record.frame, record.crops = [fw, fh], [png(piece)]
        record.actions = [{"bbox_2d": region, "label": label_of(record)}]

    def template(self, record: Record) -> list[str]:
        turn2 = (f"The crop shows {what(record)} up close, at the {position(record.chain[-1].boxes[0])} of the image. "
                 f"It settles the question: \\boxed{{{record.answer}}}")
        return [region_turn(record), turn2]

    def request(self, record: Record, prefix: Request) -> Request:
        """The shared prefix, then the planned region and its crop; the teacher writes turn 2."""
        fw, fh = record.frame
        shown = ("The crop of that region at full resolution follows." if prefix.crop_adds_detail() else
                 "The image above is already at full resolution: the crop is that region of it.")
        text = text_part(self.prompt(self.teacher_prompt, region=region_json(record), frame=f"{fw}x{fh}",
                                     last=len(record.chain), crop=shown))
        if not prefix.crop_adds_detail():
            return prefix.then([text])
        url, size = crop_url(record.crops[0], prefix.fmt, prefix.max_side)
        return prefix.then([text, picture(url)], [size])

    def reply(self, record: Record, text: str) -> list[str]:
        return [region_turn(record), text.strip()]

    def _parse(self, record: Record):
        if len(record.turns) != 2:
            raise CotError("turn_count", f"{len(record.turns)} assistant turns, MGPO has 2")
        return parse_mgpo(record.turns[0], record.turns[1], tuple(record.frame))

    def answer(self, record: Record) -> str:
        return self._parse(record)[1]

    def check(self, record: Record, checks: Checks) -> Problem:
        regions, answer = self._parse(record)
        fw, fh = record.frame
        predicted = [[x1 / fw, y1 / fh, x2 / fw, y2 / fh] for x1, y1, x2, y2 in (r.box for r in regions)]
        # MGPO's key region is one box holding all the evidence: compare with the GT's extent
        record.hiou = round(B.hiou(predicted, [B.enclosing(gt_norm(record))]), 4)
        return answer_problem(record, answer)

    def follow_up(self, record: Record) -> list[dict]:
        return [IMAGE, text_part(self.prompt("mgpo_turn2", question=record.question))]
