"""Each export loads in what consumes it: TRL (and datasets) for trl and verl, and the
layout LLaMA-Factory documents for its sharegpt multimodal datasets."""
import json

import datasets
import pytest
from PIL import Image

from groundcot.pipeline.cli import main

from support import REPO

DEMO = str(REPO / "jobs" / "demo.yaml")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["generate", DEMO, "-o", str(out), "--set", "depth.enabled=false", "--set", "masks.enabled=false"]) == 0
    return out


def filled_images(messages, images) -> list:
    from trl.data_utils import prepare_multimodal_messages  # TRL (transformers, 4 s) only where it is used

    filled = prepare_multimodal_messages(messages, images)  # raises on a count mismatch
    return [p["image"] for m in filled for p in m["content"] if p["type"] == "image"]


def test_trl_export_loads_and_every_placeholder_gets_its_image(run, tmp_path):
    from trl.data_utils import is_conversational

    assert main(["export", str(run), "--format", "trl", "-o", str(tmp_path)]) == 0
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "data" / "*.parquet"), split="train")
    assert set(ds.column_names) == {"id", "style", "images", "messages"} and len(ds) == 84
    for row in ds:
        assert is_conversational(row)
        injected = filled_images(row["messages"], row["images"])
        assert len(injected) == len(row["images"]) and all(isinstance(i, Image.Image) for i in injected)
    assert {len(r["images"]) for r in ds if r["style"] == "mgpo"} == {2}
    # grpo/: the single-turn rows, a conversational prompt whose placeholders its images fill
    grpo = datasets.load_dataset("parquet", data_files=str(tmp_path / "grpo" / "*.parquet"), split="train")
    assert len(grpo) == 42 and set(grpo["style"]) == {"sif", "textual"}
    assert {"prompt", "images", "answer", "gt_boxes", "depth_map", "id", "question"} <= set(grpo.column_names)
    for row in grpo:
        assert is_conversational({"prompt": row["prompt"]}) and [m["role"] for m in row["prompt"]] == ["user"]
        assert len(filled_images(row["prompt"], row["images"])) == len(row["images"]) == 1


def test_trl_export_trains_one_step_in_trls_own_trainers(run, tmp_path):
    """TRL's SFTTrainer on data/ and GRPOTrainer on grpo/ as they are, with the model
    `groundcot tiny-model` writes and groundcot's reward functions (which read grpo/'s columns)."""
    from transformers import AutoModelForImageTextToText
    from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

    from groundcot.trainer.models import load_processor
    from groundcot.trainer.rewards import select

    model_dir = str(tmp_path / "tiny")
    assert main(["tiny-model", model_dir]) == 0
    assert main(["export", str(run), "--format", "trl", "-o", str(tmp_path / "trl")]) == 0
    common = {"max_steps": 1, "per_device_train_batch_size": 2, "report_to": "none", "save_strategy": "no",
              "bf16": False, "gradient_checkpointing": False, "logging_steps": 1}
    sft = datasets.load_dataset("parquet", data_files=str(tmp_path / "trl" / "data" / "*.parquet"), split="train")
    trainer = SFTTrainer(model=AutoModelForImageTextToText.from_pretrained(model_dir),
                         args=SFTConfig(output_dir=str(tmp_path / "sft"), max_length=1024, **common),
                         train_dataset=sft.select(range(0, 84, 21)), processing_class=load_processor(model_dir))
    assert trainer.train().global_step == 1
    grpo = datasets.load_dataset("parquet", data_files=str(tmp_path / "trl" / "grpo" / "*.parquet"), split="train")
    rewards, weights = select({"format": 1, "answer": 1, "box": 1})
    trainer = GRPOTrainer(model=AutoModelForImageTextToText.from_pretrained(model_dir), reward_funcs=rewards,
                          args=GRPOConfig(output_dir=str(tmp_path / "grpo"), num_generations=2, max_completion_length=8,
                                          reward_weights=weights, **common),
                          train_dataset=grpo.select(range(4)), processing_class=load_processor(model_dir))
    assert trainer.train().global_step == 1
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"rewards/format_reward/mean", "rewards/answer_reward/mean", "rewards/box_reward/mean"} <= logged


def test_verl_export(run, tmp_path):
    assert main(["export", str(run), "--format", "verl", "--out", str(tmp_path), "--style", "sif",
                 "--style", "mgpo"]) == 0
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "train.parquet"), split="train")
    multi = datasets.load_dataset("parquet", data_files=str(tmp_path / "mgpo" / "train.parquet"), split="train")
    assert len(ds) == len(multi) == 21  # sif here; mgpo for verl's multi-turn agent loop in mgpo/
    assert set(multi["agent_name"]) == {"tool_agent"} and (tmp_path / "mgpo" / "tool_config.yaml").is_file()
    for row in [*ds, *multi]:
        assert [m["role"] for m in row["prompt"]] == ["user"]
        assert row["prompt"][0]["content"].count("<image>") == len(row["images"]) == 1
        assert isinstance(row["images"][0], Image.Image)
        assert row["reward_model"]["style"] == "rule" and row["reward_model"]["ground_truth"]
        assert row["extra_info"]["answer"] == row["reward_model"]["ground_truth"]
        boxes = row["extra_info"]["gt_boxes"]  # lists, for verl's compute_score
        assert boxes and all(0 <= v <= 1 for b in boxes for v in b)
        assert row["extra_info"].get("depth_map") is None  # this run has depth off


def test_llamafactory_export_follows_the_sharegpt_schema(run, tmp_path):
    assert main(["export", str(run), "--format", "llamafactory", "-o", str(tmp_path)]) == 0
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert set(info) == {"groundcot_sif", "groundcot_mgpo", "groundcot_aperture", "groundcot_textual"}
    for entry in info.values():
        assert entry["formatting"] == "sharegpt"
        assert entry["columns"] == {"messages": "messages", "images": "images"}
        assert entry["tags"]["role_tag"] == "role" and entry["tags"]["user_tag"] == "user"
        items = json.loads((tmp_path / entry["file_name"]).read_text())
        assert len(items) == 21
        for item in items:
            roles = [m["role"] for m in item["messages"]]
            assert roles[0] == "user" and roles[-1] == "assistant"
            assert all(a != b for a, b in zip(roles, roles[1:]))  # alternating turns
            tokens = sum(m["content"].count("<image>") for m in item["messages"])
            assert tokens == len(item["images"]) >= 1
            for path in item["images"]:
                Image.open(tmp_path / path).verify()


def test_export_of_a_missing_run_is_a_clear_error(tmp_path, capfd):
    missing = str(tmp_path / "nothing")
    assert main(["export", missing, "--format", "trl"]) == 2  # a usage error: no such run
    err = capfd.readouterr().err.strip()
    assert f"{missing}: no such folder" in err and "\n" not in err


def test_export_of_a_style_the_run_lacks_names_what_it_has(run, tmp_path, capfd):
    assert main(["export", str(run), "--format", "trl", "-o", str(tmp_path), "--style", "nope"]) == 1
    err = capfd.readouterr().err.strip().splitlines()[-1]
    assert "no rows of style nope" in err and "sif" in err


def test_default_destination_is_inside_the_run_and_verl_takes_single_turn_styles(run):
    assert main(["export", str(run), "--format", "verl"]) == 0
    ds = datasets.load_dataset("parquet", data_files=str(run / "exports" / "verl" / "train.parquet"), split="train")
    assert len(ds) == 42 and set(ds["ability"]) == {"grounded_vqa/sif", "grounded_vqa/textual"}


def test_read_run_is_shared_and_names_a_missing_run(run, tmp_path):
    from groundcot.schemas.runs import RunNotFound, read_run
    from groundcot.trainer.config import Data
    from groundcot.trainer.data import read_runs

    assert len(read_run(str(run), styles=["sif"], limit=5)) == 5
    raw = read_run(str(run), styles=["mgpo"], decode_images=False)[0]
    assert isinstance(raw["image"]["bytes"], bytes) and isinstance(raw["crops"][0]["bytes"], bytes)
    assert len(read_runs(Data(runs=[str(run), str(run)], styles=["aperture"]))) == 42
    with pytest.raises(RunNotFound, match=str(tmp_path / "gone")):
        read_run([str(run), str(tmp_path / "gone")])
