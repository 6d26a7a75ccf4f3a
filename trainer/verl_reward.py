"""groundcot's rewards as a verl custom reward function.

verl's reward managers call ``compute_score(data_source=..., solution_str=..., ground_truth=...,
extra_info=...)`` once per rollout (plus ``custom_reward_function.reward_kwargs``); select this
module with ``custom_reward_function.path=<this file>`` and ``custom_reward_function.name=compute_score``.
The verl export (``groundcot export RUN --format verl``) writes the ``extra_info`` it reads:
``style``, ``question``, ``gt_boxes`` (normalised, as lists) and, for sif, ``depth_map``
(the 16-bit PNG's bytes).

Per style, the sum of (returned as ``score``, each part beside it for verl's logs):

- sif: ``format`` + ``answer`` + ``box`` + ``depth`` (GRPO-SIF's four, unweighted);
- textual: ``answer``; mgpo: ``boxed_answer``; aperture: ``aperture``.

The values are those of the TRL reward functions on the same completion (``trainer.rewards``,
or ``trainer.sifthinker`` with ``reward_set="sifthinker"``), without the answer's progress
bonus: verl scores each rollout on its own, so the bonus's memory of earlier steps has no
place here, and no judge is called (answers are matched).
"""
from __future__ import annotations

from groundcot.trainer import rewards as R

PARTS = {"sif": ("format", "answer", "box", "depth"), "textual": ("answer",), "mgpo": ("boxed_answer",),
         "aperture": ("aperture",)}


def _functions(reward_set: str) -> dict:
    table = {"format": R.format_reward, "answer": R.answer_reward, "box": R.box_reward, "depth": R.depth_reward,
             "boxed_answer": R.boxed_answer_reward, "aperture": R.aperture_reward}
    if reward_set == "sifthinker":
        from groundcot.trainer import sifthinker as S

        table.update(format=S.format_reward, box=S.box_reward, depth=S.depth_reward,
                     answer=lambda completions, answer, **kw: S.BatchMeanProgress().scores(
                         completions, answer, [""] * len(answer), [None] * len(answer)))
    elif reward_set != "groundcot":
        raise ValueError(f"reward_set {reward_set!r}: use groundcot or sifthinker")
    return table


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None,
                  reward_set: str = "groundcot", **kwargs) -> dict:
    """``{"score": total, <part>: value, ...}`` for one rollout (see the module docstring)."""
    info = extra_info or {}
    style = info.get("style") or "sif"
    if style not in PARTS:
        raise ValueError(f"{data_source}: style {style!r} has no reward (known: {', '.join(PARTS)})")
    boxes = info.get("gt_boxes")  # lists, or numpy arrays when verl hands its batch's objects
    gt_boxes = [[float(v) for v in box] for box in (boxes if boxes is not None else [])]
    columns = {"answer": [ground_truth], "gt_boxes": [gt_boxes], "depth_map": [info.get("depth_map") or None],
               "question": [info.get("question") or ""]}
    table = _functions(reward_set)
    out: dict[str, float] = {}
    for part in PARTS[style]:
        value = table[part]([solution_str], **columns)[0]
        if value is not None:  # no depth map: the depth part is left out, as TRL leaves out a None reward
            out[part] = float(value)
    return {"score": sum(out.values()), **out}
