"""The one reward registry, used by ``groundcot train grpo`` (TRL) and by verl's ``compute_score``.

``REWARDS[reward_set][part](progress_bonus=, judge=, depth_colormap=)`` builds a part's reward
function in TRL's shape, ``f(completions, **columns) -> list[float | None]`` (the answer part
uses the bonus and the judge; sifthinker's depth part reads the map as SIFThinker reads the depth
image drawn with ``depth_colormap``). The parts a style is scored with are the style's own
``reward_parts`` (``groundcot.transforms.styles``).
"""
from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from groundcot.trainer.rewards import sifthinker as S
from groundcot.trainer.rewards.agrpo import agrpo_reward
from groundcot.trainer.rewards.answer import ProgressAnswerReward
from groundcot.trainer.rewards.aperture import aperture_reward
from groundcot.trainer.rewards.box import box_reward
from groundcot.trainer.rewards.consistency import consistency_reward
from groundcot.trainer.rewards.depth import depth_reward
from groundcot.trainer.rewards.format import format_reward
from groundcot.trainer.rewards.judge import GradedJudge, OpenAIJudge
from groundcot.trainer.rewards.mgpo import boxed_answer_reward, grounding_iou_reward, mgpo_format_reward


def _plain(f: Callable) -> Callable:
    return lambda **options: f


_GROUNDCOT = {"format": _plain(format_reward),
              "answer": lambda progress_bonus, judge, **_: ProgressAnswerReward(judge, progress_bonus),
              "box": _plain(box_reward), "depth": _plain(depth_reward), "boxed_answer": _plain(boxed_answer_reward),
              "consistency": _plain(consistency_reward), "aperture": _plain(aperture_reward),
              # the multi-turn rollouts' parts (trainer/envs): MGPO's format and grounding, TikArt's AGRPO
              "mgpo_format": _plain(mgpo_format_reward), "grounding_iou": _plain(grounding_iou_reward),
              "agrpo": _plain(agrpo_reward)}
REWARDS: dict[str, dict[str, Callable]] = {
    "groundcot": _GROUNDCOT,
    # SIFThinker's exact forms of GRPO-SIF's four; the other styles' parts are groundcot's
    "sifthinker": {**_GROUNDCOT, "format": _plain(S.format_reward), "box": _plain(S.box_reward),
                   "depth": lambda depth_colormap, **_: S.DepthReward(depth_colormap),
                   "answer": lambda progress_bonus, judge, **_: S.BatchMeanProgress(judge, progress_bonus)},
}
JUDGES = {"groundcot": OpenAIJudge, "sifthinker": GradedJudge}
GROUP = "groundcot.rewards"


def discover(found=None) -> None:
    """Add each entry point of ``groundcot.rewards`` (name: the part; value: a factory taking the options
    above and returning a TRL-shaped reward function) to every reward set that lacks that part."""
    for point in entry_points(group=GROUP) if found is None else found:
        try:
            factory = point.load()
            if not callable(factory) or point.name in _GROUNDCOT:
                raise TypeError(f"not a reward factory with a new part name (taken: {', '.join(_GROUNDCOT)})")
        except Exception as err:  # noqa: BLE001 - any failure of a plugin is one line naming it
            raise ValueError(f"entry point {point.name} = {point.value} ({GROUP}): "
                             f"{type(err).__name__}: {err}".replace("\n", " ")) from None
        for parts in REWARDS.values():
            parts.setdefault(point.name, factory)


discover()
PARTS = tuple(REWARDS["groundcot"])


def get_reward(part: str, reward_set: str = "groundcot", progress_bonus: bool = False, judge=None,
               depth_colormap: str = "Spectral_r") -> Callable:
    """The reward function for ``part`` in ``reward_set``."""
    if reward_set not in REWARDS:
        raise ValueError(f"reward_set {reward_set!r}: use {' or '.join(REWARDS)}")
    if part not in REWARDS[reward_set]:
        raise ValueError(f"reward {part!r}: unknown (known: {', '.join(PARTS)})")
    return REWARDS[reward_set][part](progress_bonus=progress_bonus, judge=judge, depth_colormap=depth_colormap)


def make_judge(reward_set: str, **settings):
    """The reward set's answer judge (groundcot: yes/no; sifthinker: a graded score)."""
    return JUDGES[reward_set](**settings)


def style_parts(style: str, multiturn: bool = False) -> tuple[str, ...]:
    """The reward parts ``style`` is scored with (its ``reward_parts``; with ``multiturn``, those of its
    multi-turn rollout, ``multiturn_reward_parts``)."""
    from groundcot.transforms.styles import STYLES

    attribute = "multiturn_reward_parts" if multiturn else "reward_parts"
    if style not in STYLES or not getattr(STYLES[style], attribute, ()):
        have = [n for n, s in STYLES.items() if getattr(s, attribute, ())]
        raise ValueError(f"style {style!r} has no {'multi-turn ' * multiturn}reward (known: {', '.join(have)})")
    return tuple(getattr(STYLES[style], attribute))


def select(weights: dict[str, float], progress_bonus: bool = True, judge=None, reward_set: str = "groundcot",
           depth_colormap: str = "Spectral_r") -> tuple[list, list[float]]:
    """The reward functions named in ``weights`` (zero weights left out), and their weights, in TRL's form."""
    names = [n for n, w in weights.items() if w]
    funcs = [get_reward(n, reward_set, progress_bonus, judge, depth_colormap) for n in names]
    return funcs, [float(weights[n]) for n in names]
