"""groundcot's ``box`` reward: H_end + max(0, H_end - H_ini), HIoU against the GT boxes."""
from __future__ import annotations

from groundcot.schemas.boxes import hiou
from groundcot.trainer.rewards.format import cot_of

FULL = (0.0, 0.0, 1.0, 1.0)


def box_reward(completions, gt_boxes, **kwargs) -> list[float]:
    """H_end + max(0, H_end - H_ini): HIoU of the last area, and of the first that is not the whole image."""
    out = []
    for c, gt in zip(completions, gt_boxes):
        cot = cot_of(c)
        if cot is None:
            out.append(0.0)
            continue
        areas = [[list(a.box) for a in step.areas] for step in cot.steps]
        h_end = hiou(areas[-1], gt)
        first = next((a for a in areas if not (len(a) == 1 and tuple(a[0]) == FULL)), areas[-1])
        out.append(h_end + max(0.0, h_end - hiou(first, gt)))
    return out
