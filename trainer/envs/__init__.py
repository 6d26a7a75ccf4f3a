"""Multi-turn environments for the styles that are not single-turn, one module per style.

``ENVIRONMENTS[style]`` is the environment class TRL's ``GRPOTrainer(environment_factory=...)``
instantiates per rollout (``environment(style, max_turns, ...)`` gives that factory); its public
methods are the tools. ``rollout`` runs the same episode with any text generator (``groundcot eval``).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

from groundcot.trainer.envs.aperture import ApertureEnv
from groundcot.trainer.envs.base import Environment
from groundcot.trainer.envs.mgpo import MgpoEnv
from groundcot.trainer.rewards.text import tool_calls

ENVIRONMENTS: dict[str, type[Environment]] = {env.style: env for env in (MgpoEnv, ApertureEnv)}

__all__ = ["ENVIRONMENTS", "ApertureEnv", "Environment", "MgpoEnv", "environment", "rollout", "tools_of"]


def environment(style: str, max_turns: int, **settings) -> Callable[[], Environment]:
    """The factory of ``style``'s environment with a budget of ``max_turns`` tool calls per rollout."""
    if style not in ENVIRONMENTS:
        raise ValueError(f"style {style!r} has no multi-turn environment (known: {', '.join(ENVIRONMENTS)})")
    return partial(ENVIRONMENTS[style], max_calls=max_turns, **settings)


def tools_of(env: Environment) -> dict[str, Callable]:
    """The environment's tools by name, as TRL finds them (public methods but ``reset``)."""
    return {name: getattr(env, name) for name in dir(type(env))
            if not name.startswith("_") and name not in ("reset", "get_reward", "style")
            and callable(getattr(type(env), name))}


def _with_images(message: dict, images: list) -> dict:
    """The message with its image placeholders holding the PIL images, in order (TRL's form)."""
    images = iter(images)
    return {**message, "content": [{"type": "image", "image": next(images)} if p["type"] == "image" else p
                                   for p in message["content"]]}


def rollout(style: str, row: dict, generate: Callable[[list[dict]], str], max_turns: int, **settings) -> dict:
    """One multi-turn episode of ``style`` on ``row`` (a run's row) through its environment.

    ``generate(messages)`` returns the model's next assistant text; a ``<tool_call>`` in it is run
    (at most ``max_turns`` turns with tool calls, as TRL's ``max_tool_calling_iterations``) and its
    result comes back as a ``tool`` message with the crop as an image part. Returns the messages, the
    assistant turns as one text, and the counts TRL's path logs.
    """
    from groundcot.trainer.data import multiturn_row

    example = multiturn_row({**row, "style": style})
    env = environment(style, max_turns, **settings)()
    env.reset(**example)
    tools = tools_of(env)
    messages = [_with_images(example["prompt"][0], example["images"])]
    texts, calls, unknown = [], 0, 0
    for turn in range(max_turns + 1):
        text = generate(messages)
        texts.append(text)
        messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
        found = tool_calls(text)
        if not found or turn == max_turns:
            break
        for call in found:
            calls, counted = calls + 1, env.failed
            try:
                if call["name"] not in tools:
                    raise ValueError(call.get("error") or f"Tool {call['name']} not found.")
                result = tools[call["name"]](**call["arguments"])
            except Exception as err:  # noqa: BLE001 - as TRL: a failing tool answers {"error": ...}
                unknown += env.failed == counted  # failures the environment did not count (bad name, arguments)
                result = {"error": str(err)}
            messages.append({"role": "tool", "name": call["name"],
                             "content": result if isinstance(result, list) else str(result)})
    return {"messages": messages, "completion": "\n\n".join(texts), "tool_calls": calls,
            "failed_tool_calls": env.failed + unknown, "images_added": env.images_added}
