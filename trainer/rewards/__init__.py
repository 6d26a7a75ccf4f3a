"""Rewards in TRL's shape: ``f(completions, **columns) -> list[float | None]``, one module per family.

- ``format``, ``answer``, ``box``, ``depth``: GRPO-SIF's four (REFERENCE.md section 2), in
  groundcot's stricter forms (``format.py``, ``answer.py``, ``box.py``, ``depth.py``);
  ``sifthinker.py`` has them as SIFThinker's released code computes them (``reward_set: sifthinker``).
- ``boxed_answer`` (MGPO, ``mgpo.py``), ``consistency`` (iVGR, ``consistency.py``),
  ``aperture`` (the aperture style, ``aperture.py``); the answer judges in ``judge.py``.
- The multi-turn rollouts' (``trainer/envs``): ``mgpo_format`` and ``grounding_iou`` (``mgpo.py``),
  ``agrpo`` (TikArt's AGRPO, ``agrpo.py``); a style names them in ``multiturn_reward_parts``.
- ``registry.py``: the one table both TRL and verl read (``get_reward``, ``select``, ``style_parts``).

>>> c = '<think><area>[{"bbox_2d": [0, 0, 1, 1], "depth": 0.5}]</area><text>All.</text></think><answer>no</answer>'
>>> format_reward([c]), answer_reward([c], answer=["No"])
([1.0], [1.0])
"""
from groundcot.trainer.rewards.agrpo import agrpo_reward
from groundcot.trainer.rewards.answer import ProgressAnswerReward, answer_reward
from groundcot.trainer.rewards.aperture import aperture_reward
from groundcot.trainer.rewards.box import box_reward
from groundcot.trainer.rewards.consistency import consistency_reward
from groundcot.trainer.rewards.depth import depth_reward
from groundcot.trainer.rewards.format import format_reward
from groundcot.trainer.rewards.judge import GradedJudge, OpenAIJudge
from groundcot.trainer.rewards.mgpo import boxed_answer_reward, grounding_iou_reward, mgpo_format_reward
from groundcot.trainer.rewards.registry import PARTS, REWARDS, get_reward, make_judge, select, style_parts

__all__ = ["PARTS", "REWARDS", "GradedJudge", "OpenAIJudge", "ProgressAnswerReward", "agrpo_reward", "answer_reward",
           "aperture_reward", "box_reward", "boxed_answer_reward", "consistency_reward", "depth_reward",
           "format_reward", "get_reward", "grounding_iou_reward", "make_judge", "mgpo_format_reward", "select",
           "style_parts"]
