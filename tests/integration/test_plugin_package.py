"""A separate package adds a source, a style, a teacher backend and a reward family through
groundcot's entry points; the user's commands work with them and no file of groundcot is edited (the package is installed with pip
into a folder of its own, put on PYTHONPATH for the commands)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import FIXTURES, png_bytes

pytestmark = pytest.mark.slow
PACKAGE = FIXTURES / "plugin_package"
GROUNDCOT = str(Path(sys.executable).with_name("groundcot"))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """gc-extras installed (a real pip install, not editable) into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(PACKAGE)], check=True)
    assert (target / "gc_extras" / "source.py").is_file()
    assert any(target.glob("gc_extras-0.1.0.dist-info/entry_points.txt"))
    return target


def run(args: list[str], site: Path, cwd: Path, program: str = GROUNDCOT) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([program, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"groundcot {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_plugins_through_generate_inspect_export_publish_and_train(site, tmp_path):
    (tmp_path / "images").mkdir()
    rows = ["image,question,answer,x1,y1,x2,y2"]
    for i in range(4):
        (tmp_path / "images" / f"p{i}.png").write_bytes(png_bytes(96, 64))
        rows.append(f"p{i}.png,What is in box {i}?,thing {i},{8 + i},10,{60 + i},50")
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({
        "sources": [{"kind": "csvboxes", "path": "boxes.csv", "image_root": "images"}],
        "styles": ["sif", "terse"], "depth": {"enabled": False}, "sif": {"depth_input": False},
        "teacher": {"kind": "signed", "signature": "abc"}}))

    run(["generate", "job.yaml", "-o", "out/run"], site, tmp_path)
    out = tmp_path / "out" / "run"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["by_source"]["csvboxes"]["in"] == 4 and stats["by_style"]["terse"]["written"] == 4
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "mit" and meta["source_datasets"] == ["someone/csv-boxes"]
    assert {c["config_name"] for c in meta["configs"]} == {"sif", "terse"}
    assert "Terse: one sentence of reasoning" in card and "terse_train" in card  # its text, its prompts' hashes
    import datasets

    terse = datasets.load_dataset(str(out), "terse", split="train")
    assert len(terse) == 4 and terse[0]["messages"][0]["content"][-1]["text"].endswith(
        "Think in one sentence, then answer.")
    assert set(terse["teacher"]) == {"signed:abc"}  # the plugin backend wrote them
    assert sorted(b for r in terse for b in r["gt_boxes"]) == sorted(
        [[8.0 + i, 10.0, 60.0 + i, 50.0] for i in range(4)])

    assert "report:" in run(["inspect", "out/run"], site, tmp_path)
    assert "terse" in (out / "report" / "index.html").read_text()
    for fmt in ("trl", "llamafactory", "verl"):
        run(["export", "out/run", "--format", fmt, "--style", "terse", "-o", f"out/{fmt}"], site, tmp_path)
    assert (tmp_path / "out" / "verl" / "train.parquet").is_file()
    scored = run(["-c", "import json, sys, pandas; from groundcot.trainer.verl_reward import compute_score; "
                  "r = pandas.read_parquet('out/verl/train.parquet').iloc[0]; "
                  "print(json.dumps({**compute_score(r['data_source'], '<think>a box</think><answer>' + "
                  "r['reward_model']['ground_truth'] + '</answer>', r['reward_model']['ground_truth'], "
                  "dict(r['extra_info'])), 'beam': 'apache_beam' in sys.modules}))"],
                 site, tmp_path, program=sys.executable)
    # the plugin's reward part; verl's reward workers import no Beam
    assert json.loads(scored) == {"score": 2.0, "answer": 1.0, "brevity": 1.0, "beam": False}
    listing = run(["publish", "out/run", "--repo-id", "someone/gc-extras-demo", "--dry-run"], site, tmp_path)
    assert "data/terse/" in listing

    from groundcot.pipeline.cli import main  # the model is plain groundcot: made here, not in one more interpreter

    assert main(["tiny-model", str(tmp_path / "qwen")]) == 0
    run(["train", "sft", "jobs/train_sft.yaml", "-o", "out/sft", "--set", "model=qwen",
         "--set", "data.runs=[out/run]", "--set", "data.styles=[terse]", "--set", "train.max_steps=1",
         "--set", "train.grad_accum=1"], site, tmp_path)
    assert (tmp_path / "out" / "sft" / "adapter_model.safetensors").is_file()
