"""The README's verl command against verl 0.9.1's own trainer config and reward-function loader
(quoted in tests/fixtures/verl/): the overrides apply as Hydra applies them, and verl's
``get_custom_reward_fn`` resolves groundcot's ``compute_score`` with the reward set asked for."""
import importlib.util
import sys
import types

import pytest
import yaml

from groundcot.trainer import verl_reward

from support import REPO
from support.verl_config import Cfg, override, readme_overrides

FIXTURES = REPO / "tests" / "fixtures" / "verl"


@pytest.fixture
def verl_loader(monkeypatch):
    spec = importlib.util.spec_from_file_location("verl_reward_fn_quoted", FIXTURES / "reward_fn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("verl", "verl.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "verl.utils.import_utils", module)
    return module


def trainer_config() -> dict:
    return yaml.safe_load((FIXTURES / "ppo_trainer_0.9.1.yaml").read_text())


LENIENT = ('<think><area>[{"bbox_2d": [0.5, 0.5, 1, 1], "depth": 0.8, "label": "cup"}]</area><text>x</text>'
           "</think><answer>red</answer>")


def test_readme_command_switches_the_reward_on_in_verl_0_9(verl_loader):
    config = trainer_config()
    args = readme_overrides()
    assert any(a.startswith("reward.custom_reward_function.path=") for a in args)
    for arg in args:
        override(config, arg)
    fn = verl_loader.get_custom_reward_fn(Cfg(config))
    assert fn is not None
    score = fn(data_source="groundcot/viscot/toy", solution_str=LENIENT, ground_truth="red",
               extra_info={"style": "sif", "gt_boxes": [[0.5, 0.5, 1, 1]], "question": "Colour?"})
    assert score["format"] == 1.0  # the sifthinker set's lenient format (groundcot's refuses the extra key)
    assert score == verl_reward.compute_score("groundcot/viscot/toy", LENIENT, "red",
                                              {"style": "sif", "gt_boxes": [[0.5, 0.5, 1, 1]]}, reward_set="sifthinker")


def test_the_legacy_top_level_keys_are_not_read(verl_loader):
    config = trainer_config()
    for arg in readme_overrides():
        override(config, arg.replace("reward.custom_reward_function", "custom_reward_function"))
    assert verl_loader.get_custom_reward_fn(Cfg(config)) is None  # what the issue saw: no reward function
