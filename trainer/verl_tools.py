"""groundcot's multi-turn tools for verl's tool agent loop (``agent_name: tool_agent``).

verl (0.9) reads ``actor_rollout_ref.rollout.multi_turn.tool_config_path``: a YAML file whose
``tools`` each name a ``class_name``, a ``config`` (``type: native``) and an OpenAI ``tool_schema``;
it builds each tool as ``cls(config=..., tool_schema=...)`` and, per call, runs ``create(create_kwargs=
extra_info.tools_kwargs[<tool>].create_kwargs)``, ``execute(instance_id, arguments)`` and ``release``.
``GroundcotTool`` is that class for every tool of a multi-turn style: the call runs the style's own
environment (``trainer.envs``) on the row's original image, so verl crops exactly as TRL and
``rollout`` do. ``tool_config(style)`` writes the YAML's contents (the schemas come from the
environment's methods, as TRL reads them). verl is imported only where installed; without it the
class keeps verl's interface over a stand-in base, so it can be checked here.
"""
from __future__ import annotations

from typing import Any
from uuid import uuid4

try:
    from verl.tools.base_tool import BaseTool
    from verl.tools.schemas import ToolResponse
except ImportError:  # verl is not installed: the same interface over stand-ins
    class BaseTool:  # type: ignore[no-redef]
        def __init__(self, config: dict, tool_schema):
            self.config, self.tool_schema, self.name = config, tool_schema, tool_schema.function.name

    class ToolResponse:  # type: ignore[no-redef]
        def __init__(self, text: str | None = None, image: list | None = None, video: list | None = None):
            self.text, self.image, self.video = text, image, video

CLASS = f"{__name__}.GroundcotTool"


def tool_schemas(style: str) -> list[dict]:
    """The OpenAI function schemas of ``style``'s tools (its environment's methods and docstrings)."""
    from transformers.utils import get_json_schema

    from groundcot.trainer.envs import ENVIRONMENTS, environment, tools_of

    environment(style, 1)  # a clear error for a style without one
    schemas = [get_json_schema(method) for method in tools_of(ENVIRONMENTS[style]()).values()]
    for schema in schemas:
        schema["function"].pop("return", None)  # not a field of verl's OpenAIFunctionSchema
    return schemas


def tool_config(style: str, **settings) -> dict:
    """The tool config YAML tree verl's ``initialize_tools_from_config`` reads, for ``style``'s tools;
    ``settings`` (e.g. ``segment_model``) go to the environment."""
    return {"tools": [{"class_name": CLASS, "config": {"type": "native", "style": style, **settings},
                       "tool_schema": schema} for schema in tool_schemas(style)]}


class GroundcotTool(BaseTool):
    """One tool of a multi-turn style (``config``: ``type: native``, ``style``, environment settings)."""

    def __init__(self, config: dict, tool_schema):
        super().__init__(config, tool_schema)
        self.style = config["style"]
        self.settings = {k: v for k, v in config.items() if k not in ("type", "style")}
        self._instances: dict[str, dict] = {}

    async def create(self, instance_id: str | None = None, create_kwargs: dict | None = None,
                     **kwargs) -> tuple[str, Any]:
        """Hold the row's ``image`` (bytes of the original), ``frame`` and ``question`` for one call."""
        instance_id = instance_id or str(uuid4())
        self._instances[instance_id] = dict(create_kwargs or {})
        return instance_id, ToolResponse()

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs) -> tuple[Any, float, dict]:
        from groundcot.trainer.envs import environment

        row = self._instances[instance_id]
        env = environment(self.style, 1, **self.settings)()
        env.reset(images=[{"bytes": row["image"]}], frame=row.get("frame"), question=row.get("question") or "")
        try:
            parts = getattr(env, self.name)(**parameters)
        except (ValueError, TypeError) as err:  # a bad box or bad arguments: the model reads why
            return ToolResponse(text=f"Error: {err}"), 0.0, {"success": False}
        images = [p["image"] for p in parts if p["type"] == "image"]
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        return ToolResponse(text=text, image=images), 0.0, {"success": not env.failed, "images": len(images)}

    async def release(self, instance_id: str, **kwargs) -> None:
        self._instances.pop(instance_id, None)
