"""groundcot's rewards as a verl custom reward function.

verl's reward managers call ``compute_score(data_source=..., solution_str=..., ground_truth=...,
extra_info=...)`` once per rollout (plus ``reward.custom_reward_function.reward_kwargs``); select
this module with ``reward.custom_reward_function.path=<this file>`` and
``reward.custom_reward_function.name=compute_score`` (verl 0.9). The verl export
(``groundcot export RUN --format verl``) writes the ``extra_info`` it reads: ``style``,
``question``, ``gt_boxes`` (normalised, as lists) and, for sif, ``depth_map`` (the 16-bit PNG's bytes).

The parts summed (returned as ``score``, each part beside it for verl's logs) are the style's
``reward_parts`` (for the multi-turn rows of the export, ``extra_info.multiturn``, its
``multiturn_reward_parts``, read from the whole decoded response with its tool results), each computed by the same function TRL uses (``trainer.rewards.get_reward``),
without the answer's progress bonus: verl scores each rollout on its own, so the bonus's memory
of earlier steps has no place here, and no judge is called (answers are matched).
"""
from __future__ import annotations

from groundcot.trainer.rewards.registry import get_reward, style_parts


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None,
                  reward_set: str = "groundcot", **kwargs) -> dict:
    """``{"score": total, <part>: value, ...}`` for one rollout (see the module docstring)."""
    info = extra_info or {}
    try:
        parts = style_parts(info.get("style") or "sif", multiturn=bool(info.get("multiturn")))
    except ValueError as err:
        raise ValueError(f"{data_source}: {err}") from None
    boxes = info.get("gt_boxes")  # lists, or numpy arrays when verl hands its batch's objects
    gt_boxes = [[float(v) for v in box] for box in (boxes if boxes is not None else [])]
    frame = info.get("frame")
    columns = {"answer": [ground_truth], "gt_boxes": [gt_boxes], "depth_map": [info.get("depth_map") or None],
               "question": [info.get("question") or ""], "frame": [[int(v) for v in frame] if frame is not None else []]}
    out: dict[str, float] = {}
    for part in parts:
        value = get_reward(part, reward_set)([solution_str], **columns)[0]
        if value is not None:  # no depth map: the depth part is left out, as TRL leaves out a None reward
            out[part] = float(value)
    return {"score": sum(out.values()), **out}
