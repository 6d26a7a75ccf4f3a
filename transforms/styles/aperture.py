"""aperture (TikArt's Think-Aperture-Observe): one action per focus step of the chain,
``<zoom>[..]</zoom>`` (a rectangle crop) or ``<segment>[..]</segment>`` (a SAM2 mask crop,
for a single GT object that fills little of its box); each action is followed by its crop
and an ``<observe>``; the last turn ends with ``<answer>``."""
from __future__ import annotations

from PIL import Image

from groundcot import prompts
from groundcot.schemas import boxes as B
from groundcot.schemas.codecs import decode_mask
from groundcot.schemas.record import Record
from groundcot.schemas.styles import parse_aperture, split_aperture
from groundcot.transforms.crops import crop, png
from groundcot.transforms.styles.base import Checks, CropSettings, Problem, Style, answer_problem, gt_norm
from groundcot.transforms.styles.pictures import crop_url, picture
from groundcot.transforms.styles.prefix import Request, instruction
from groundcot.transforms.styles.words import distance, position, what

FOCUS = ("union", "expansion", "gt")


def irregular(mask: dict, box: list[float]) -> bool:
    """A mask that fills little of its box: a segment crop shows it better than a rectangle."""
    return mask["area"] > 0 and mask["area"] < 0.8 * max(B.area(box), 1.0)


def box_text(box) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in box) + "]"


class Aperture(Style):
    name = "aperture"
    reward_parts = ("aperture",)
    plans_crops = True

    def plan(self, record: Record, image: Image.Image | None, crops: CropSettings) -> None:
        steps = [s for s in record.chain if s.kind in FOCUS] or record.chain[-1:]
        actions, pieces = [], []
        for step in steps:
            box = B.enclosing(step.boxes)
            mask = record.masks[0] if (step.kind == "gt" and record.masks and len(record.masks) == 1) else None
            if mask is not None and irregular(mask, record.gt_boxes[0]):
                piece, _ = crop(image, box, mask=decode_mask(mask), min_side=crops.min_side,
                                max_aspect=crops.max_aspect)
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
        content, sizes = [instruction("teacher_aperture")], []
        for i, (action, piece) in enumerate(zip(record.actions, record.crops), 1):
            sent = action["action"] != "zoom" or prefix.crop_adds_detail()  # else its pixels are in the image
            line = prompts.render("teacher_action", index=i, n_actions=len(record.actions), action=action["action"],
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
