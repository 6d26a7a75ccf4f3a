"""Multi-turn GRPO for mgpo and aperture on CPU with a tiny random Qwen2.5-VL: through TRL's tool loop
with scripted model turns (the tools run, their crops reach the model, the rewards and the per-step
tool counts are logged). One step of ``groundcot train grpo`` from the installed wheel, outside the
checkout, is in .ci/wheel_smoke.sh (README: Multi-turn training), which CI runs."""
import json

import pytest
import yaml

from groundcot.pipeline.cli import main

from support import REPO
from support.tiny_models import build_tiny_qwen25vl

pytestmark = pytest.mark.slow  # each step is a run, a model and a minute or so of CPU

SMALL = {"batch_size": 2, "grad_accum": 1, "precision": "auto", "gradient_checkpointing": False,
         "logging_steps": 1, "max_steps": 1}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["generate", str(REPO / "jobs" / "demo.yaml"), "-o", str(out), "--limit", "2",
                 "--set", "styles=[mgpo, aperture]"]) == 0
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_tiny_qwen25vl(str(tmp_path_factory.mktemp("qwen")))


@pytest.fixture(scope="module")
def sam2(tmp_path_factory):
    from groundcot.transforms.masks import build_tiny_random

    return build_tiny_random(str(tmp_path_factory.mktemp("sam2")))


def job(tmp_path, run, model, style: str, sam2: str, **grpo) -> str:
    tree = yaml.safe_load((REPO / "jobs" / "train_grpo_mgpo.yaml").read_text())
    tree.update(model=model, output_dir=str(tmp_path / "out"), data={"runs": [str(run)], "styles": [style]},
                train={**tree["train"], **SMALL})
    # max_completion_length: the longest scripted rollout (aperture's segment and zoom calls, the segment's
    # image and the answer) is ~370 tokens; TRL's own generation samples up to this many tokens a turn
    tree["grpo"].update(num_generations=2, max_completion_length=512, max_turns=2,
                        segment={"model": sam2, "device": "cpu"}, **grpo)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def call(name, **arguments):
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


@pytest.fixture
def scripted(monkeypatch):
    """The model's turns replaced by scripted text (first turn: one script per rollout; later turns:
    ``then``), after TRL's own generation ran on the same inputs (tool images included; 8 tokens)."""
    from trl import GRPOTrainer

    original, seen = GRPOTrainer._generate_single_turn, []

    def install(first: list[str], then: str):
        def generate(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
            # TRL's generation on the same inputs, a few tokens long: its text is replaced below, and a
            # tiny random model never ends a turn by itself (it sampled max_completion_length tokens)
            config = self.generation_config
            kept, config.max_new_tokens = config.max_new_tokens, 8
            try:
                ids, logprobs = original(self, prompt_ids, images, multimodal_fields, num_generations,
                                         has_tool_images)
            finally:
                config.max_new_tokens = kept
            tok = self.processing_class.tokenizer
            texts = first if not seen else [then] * len(ids)
            seen.append((len(ids), has_tool_images))
            return [tok.encode(t, add_special_tokens=False) + [tok.eos_token_id] for t in texts[:len(ids)]], logprobs
        monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", generate)
        return seen
    return install


def last_log(out) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 1
    return summary["last_log"]


def test_mgpo_rollouts_call_crop_and_get_the_region_back(run, model, sam2, tmp_path, scripted):
    from groundcot.pipeline.cli import main as cli

    # one rollout crops a usable region (frame pixels), the other a box too small: MGPO's whole-image fallback
    seen = scripted([call("crop", bbox_2d=[0, 0, 56, 56], label="it"), call("crop", bbox_2d=[0, 0, 10, 10])],
                    "The crop settles it. \\boxed{yes}")
    assert cli(["train", "grpo", job(tmp_path, run, model, "mgpo", sam2)]) == 0
    assert seen == [(2, False), (2, True)]  # the second turn was generated with the tool images
    log = last_log(tmp_path / "out")
    assert log["tools/call_frequency"] == 1.0 and log["tools/calls_per_rollout"] == 1.0
    assert log["tools/images_added_per_rollout"] == 1.0 and log["tools/failed_calls_per_rollout"] == 0.5
    assert log["rewards/mgpo_format_reward/mean"] == 0.5  # the fallback rollout is not MGPO's shape


def test_aperture_rollouts_zoom_and_segment_with_agrpo(run, model, sam2, tmp_path, scripted):
    from groundcot.pipeline.cli import main as cli

    seen = scripted(["<think>Closer.</think>" + call("zoom", box=[0.1, 0.1, 0.6, 0.6]),
                     "<think>Only it.</think>" + call("segment", box=[0.2, 0.2, 0.7, 0.7]) + call("zoom", box=[2, 0, 1, 1])],
                    "<observe>It is there.</observe><answer>yes</answer>")
    assert cli(["train", "grpo", job(tmp_path, run, model, "aperture", sam2)]) == 0
    assert seen == [(2, False), (2, True)]
    log = last_log(tmp_path / "out")
    # rollout 1: one zoom; rollout 2: a segment and a zoom with a bad box (a failed call, no image)
    assert log["tools/calls_per_rollout"] == 1.5 and log["tools/images_added_per_rollout"] == 1.0
    assert log["tools/failed_calls_per_rollout"] == 0.5 and log["tools/failure_frequency"] == pytest.approx(1 / 3)
    assert "rewards/agrpo_reward/mean" in log
