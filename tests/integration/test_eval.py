"""``groundcot eval`` through the real CLI on the demo run's held-out test split: the tiny model on this
CPU, and a model behind an OpenAI-compatible endpoint (the loopback stand-in). eval.json's figures equal
the reward functions applied to the generations it saved."""
import base64
import io
import json

import pytest
from PIL import Image

from groundcot.pipeline.cli import main
from groundcot.schemas.runs import read_run
from groundcot.trainer.rewards.registry import get_reward, style_parts

from support import REPO
from support.fake_openai import FakeOpenAI
from support.tiny_models import build_tiny_qwen25vl


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    # the first 8 of the demo's 22 records: the same test split as all 22 (2 records, 6 rows), less to run
    assert main(["generate", str(REPO / "jobs" / "demo.yaml"), "-o", str(out), "--limit", "8",
                 "--set", "styles=[sif, textual, mgpo]", "--set", "masks.enabled=false",
                 "--set", "split.test_fraction=0.4"]) == 0
    return out


def recomputed(out, run) -> dict:
    """Each style's reward means, from generations.jsonl alone (and the run's depth maps, by style and id)."""
    maps = {(r["style"], r["id"]): r["depth_map"]["bytes"] if r["depth_map"] else None for r in read_run(str(run))}
    by_style: dict = {}
    for line in (out / "generations.jsonl").read_text().splitlines():
        g = json.loads(line)
        by_style.setdefault(g["style"], []).append(g)
    figures = {}
    for style, gens in by_style.items():
        columns = {k: [g[k] for g in gens] for k in ("id", "answer", "question", "gt_boxes", "twin_text")}
        columns["depth_map"] = [maps[style, g["id"]] for g in gens]
        figures[style] = {}
        for part in style_parts(style):
            values = [v for v in get_reward(part)([g["completion"] for g in gens], **columns) if v is not None]
            figures[style][part] = pytest.approx(sum(values) / len(values), abs=1e-6) if values else None
    return figures


def rgb_bytes(data_url: str) -> bytes:
    """The RGB pixels of an image sent as a data URL (to find the row a request asks about)."""
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB").tobytes()


def test_tiny_model_on_the_demo_test_split(run, tmp_path, capsys):
    model = build_tiny_qwen25vl(str(tmp_path / "tiny"))
    out = tmp_path / "eval"
    assert main(["eval", model, "--run", str(run), "--style", "sif", "--style", "textual", "--limit", "2",
                 "--max-new-tokens", "24", "-o", str(out)]) == 0
    result = json.loads((out / "eval.json").read_text())
    test_ids = {r["id"] for r in read_run(str(run), splits=["test"])}
    train = read_run(str(run), splits=["train"], decode_images=False)
    assert test_ids and not test_ids & set(train["id"])  # splits= keeps only those splits' shards
    assert len(train) + len(read_run(str(run), splits=["test"], decode_images=False)) == len(read_run(str(run)))
    saved = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(saved) == 4 and {g["id"] for g in saved} <= test_ids and {g["split"] for g in saved} == {"test"}
    assert all(isinstance(g["completion"], str) and g["prompt"][0]["role"] == "user" for g in saved)
    assert result["split"] == "test" and result["backend"] == "transformers" and result["model"] == "tiny"
    assert {s: e["rewards"] for s, e in result["styles"].items()} == recomputed(out, run)
    assert {s: e["rows"] for s, e in result["styles"].items()} == {"sif": 2, "textual": 2}
    assert "hiou" in result["styles"]["sif"] and "hiou" not in result["styles"]["textual"]
    assert (out / "eval.png").read_bytes()[:4] == b"\x89PNG" and "<table" in (out / "eval.html").read_text()

    capsys.readouterr()
    again = tmp_path / "again"
    assert main(["eval", model, "--run", str(run), "--style", "textual", "--limit", "1", "--max-new-tokens", "8",
                 "-o", str(again), "--compare", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "textual    answer" in printed and "sif        format" in printed and "diff" in printed


def test_endpoint_model_scored_with_the_reward_code(run, tmp_path, monkeypatch):
    """The endpoint answers half the sif rows with their own validated CoT and the rest wrongly: answer
    accuracy is exactly the share answered right, and equals the reward functions on what was saved."""
    rows = {(r["question"], r["image"].tobytes()): r for r in read_run(str(run), styles=["sif"], splits=["test"])}
    right = set(sorted(rows)[::2])

    def reply(body):
        content = body["messages"][0]["content"]
        text = next(p["text"] for p in content if p["type"] == "text")
        url = content[0]["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        pixels = rgb_bytes(url)
        key = next(k for k in rows if text.startswith(k[0]) and k[1] == pixels)
        return rows[key]["cot"] if key in right else "<think>no idea</think><answer>zebra</answer>"

    monkeypatch.setenv("EVAL_KEY", "sk-eval-secret")
    out = tmp_path / "eval"
    with FakeOpenAI(reply_with=reply) as fake:
        assert main(["eval", "fake-vlm", "--run", str(run), "--style", "sif", "--base-url", fake.base_url,
                     "--api-key-env", "EVAL_KEY", "-o", str(out)]) == 0
        assert {r["headers"]["authorization"] for r in fake.requests} == {"Bearer sk-eval-secret"}
        assert {r["body"]["model"] for r in fake.requests} == {"fake-vlm"}
    result = json.loads((out / "eval.json").read_text())
    sif = result["styles"]["sif"]
    assert sif["rows"] == len(rows) and sif["rewards"]["answer"] == pytest.approx(len(right) / len(rows))
    assert sif["rewards"] == recomputed(out, run)["sif"] and sif["hiou"] == pytest.approx(len(right) / len(rows))
    assert result["backend"] == "endpoint" and "sk-eval-secret" not in "".join(p.read_text() for p in out.iterdir()
                                                                             if p.suffix != ".png")


def test_a_run_without_the_split_is_one_line(run, tmp_path, capfd):
    assert main(["eval", str(tmp_path), "--run", str(run), "--split", "validation"]) == 2
    err = capfd.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("groundcot: --split validation:") and "split.test_fraction" in err
    assert main(["eval", str(tmp_path / "nothing"), "--run", str(run), "--style", "textual"]) == 2
    err = capfd.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"groundcot: {tmp_path / 'nothing'}: cannot load a model there") and "Traceback" not in err


def test_an_endpoint_that_fails_is_one_line_without_the_key(run, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("EVAL_KEY", "sk-eval-secret")
    with FakeOpenAI(reply_with=lambda body: "unused") as fake:
        url = fake.base_url
    assert main(["eval", "fake-vlm", "--run", str(run), "--style", "textual", "--base-url", url,
                 "--api-key-env", "EVAL_KEY", "-o", str(tmp_path / "eval")]) == 2
    err = capfd.readouterr().err.strip()
    assert err.splitlines()[-1].startswith(f"groundcot: --base-url {url}/models is unreachable (")
    assert "sk-eval-secret" not in err and "Traceback" not in err


def test_a_model_the_endpoint_does_not_serve_is_one_line_before_any_row(run, tmp_path, capfd):
    with FakeOpenAI(reply_with=lambda body: "unused") as fake:
        assert main(["eval", "no-such-model", "--run", str(run), "--style", "textual", "--base-url", fake.base_url,
                     "-o", str(tmp_path / "eval")]) == 2
        assert not fake.requests  # nothing was asked
    err = capfd.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("groundcot: MODEL: 'no-such-model' is not served by") and "fake-vlm" in err


def test_mgpo_rolls_out_through_its_environment(run, tmp_path):
    """mgpo's first turn calls its crop tool; the crop comes back (as a user turn with the image) and the
    second turn answers, right for half the rows: boxed_answer and tool calls per answer follow."""
    rows = {(r["question"], r["image"].tobytes()): r for r in read_run(str(run), styles=["mgpo"], splits=["test"])}
    right = set(sorted(rows)[::2])

    def reply(body):
        first = body["messages"][0]["content"]
        text = next(p["text"] for p in first if p["type"] == "text")
        url = first[0]["image_url"]["url"]
        pixels = rgb_bytes(url)
        key = next(k for k in rows if k[0] in text and k[1] == pixels)
        if len(body["messages"]) == 1:
            box = [round(v) for v in rows[key]["actions"][0]["bbox_2d"]]
            return f'<tool_call>{{"name": "crop", "arguments": {{"bbox_2d": {box}}}}}</tool_call>'
        tool_turn = body["messages"][2]
        assert tool_turn["role"] == "user" and tool_turn["content"][0]["type"] == "image_url"
        return "\\boxed{" + (rows[key]["answer"] if key in right else "zebra") + "}"

    out = tmp_path / "eval"
    with FakeOpenAI(reply_with=reply) as fake:
        assert main(["eval", "fake-vlm", "--run", str(run), "--style", "mgpo", "--base-url", fake.base_url,
                     "-o", str(out)]) == 0
    mgpo = json.loads((out / "eval.json").read_text())["styles"]["mgpo"]
    assert mgpo["rows"] == len(rows) and mgpo["tool_calls_per_answer"] == 1.0
    assert mgpo["rewards"]["boxed_answer"] == pytest.approx(len(right) / len(rows))
    assert mgpo["rewards"] == recomputed(out, run)["mgpo"]
