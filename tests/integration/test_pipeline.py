"""Full runs through the CLI on the local runner: the demo, and a run full of bad records; the
CLI's bundled jobs and its one-line errors."""
import json
import logging
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from groundcot.pipeline.cli import main
from groundcot.schemas.columns import TRAIN_COLUMNS
from groundcot.schemas.cot import parse_cot
from groundcot.schemas.runs import read_run
from groundcot.transforms.styles import STYLES, columns_of

from support import REPO, png_bytes, viscot_line

DEMO = str(REPO / "jobs" / "demo.yaml")


def read_stats(out):
    return json.loads((out / "stats.json").read_text())


def rejected_rows(out):
    return [json.loads(line) for f in sorted((out / "rejected").glob("*.jsonl"))
            for line in f.read_text().splitlines()]


def assert_adds_up(stats):
    assert stats["balanced"]
    before = stats["by_style"].get("before_styles", {}).get("rejected", 0)
    for style, entry in stats["by_style"].items():
        if style != "before_styles":  # every record that reached the styles ends once per style
            assert stats["records_in"] - before == entry["written"] + sum(entry["rejected_by_reason"].values())
    assert stats["rejected"] == sum(stats["rejected_by_reason"].values())


def test_demo_writes_a_dataset_that_loads_with_decoded_images(demo_run):
    stats = read_stats(demo_run)
    assert_adds_up(stats)
    assert stats["records_in"] == 22 and stats["written"] == 21 * 4  # all four styles
    assert stats["rejected_by_reason"] == {"box_outside_image": 1}
    assert {s: v["written"] for s, v in stats["by_style"].items() if s != "before_styles"} == {
        "sif": 21, "mgpo": 21, "aperture": 21, "textual": 21}
    shards = sorted(p.relative_to(demo_run).as_posix() for p in (demo_run / "data").glob("**/*.parquet"))
    assert shards == [f"data/{s}/train-00000-of-00001.parquet" for s in ("aperture", "mgpo", "sif", "textual")]
    for style in STYLES:  # one config per style, only its own columns
        one = datasets.load_dataset("parquet", data_files=str(demo_run / "data" / style / "*.parquet"), split="train")
        assert len(one) == 21 and one.column_names == list(columns_of(style)) and set(one["style"]) == {style}
    row = datasets.load_dataset("parquet", data_files=str(demo_run / "data" / "sif" / "*.parquet"), split="train")[0]
    assert row["image"].size == (row["width"], row["height"])
    assert row["depth_map"].mode == "I;16" and row["depth_map"].size == row["image"].size
    ds = read_run(str(demo_run))
    assert len(ds) == 84 and set(ds.column_names) == set(TRAIN_COLUMNS)
    assert len({(r["id"], r["style"]) for r in ds}) == 84 and len(set(ds["id"])) == 21
    for row in ds.filter(lambda r: r["style"] == "sif"):
        cot = parse_cot(row["cot"])
        assert len(cot.steps) == len(row["chain"]) and cot.answer == row["answer"]
        assert row["teacher"] == "template" and row["hiou"] >= 0.5
        assert row["messages"][1]["content"][0]["text"] == row["cot"]
        assert row["question"] in row["messages"][0]["content"][-1]["text"]
        assert row["depth_image"] is not None  # sif.depth_input is on by default
        assert len(row["masks"]) == len(row["gt_boxes"])


def test_demo_rows_of_every_style_hold_their_images(demo_run):
    ds = read_run(str(demo_run))
    for row in ds:
        placeholders = sum(p["type"] == "image" for m in row["messages"] for p in m["content"])
        assert placeholders == 1 + (row["depth_image"] is not None) + len(row["crops"])
        assert len(row["crops"]) == {"sif": 0, "textual": 0, "mgpo": 1}.get(row["style"], len(row["actions"]))
        for crop in row["crops"]:
            assert min(crop.size) >= 28 or min(crop.size) == min(row["width"], row["height"])


def test_demo_records_the_depth_fallback_and_the_baseline_teacher(demo_run):
    stats = read_stats(demo_run)
    assert stats["depth_model"]["fallback_tiny_random"] is True
    quality = stats["teacher"].pop("quality")
    assert stats["teacher"] == {"kind": "template", "offline_baseline": True}
    assert set(quality) == set(stats["by_style"]) - {"before_styles"}
    for style, q in quality.items():  # the template never re-asks: every written row is a first-try accept
        assert q["accepted_first_try"] == stats["by_style"][style]["written"] and q["accepted_after_reask"] == 0
    assert stats["config"]["depth"]["fallback"] == "tiny_random"
    assert stats["masks_model"]["fallback_tiny_random"] is True
    assert stats["versions"]["apache-beam"] and stats["counters"]["validate.ok"] == 84


def test_demo_handles_exif_greyscale_and_clipping(demo_run):
    ds = read_run(str(demo_run))
    by_path = {r["image_path"]: r for r in ds if r["style"] == "sif"}
    assert by_path["signs/sign_exif.jpg"]["image"].size == (240, 320)
    assert by_path["signs/sign_grey.png"]["image"].mode == "RGB"
    assert by_path["signs/sign_grey.png"]["gt_boxes"] == [[200.0, 60.0, 320.0, 120.0]]


def test_ids_and_text_are_stable_across_runs(demo_run, tmp_path):
    assert main(["generate", DEMO, "-o", str(tmp_path), "--set", "depth.enabled=false",
                 "--set", "styles=[sif]", "--set", "masks.enabled=false"]) == 0
    first = read_run(str(demo_run))
    second = read_run(str(tmp_path))
    assert sorted(set(first["id"])) == sorted(second["id"])
    chains = {r["id"]: [s["boxes"] for s in r["chain"]] for r in first}
    assert all(chains[r["id"]] == [s["boxes"] for s in r["chain"]] for r in second)
    assert all(r["depth_map"] is None and '"depth"' not in r["cot"] for r in second)


def test_limit_takes_the_same_records_each_time(tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["generate", DEMO, "-o", str(out), "--limit", "5", "--set", "depth.enabled=false",
                     "--set", "styles=[sif]", "--set", "masks.enabled=false"]) == 0
        assert read_stats(out)["records_in"] == 5  # one source (a glob over two files)
        runs.append(sorted(read_run(str(out))["id"]))
    assert runs[0] == runs[1]


def test_bad_records_are_rejected_with_reasons_and_nothing_is_lost(tmp_path, image_root):
    for name in ("good1.png", "good2.png", "good3.png", "small.png"):
        (image_root / name).write_bytes(png_bytes(64, 48))
    (image_root / "corrupt.png").write_bytes(png_bytes(64, 48)[:50])
    lines = [
        viscot_line("good1.png", 64, 48, [[10, 10, 30, 30]]),
        viscot_line("good2.png", 64, 48, [[0, 0, 20, 20], [40, 20, 64, 48]], question="How many?", answer="2"),
        viscot_line("good3.png", 64, 48, [[50, 30, 80, 60]]),  # partly outside: clipped, kept
        viscot_line("missing.png", 64, 48, [[10, 10, 30, 30]]),
        viscot_line("corrupt.png", 64, 48, [[10, 10, 30, 30]]),
        viscot_line("small.png", 100, 48, [[10, 10, 30, 30]]),
        viscot_line("good1.png", 64, 48, [[70, 60, 90, 80]], question="Outside?"),
        viscot_line("good1.png", 64, 48, [[10, 10, 10, 30]], question="Empty?"),
        viscot_line("../escape.png", 64, 48, [[10, 10, 30, 30]]),
        '{"question": "truncated", "answer": "x", "image": "good1.png", "wid',
        json.dumps({"question": "no answer", "image": "good1.png", "width": 64, "height": 48, "bboxs": []}),
        viscot_line("good1.png", -64, 48, [[10, 10, 30, 30]], question="Negative size?"),
    ]
    meta = tmp_path / "toy_cot_train.jsonl"
    meta.write_text("\n".join(lines) + "\n\n")
    job = tmp_path / "job.yaml"
    job.write_text(f"sources: [{{kind: viscot, path: '{meta}', image_root: '{image_root}'}}]\n"
                   "depth: {fallback: tiny_random}\n")
    out = tmp_path / "out"
    assert main(["generate", str(job), "--out", str(out)]) == 0
    stats = read_stats(out)
    assert_adds_up(stats)
    assert stats["records_in"] == 12 and stats["written"] == 3
    assert stats["rejected_by_reason"] == {
        "missing_image": 1, "corrupt_image": 1, "size_mismatch": 1, "box_outside_image": 1,
        "empty_box": 1, "path_escapes_root": 1, "bad_json": 1, "missing_key": 1, "bad_size": 1}
    rows = rejected_rows(out)
    assert len(rows) == 9 and all(r["reason"] and r["stage"] and r["detail"] for r in rows)
    missing = next(r for r in rows if r["reason"] == "missing_image")
    assert missing["image_path"] == "missing.png" and missing["question"] == "What is it?"
    ds = read_run(str(out))
    assert sorted(ds["image_path"]) == ["good1.png", "good2.png", "good3.png"]


def test_bad_config_exits_2_with_one_line(capsys):
    assert main(["generate", DEMO, "--set", "depth.batch_size=lots"]) == 2
    err = capsys.readouterr().err.strip()
    assert "depth.batch_size" in err and "\n" not in err


def test_generate_falls_back_to_a_bundled_job_from_any_folder(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="groundcot")
    assert main(["generate", "jobs/demo.yaml", "--limit", "2", "--set", "depth.enabled=false",
                 "--set", "masks.enabled=false", "--set", "styles=[sif]"]) == 0
    assert "using the bundled job" in caplog.text
    assert read_stats(tmp_path / "out" / "demo")["written"] == 2  # output.dir: relative to the working directory


def test_demo_writes_out_demo_by_default(monkeypatch):
    from groundcot.pipeline import cli

    calls = []
    monkeypatch.setattr(cli, "_generate", lambda *args, **kwargs: calls.append((*args, kwargs)) or 0)
    assert main(["demo"]) == 0 and main(["demo", "-o", "elsewhere", "--overwrite"]) == 0
    config, out, _, _, options = calls[0]
    assert calls[1][1] == "elsewhere" and calls[1][4] == {"overwrite": True} and options == {"overwrite": False}
    assert Path(config) == cli.bundled_jobs() / "demo.yaml" and out is None
    assert cli.resolve_config("demo") == config and "out/demo" in Path(config).read_text()


def test_a_config_that_names_nothing_is_one_line_listing_the_bundled_jobs(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "jobs/nope.yaml"]) == 2
    err = capfd.readouterr().err.strip()
    assert "jobs/nope.yaml: no such file" in err and "demo, " in err and "train_sft" in err and "\n" not in err


@pytest.mark.parametrize("value, words", [
    ("runner.name=Flinkrunner", "unknown runner 'Flinkrunner'; did you mean FlinkRunner?"),
    ("runner.name=no.such.Runner", "runner.name: no.such.Runner cannot be used here"),
    ("runner.options={direct_num_wrkers: 2}", "runner.options: Beam knows no option direct_num_wrkers"),
])
def test_a_bad_runner_is_one_line_before_anything_runs(tmp_path, capfd, value, words):
    out = tmp_path / "out"
    assert main(["generate", DEMO, "-o", str(out), "--set", value]) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("groundcot: config error: ") and words in err and "\n" not in err
    assert not out.exists()


def test_cli_errors_from_the_installed_command_are_one_line(tmp_path):
    """As a user meets them: the console script and ``python -m groundcot``, from another folder."""
    script = Path(sys.executable).parent / "groundcot"
    for command, words in (
            ([str(script), "generate", "nope.yaml"], "nope.yaml: no such file, and no bundled job"),
            ([sys.executable, "-m", "groundcot", "train", "grpo", "nope"], "nope: no such file"),
            ([sys.executable, "-m", "groundcot", "generate", "demo", "--set", "runner.name=Flinkrunner"],
             "did you mean FlinkRunner?")):
        proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("groundcot: config error: ") and words in last
    assert not (tmp_path / "out").exists()
