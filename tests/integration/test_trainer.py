"""CPU smoke tests: one SFT and one GRPO step with a tiny random Qwen2.5-VL (tokenizer trained
in memory, image-only processor: no torchvision) on rows a pipeline run produced."""
import json

import pytest
import yaml

from groundcot.pipeline.cli import main

from support import REPO
from support.tiny_models import build_tiny_qwen25vl

SMALL = {"batch_size": 2, "grad_accum": 1, "precision": "auto", "gradient_checkpointing": False,
         "logging_steps": 1, "max_steps": 1, "max_length": 1024}


@pytest.fixture
def run(small_depth_run):
    return small_depth_run  # shared with the other module that reads it (conftest.py)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_tiny_qwen25vl(str(tmp_path_factory.mktemp("qwen")))


def job_file(tmp_path, base: str, **changes) -> str:
    tree = yaml.safe_load((REPO / "jobs" / base).read_text())
    for key, value in changes.items():
        tree[key] = value if not isinstance(value, dict) else {**tree.get(key, {}), **value}
    path = tmp_path / base
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def reload(output_dir: str, base: str):
    """The saved adapter on the base model, run on one processed example."""
    from peft import PeftModel
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from groundcot.trainer.models import load_processor

    processor = load_processor(output_dir)
    tuned = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), output_dir)
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}],
                                         add_generation_prompt=True)
    inputs = processor(text=[text], images=[Image.new("RGB", (64, 48))], return_tensors="pt")
    return tuned(**inputs).logits


def test_sif_rows_reach_sft_with_both_images_and_grpo_with_the_image_only(run):
    from groundcot.trainer.config import Data
    from groundcot.trainer.data import grpo_dataset, sft_dataset

    sft = sft_dataset(Data(runs=[str(run)], styles=["sif"]))
    for row in sft:
        assert len(row["images"]) == 2 and row["images"][0].size == row["images"][1].size
        assert sum(p["type"] == "image" for m in row["messages"] for p in m["content"]) == 2
        assert row["messages"][0]["content"][0]["text"] == "Original image: "
    from groundcot.trainer.rewards import depth_reward, sifthinker

    for row in grpo_dataset(Data(runs=[str(run)], styles=["sif"])):
        assert [p["type"] for p in row["prompt"][0]["content"]] == ["image", "text"] and len(row["images"]) == 1
        # the depth map column reaches the depth rewards readable (its own validated CoT: every depth passes)
        assert depth_reward([row["twin_text"]], [row["depth_map"]]) == [1.0]
        assert sifthinker.depth_reward([row["twin_text"]], [row["depth_map"]])[0] > 0


def test_sft_one_step_with_lora_and_the_depth_image(run, model, tmp_path, monkeypatch):
    """The README's command from another folder: the bundled config, its relative data.runs and
    output_dir taken from the working directory, precision auto (fp32 on this CPU); the sif rows
    carry the image and the depth image (two images per row through SFTTrainer's collator)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "demo").symlink_to(run)
    small = [f"train.{k}={v}" for k, v in SMALL.items()]
    assert main(["train", "sft", "jobs/train_sft.yaml", "--set", f"model={model}",
                 *[a for kv in small for a in ("--set", kv)]]) == 0
    out = tmp_path / "out" / "train" / "sft"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 1 and summary["rows"] == 4 and summary["last_log"]["loss"] > 0
    assert summary["config"]["train"]["precision"] == "fp32" and summary["config"]["data"]["depth_image"]
    assert (out / "adapter_model.safetensors").exists() and (out / "checkpoint-1").is_dir()
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and "visual" in adapter["target_modules"]  # the regex keeps LoRA off the vision tower
    assert reload(str(out), model).shape[0] == 1


def sft_like_adapter(model: str, path: str) -> str:
    """A LoRA adapter on ``model`` with non-zero weights, as an SFT run leaves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    tuned = get_peft_model(AutoModelForImageTextToText.from_pretrained(model),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with torch.no_grad():
        for p in tuned.parameters():
            if p.requires_grad:
                p.add_(0.05)
    tuned.save_pretrained(path)
    return path


def test_grpo_one_step_logs_every_reward_and_resumes(run, model, tmp_path):
    out = tmp_path / "grpo"  # -o overrides the config's output_dir
    grpo = {"num_generations": 2, "max_completion_length": 8}
    config = job_file(tmp_path, "train_grpo.yaml", model=model, output_dir=str(tmp_path / "not-here"),
                      init_adapter=sft_like_adapter(model, str(tmp_path / "sft-adapter")),
                      data={"runs": [str(run)], "styles": ["sif"]}, train=SMALL, grpo=grpo)
    assert main(["train", "grpo", config, "-o", str(out)]) == 0
    assert not (tmp_path / "not-here").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 1
    for name in ("format_reward", "answer_reward", "box_reward", "depth_reward"):
        assert f"rewards/{name}/mean" in summary["reward_means"]
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 64
    assert reload(str(out), model).shape[0] == 1
    assert main(["train", "grpo", config, "--out", str(out), "--set", "train.max_steps=2",
                 "--set", "resume_from_checkpoint=true"]) == 0
    assert json.loads((out / "summary.json").read_text())["global_step"] == 2  # went on from checkpoint-1


def test_grpo_one_step_with_the_sifthinker_reward_set(run, model, tmp_path):
    config = job_file(tmp_path, "train_grpo.yaml", model=model, output_dir=str(tmp_path / "out"),
                      data={"runs": [str(run)], "styles": ["sif"]}, train=SMALL,
                      grpo={"num_generations": 2, "max_completion_length": 8, "reward_set": "sifthinker"})
    assert main(["train", "grpo", config]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["global_step"] == 1 and summary["config"]["grpo"]["reward_set"] == "sifthinker"
    for name in ("format_reward", "answer_reward", "box_reward", "depth_reward"):
        assert f"rewards/{name}/mean" in summary["reward_means"]


def test_init_adapter_is_merged(model, tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText

    from groundcot.trainer.models import load_model

    base = AutoModelForImageTextToText.from_pretrained(model)
    merged = load_model(model, "fp32", sft_like_adapter(model, str(tmp_path / "adapter")))
    name = next(n for n, _ in base.named_parameters() if n.endswith("q_proj.weight") and "visual" not in n)
    assert not torch.equal(dict(base.named_parameters())[name], dict(merged.named_parameters())[name])
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_textual_rows_carry_their_grounded_twin(run):
    from groundcot.trainer.config import Data
    from groundcot.trainer.data import grpo_dataset

    rows = grpo_dataset(Data(runs=[str(run)], styles=["textual"]))
    assert len(rows) == 4 and all(r["twin_text"].startswith("<think>\n<area>") for r in rows)


def test_shipped_training_configs_hold_the_anchor_settings():
    from groundcot.pipeline.configfile import read_tree, validated
    from groundcot.trainer.config import GrpoJob, SftJob

    sft = validated(SftJob, read_tree(str(REPO / "jobs" / "train_sft.yaml")), "sft")
    grpo = validated(GrpoJob, read_tree(str(REPO / "jobs" / "train_grpo.yaml")), "grpo")
    assert (sft.lora.r, sft.train.learning_rate, sft.train.epochs, sft.train.max_length) == (8, 1e-4, 3, 2048)
    assert (grpo.grpo.num_generations, grpo.grpo.beta, grpo.lora.r, grpo.lora.alpha) == (8, 0.04, 64, 128)
    assert (grpo.train.learning_rate, grpo.grpo.max_completion_length) == (1e-5, 2048)
    assert sft.freeze_vision and grpo.freeze_vision and sft.model == grpo.model == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_bad_training_config_is_one_line(tmp_path, capfd):
    assert main(["train", "sft", str(REPO / "jobs" / "train_sft.yaml"), "--set", "lora.rank=4"]) == 2
    err = capfd.readouterr().err.strip()
    assert "lora.rank" in err and "\n" not in err


def test_shipped_precision_is_auto_and_resolves_per_device(monkeypatch):
    import torch

    from groundcot.pipeline.configfile import read_tree, validated
    from groundcot.trainer.config import SftJob
    from groundcot.trainer.models import device_precision

    for name in ("train_sft.yaml", "train_grpo.yaml"):
        assert read_tree(str(REPO / "jobs" / name))["train"]["precision"] == "auto"
    assert validated(SftJob, {"output_dir": "o", "data": {"runs": ["r"]}}, "x").train.precision == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_precision("auto") == "fp32" and device_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="bf16 needs a CUDA GPU"):
        device_precision("bf16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "a GPU")
    for bf16, chosen in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, b=bf16: b)
        assert device_precision("auto") == chosen


def test_missing_run_is_one_line_naming_it(model, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "sft", "train_sft", "--set", f"model={model}"]) == 2  # a config naming what is not there
    err = capfd.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("groundcot: data.runs: out/demo: not a groundcot run") and "out/demo/data/*/*.parquet" in err


def test_a_model_not_in_the_cache_is_one_line_and_fails_fast(tmp_path):
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "groundcot", "train", "sft", "train_sft", "--set", "model=nobody/no-such-vlm"]
    offline = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, capture_output=True, text=True,
                             cwd=tmp_path, timeout=120)
    assert offline.returncode == 2, offline.stderr
    assert "Traceback" not in offline.stderr
    lines = offline.stderr.splitlines()
    imported = [line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")]
    assert "apache_beam" not in imported and "groundcot.trainer.config" in imported  # a train config: no Beam
    err = [line for line in lines if " INFO " not in line and not line.startswith("import time:")]
    assert len(err) == 1 and "nobody/no-such-vlm is not in the Hugging Face cache" in err[0] and "HF_HUB_OFFLINE" in err[0]
    # online, with the Hub unreachable: one quick look, not the libraries' minutes of retries
    with socket_closed() as endpoint:
        env.pop("HF_HUB_OFFLINE")
        started = time.monotonic()
        online = subprocess.run(cmd, env={**env, "HF_ENDPOINT": endpoint}, capture_output=True, text=True,
                                cwd=tmp_path, timeout=120)
    assert online.returncode == 2 and time.monotonic() - started < 60, online.stderr
    err = [line for line in online.stderr.splitlines() if " INFO " not in line]
    assert len(err) == 1 and f"the Hub ({endpoint}) cannot be reached" in err[0]


def socket_closed():
    """A context giving the URL of a local port nothing listens on."""
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield f"http://127.0.0.1:{port}"

    return closed()
