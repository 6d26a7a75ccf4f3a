"""The sif depth image end to end (a demo run with depth on): rows, the three exports as their
consumers check them, and verl's ``compute_score`` called as verl's reward manager calls it."""
import io
import json

import datasets
import numpy as np
import pytest
from PIL import Image

from groundcot.pipeline.cli import main
from groundcot.schemas.codecs import decode_png16
from groundcot.schemas.depth import render_depth
from groundcot.schemas.runs import read_run

LABELLED = "Original image: <image>\nDepth image: <image>\n"


@pytest.fixture
def run(small_depth_run):
    return small_depth_run  # shared with the other module that reads it (conftest.py)


def test_sif_rows_carry_the_rendered_depth_image_second(run):
    rows = read_run(str(run), decode_images=False)
    sif = [r for r in rows if r["style"] == "sif"]
    assert len(sif) == 4
    for row in sif:
        content = row["messages"][0]["content"]
        assert [p["type"] for p in content] == ["text", "image", "text", "image", "text"]
        assert content[0]["text"] == "Original image: " and content[2]["text"] == "\nDepth image: "
        # the depth image is the depth map in Depth-Anything-V2's Spectral_r rendering, pixel for pixel
        expected = render_depth(decode_png16(row["depth_map"]["bytes"]))
        got = np.asarray(Image.open(io.BytesIO(row["depth_image"]["bytes"])))
        assert np.array_equal(got, np.asarray(Image.open(io.BytesIO(expected))))
        assert got.shape[:2] == Image.open(io.BytesIO(row["image"]["bytes"])).size[::-1]
    assert all(r["depth_image"] is None for r in rows if r["style"] != "sif")


def test_trl_export_gives_sif_rows_both_images(run, tmp_path):
    from trl.data_utils import prepare_multimodal_messages

    assert main(["export", str(run), "--format", "trl", "-o", str(tmp_path), "--style", "sif"]) == 0
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "data" / "*.parquet"), split="train")
    for row in ds:
        assert len(row["images"]) == 2
        filled = prepare_multimodal_messages(row["messages"], row["images"])  # raises on a count mismatch
        assert sum(p["type"] == "image" for m in filled for p in m["content"]) == 2


def sharegpt_problems(item: dict, info: dict, root) -> list[str]:
    """The checks LLaMA-Factory makes on a sharegpt multimodal example (data/converter.py's
    SharegptDatasetConverter, mm_plugin's placeholder count): a leading system turn is split off;
    then roles alternate user/assistant starting with user; an even number of turns; as many
    ``<image>`` tokens in all turns as images; every image path (relative to the dataset dir) exists."""
    tags = info["tags"]
    messages = item[info["columns"]["messages"]]
    if messages and messages[0][tags["role_tag"]] == tags["system_tag"]:
        messages = messages[1:]
    problems = []
    accept = ((tags["user_tag"],), (tags["assistant_tag"],))
    if any(m[tags["role_tag"]] not in accept[i % 2] for i, m in enumerate(messages)):
        problems.append("invalid role tag")
    if len(messages) % 2:
        problems.append("invalid message count")
    images = item[info["columns"]["images"]]
    if sum(m[tags["content_tag"]].count("<image>") for m in messages) != len(images):
        problems.append("the number of images does not match the number of <image> tokens")
    problems += [f"missing {p}" for p in images if not (root / p).is_file()]
    return problems


def test_llamafactory_export_passes_its_sharegpt_checks_with_two_images_per_sif_row(run, tmp_path):
    assert main(["export", str(run), "--format", "llamafactory", "-o", str(tmp_path)]) == 0
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    for name, entry in info.items():
        items = json.loads((tmp_path / entry["file_name"]).read_text())
        assert items and all(sharegpt_problems(i, entry, tmp_path) == [] for i in items)
        if name == "groundcot_sif":
            for item in items:
                assert len(item["images"]) == 2 and item["messages"][0]["content"].startswith(LABELLED)
                rgb, depth = (Image.open(tmp_path / p) for p in item["images"])
                assert rgb.size == depth.size and depth.mode == "RGB"
    # the check itself catches what LLaMA-Factory would skip
    bad = {"messages": [{"role": "user", "content": "<image>Hi"}], "images": []}
    assert sharegpt_problems(bad, info["groundcot_sif"], tmp_path) == [
        "invalid message count", "the number of images does not match the number of <image> tokens"]


def variants(cot: str) -> list[str]:
    """The row's own CoT, and versions with a wrong depth, a wrong last box, a wrong answer, broken grammar."""
    import re

    last = cot.rfind('"bbox_2d": [')
    return [cot, re.sub(r'"depth": [0-9.]+', '"depth": 0.999', cot, count=1),
            cot[:last] + '"bbox_2d": [0.000, 0.000, 0.100, 0.100' + cot[cot.index("]", last):],
            re.sub(r"<answer>.*</answer>", "<answer>certainly not this</answer>", cot, flags=re.DOTALL),
            cot.replace("</think>", "")]


@pytest.mark.parametrize("reward_set", ["groundcot", "sifthinker"])
def test_verl_compute_score_equals_the_trl_rewards(run, tmp_path, reward_set):
    from groundcot.trainer import rewards as R
    from groundcot.trainer.data import grpo_row
    from groundcot.trainer.verl_reward import compute_score

    assert main(["export", str(run), "--format", "verl", "-o", str(tmp_path), "--rl-depth-image"]) == 0
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "train.parquet"), split="train")
    assert sorted(set(ds["ability"])) == ["grounded_vqa/sif", "grounded_vqa/textual"]  # single-turn by default
    rows = {(r["id"], r["style"]): r for r in read_run(str(run), styles=["sif", "textual"])}
    funcs, _ = R.select({"format": 1, "answer": 1, "box": 1, "depth": 1}, progress_bonus=False, reward_set=reward_set)
    if reward_set == "sifthinker":  # a fresh reward per call: its first call has no progress bonus, as in verl
        funcs[1] = lambda completions, **kw: type(funcs_answer)()(completions, **kw)
    funcs_answer = funcs[1] if reward_set == "groundcot" else R.select({"answer": 1}, reward_set=reward_set)[0][0]
    seen = 0
    for item in ds:
        info = dict(item["extra_info"])
        assert all(isinstance(b, list) and len(b) == 4 for b in info["gt_boxes"])
        trl = grpo_row(rows[(info["id"], info["style"])])
        if info["style"] == "sif":
            assert isinstance(info["depth_map"], bytes) and info["depth_map"] == trl["depth_map"]
            assert item["prompt"][0]["content"].startswith(LABELLED) and len(item["images"]) == 2
        for text in variants(rows[(info["id"], "sif")]["cot"]):  # textual rows: only the answer counts
            # verl's NaiveRewardManager: keyword arguments, extra_info with num_turns and rollout scores added
            score = compute_score(data_source=item["data_source"], solution_str=text,
                                  ground_truth=item["reward_model"]["ground_truth"],
                                  extra_info={**info, "num_turns": 2, "rollout_reward_scores": {}},
                                  reward_set=reward_set)
            completion = [{"role": "assistant", "content": text}]
            kwargs = {k: [trl[k]] for k in ("answer", "gt_boxes", "depth_map", "question", "id")}
            if info["style"] == "textual":
                expected = {"answer": funcs[1]([completion], **kwargs)[0]}
            else:
                expected = {name: f([completion], **kwargs)[0]
                            for name, f in zip(("format", "answer", "box", "depth"), funcs)}
            assert {k: v for k, v in score.items() if k != "score"} == pytest.approx(expected, abs=0)
            assert score["score"] == pytest.approx(sum(expected.values()))
            seen += 1
    assert seen == 8 * 5
