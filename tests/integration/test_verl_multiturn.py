"""The verl export of the multi-turn styles against verl 0.9.1's own code (quoted in tests/fixtures/verl/):
the tool config builds groundcot's tools through verl's ``initialize_tools_from_config`` (its pydantic
tool schema and its ``BaseTool``), a row's ``tools_kwargs`` drive the tool as verl's tool agent loop
does (create, execute, release) and the crop is the original image's region; the README's multi-turn
command applies to verl's trainer config; ``compute_score`` reads the decoded multi-turn response."""
import asyncio
import importlib
import importlib.util
import io
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from groundcot.pipeline.cli import main

from support import REPO
from support.verl_config import Cfg, override, readme_overrides

FIXTURES = REPO / "tests" / "fixtures" / "verl"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run, out = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("verl")
    assert main(["generate", str(REPO / "jobs" / "demo.yaml"), "-o", str(run), "--limit", "2",
                 "--set", "styles=[sif, mgpo, aperture]"]) == 0
    assert main(["export", str(run), "--format", "verl", "-o", str(out),
                 "--style", "sif", "--style", "mgpo", "--style", "aperture"]) == 0
    return out


def deep(node, kind=Cfg):
    """A YAML tree with its mappings as ``kind`` (Cfg: OmegaConf's attribute access; dict: to_container)."""
    if isinstance(node, dict):
        return kind({k: deep(v, kind) for k, v in node.items()})
    return [deep(v, kind) for v in node] if isinstance(node, list) else node


def load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, FIXTURES / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def verl(monkeypatch):
    """verl 0.9.1's tool modules (quoted) importable as verl's; OmegaConf's two calls as plain YAML."""
    for name in ("verl", "verl.utils", "verl.tools", "verl.utils.rollout_trace", "verl.tools.function_tool",
                 "omegaconf"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["verl.tools"].__path__ = []
    sys.modules["verl.utils.rollout_trace"].rollout_trace_op = lambda f: f
    sys.modules["verl.tools.function_tool"].FunctionTool = type("FunctionTool", (), {})
    sys.modules["verl.tools.function_tool"].load_function_tools_from_path = lambda path: []
    sys.modules["omegaconf"].OmegaConf = types.SimpleNamespace(
        load=lambda path: deep(yaml.safe_load(Path(path).read_text())), to_container=lambda node, resolve: deep(node, dict))
    for name in ("schemas", "base_tool", "tool_registry"):
        monkeypatch.setitem(sys.modules, f"verl.tools.{name}", None)
        load(f"verl.tools.{name}", f"tools_{name}.py")
    import groundcot.trainer.verl_tools as tools

    yield importlib.reload(tools)  # now on verl's own BaseTool and ToolResponse
    monkeypatch.undo()
    importlib.reload(tools)


def run_tool(tool, create_kwargs: dict, arguments: dict):
    """One call as verl's ToolAgentLoop._call_tool makes it."""
    async def call():
        instance, _ = await tool.create(create_kwargs=create_kwargs)
        try:
            return await tool.execute(instance, arguments, agent_data=None)
        finally:
            await tool.release(instance)
    return asyncio.run(call())


def test_the_export_writes_single_and_multiturn_layouts(exported):
    assert (exported / "train.parquet").is_file()
    for style, tools in (("mgpo", ["crop"]), ("aperture", ["segment", "zoom"])):
        rows = pd.read_parquet(exported / style / "train.parquet")
        row = rows.iloc[0]
        assert row["agent_name"] == "tool_agent" and row["prompt"][0]["content"].startswith("<image>")
        info = row["extra_info"]
        assert info["multiturn"] and info["need_tools_kwargs"] and sorted(info["tools_kwargs"]) == tools
        config = yaml.safe_load((exported / style / "tool_config.yaml").read_text())
        assert [t["tool_schema"]["function"]["name"] for t in config["tools"]] == tools


@pytest.mark.parametrize("style", ["mgpo", "aperture"])
def test_verls_loader_builds_the_tools_and_they_crop_the_original(exported, verl, style):
    registry = sys.modules["verl.tools.tool_registry"]
    tools = {t.name: t for t in registry.initialize_tools_from_config(str(exported / style / "tool_config.yaml"))}
    base = sys.modules["verl.tools.base_tool"].BaseTool
    assert all(isinstance(t, base) and type(t).__name__ == "GroundcotTool" for t in tools.values())
    row = pd.read_parquet(exported / style / "train.parquet").iloc[0]
    kwargs = row["extra_info"]["tools_kwargs"]
    original = Image.open(io.BytesIO(kwargs[next(iter(tools))]["create_kwargs"]["image"])).convert("RGB")
    name, good, bad = (("crop", {"bbox_2d": [0, 0, 56, 56]}, {"bbox_2d": [0, 0, 5]}) if style == "mgpo" else
                       ("zoom", {"box": [0.0, 0.0, 0.5, 0.5]}, {"box": [0.5, 0.0, 0.1, 1.0]}))
    response, _, metrics = run_tool(tools[name], dict(kwargs[name]["create_kwargs"]), good)
    assert type(response).__name__ == "ToolResponse" and metrics["success"] and len(response.image) == 1
    fw, fh = row["extra_info"]["frame"] if style == "mgpo" else (1, 1)
    sx, sy = original.width / fw, original.height / fh
    w, h = (56 * sx, 56 * sy) if style == "mgpo" else (original.width / 2, original.height / 2)
    crop = response.image[0]
    assert abs(crop.width - max(w, 28)) <= 1 and abs(crop.height - max(h, 28)) <= 1
    assert np.array_equal(np.asarray(crop), np.asarray(original.crop((0, 0, crop.width, crop.height))))
    response, _, metrics = run_tool(tools[name], dict(kwargs[name]["create_kwargs"]), bad)
    if style == "mgpo":  # MGPO's fallback: the whole image back
        assert not metrics["success"] and response.image[0].size == original.size
    else:
        assert not metrics["success"] and not response.image and response.text.startswith("Error: box")


def test_the_readme_multiturn_command_applies_to_verls_trainer_config():
    config = yaml.safe_load((FIXTURES / "ppo_trainer_0.9.1.yaml").read_text())
    args = readme_overrides("multi_turn")
    for arg in args:
        override(config, arg)
    multi = config["actor_rollout_ref"]["rollout"]["multi_turn"]
    assert multi["enable"] is True and multi["tool_config_path"].endswith("mgpo/tool_config.yaml")
    assert multi["max_assistant_turns"] >= 2 and multi["format"] == "hermes"
    assert config["reward"]["custom_reward_function"]["path"].endswith("verl_reward.py")


def test_compute_score_reads_the_decoded_multiturn_response():
    from groundcot.trainer.verl_reward import compute_score

    response = ('<tool_call>\n{"name": "crop", "arguments": {"bbox_2d": [0, 0, 56, 56]}}\n</tool_call>\nuser\n'
                "<tool_response>\nHere is the region. Give the final answer as \\boxed{answer}.\n</tool_response>\n"
                "assistant\nIt is red. \\boxed{red}")
    info = {"style": "mgpo", "multiturn": True, "frame": np.array([112, 112]), "gt_boxes": [np.array([0, 0, .5, .5])]}
    assert compute_score("groundcot/x", response, "red", info) == {"score": 2.0, "boxed_answer": 1.0, "mgpo_format": 1.0}
    assert compute_score("groundcot/x", response, "blue", info)["score"] == 1.0
