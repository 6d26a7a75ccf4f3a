"""groundcot's ``depth`` reward: the share of stated depths within 10% of the map's box mean."""
from __future__ import annotations

from groundcot.schemas.codecs import decode_png16
from groundcot.schemas.depth import box_depths, depth_close
from groundcot.trainer.rewards.format import cot_of
from groundcot.trainer.rewards.text import per_depth_map


def _depth_share(completion, png: bytes) -> float:
    cot = cot_of(completion)
    areas = [a for step in cot.steps for a in step.areas] if cot else []
    if not areas:
        return 0.0
    true = box_depths(decode_png16(png), [a.box for a in areas])
    return sum(a.depth is not None and depth_close(a.depth, t) for a, t in zip(areas, true)) / len(areas)


def depth_reward(completions, depth_map, **kwargs) -> list[float | None]:
    """Share of stated depths within 10% of the depth map's mean inside their box (None: no map)."""
    return per_depth_map(completions, depth_map, _depth_share)
