"""A finished run is a Hub-ready dataset: one config per style that ``datasets`` loads from the folder,
a card whose metadata parses, and ``groundcot publish`` pushing exactly the dry-run's files to a
loopback Hub (support/fake_hub.py) in one commit, without the token ever showing."""
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard
from PIL import Image

from groundcot.pipeline.cli import main
from groundcot.runs.publish import scrub
from groundcot.transforms.styles import columns_of

from support import png_bytes, viscot_line
from support.fake_hub import FakeHub

TOKEN = "hf_loopbackTestToken0123456789"
GROUNDCOT = str(Path(sys.executable).with_name("groundcot"))


@pytest.fixture
def run(demo_run):
    return demo_run  # the session's demo run (conftest.py)


def stats_of(run: Path) -> dict:
    return json.loads((run / "stats.json").read_text())


def test_every_style_loads_from_the_run_folder_with_its_own_columns(run):
    stats = stats_of(run)
    for style in ("sif", "mgpo", "aperture", "textual"):
        ds = datasets.load_dataset(str(run), style, split="train")
        assert len(ds) == stats["by_style"][style]["written"] == 21
        assert ds.column_names == list(columns_of(style)) and set(ds["style"]) == {style}
        row = ds[0]
        assert isinstance(row["image"], Image.Image) and row["image"].size == (row["width"], row["height"])
        for crop in row.get("crops", []):
            assert isinstance(crop, Image.Image)
        for path in (run / "data" / style).glob("*.parquet"):
            meta = pq.ParquetFile(path).metadata
            assert all(meta.row_group(i).num_rows <= 256 for i in range(meta.num_row_groups))
    with pytest.raises(ValueError):  # rejected/ is in no config
        datasets.load_dataset(str(run), "rejected", split="train")


def test_the_card_parses_and_its_metadata_is_what_datasets_reads(run):
    card = DatasetCard.load(run / "README.md")
    assert str(card) == (run / "README.md").read_text(encoding="utf-8")  # as huggingface_hub writes a card
    data = card.data
    assert data.license == "other" and data.source_datasets == ["deepcs233/Visual-CoT"]  # demo: VisCoT only
    assert data.size_categories == ["n<1K"] and "visual-question-answering" in data.task_categories
    configs = MetadataConfigs.from_dataset_card_data(data)
    assert configs == {s: {"data_files": [{"split": "train", "path": f"data/{s}/train-*"}]}
                       for s in ("sif", "mgpo", "aperture", "textual")}
    infos = DatasetInfosDict.from_dataset_card_data(data)
    assert {s: i.splits["train"].num_examples for s, i in infos.items()} == {
        "sif": 21, "mgpo": 21, "aperture": 21, "textual": 21}
    assert list(infos["mgpo"].features) == list(columns_of("mgpo"))
    text = card.text
    for figure in ("figures/hiou.png", "figures/chain_length.png", "figures/rejections.png"):
        assert f"]({figure} \"" in text and Image.open(run / figure).format == "PNG"  # with its title
    assert "| box_outside_image | 1 |" in text  # the rejection table
    assert "@article{chen2025sifthinker" in text and "Depth Anything V2" in text and "@inproceedings{plummer" not in text
    assert "Q: " in text and "<think>" in text  # example rows
    assert "tiny random-weights stand-in" in text  # the demo's depth model, said plainly


def publish(run: Path, hub: FakeHub, *args: str, token: str | None = TOKEN, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_DISABLE_XET="1",  # basic LFS, no Xet server here
               HF_HUB_DISABLE_TELEMETRY="1", **({"HF_TOKEN": token} if token else {}))
    return subprocess.run([GROUNDCOT, "publish", str(run), *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def dry_run_tree(stdout: str) -> dict[str, int]:
    lines = [line.split() for line in stdout.splitlines() if line.startswith("  ")]
    return {parts[0]: int(parts[1]) for parts in lines}


def test_publish_pushes_the_dry_run_tree_in_one_commit_and_never_shows_the_token(run, tmp_path):
    with FakeHub(TOKEN) as hub:
        dry = publish(run, hub, "--repo-id", "me/grounded", "--dry-run", home=tmp_path)
        assert dry.returncode == 0, dry.stderr
        planned = dry_run_tree(dry.stdout)
        assert not hub.requests  # a dry run talks to nobody
        assert {"README.md", "stats.json", "job.yaml", "figures/hiou.png"} <= set(planned)
        assert {p for p in planned if p.startswith("data/")} == {
            f"data/{s}/train-00000-of-00001.parquet" for s in ("sif", "mgpo", "aperture", "textual")}
        assert not any(p.startswith("rejected/") for p in planned)

        done = publish(run, hub, "--repo-id", "me/grounded", home=tmp_path)
        assert done.returncode == 0, done.stderr
        got = hub.files("me/grounded")
        got.pop(".gitattributes")
        assert {p: len(b) for p, b in got.items()} == planned
        for path in ("README.md", "data/sif/train-00000-of-00001.parquet", "figures/hiou.png"):
            assert got[path] == (run / path).read_bytes()
        assert json.loads(got["stats.json"])["run_id"] == stats_of(run)["run_id"]
        assert len(hub.commits) == 1 and hub.commits[0]["summary"] == f"groundcot run {stats_of(run)['run_id']}"
        assert any(auth == f"Bearer {TOKEN}" for _, _, auth in hub.requests)  # it was used ...
    for text in (dry.stdout, dry.stderr, done.stdout, done.stderr):  # ... and shown nowhere
        assert TOKEN not in text
    assert not any(TOKEN.encode() in b for b in got.values())
    assert not any(TOKEN.encode() in p.read_bytes() for p in run.rglob("*") if p.is_file())
    assert "datasets/me/grounded" in done.stdout


def test_republishing_a_new_run_replaces_the_data_files(run, tmp_path):
    small = tmp_path / "small"
    assert main(["generate", "demo", "-o", str(small), "--limit", "4", "--set", "styles=[sif]",
                 "--set", "depth.enabled=false", "--set", "masks.enabled=false"]) == 0
    with FakeHub(TOKEN) as hub:
        assert publish(run, hub, "--repo-id", "me/grounded", home=tmp_path).returncode == 0
        again = publish(small, hub, "--repo-id", "me/grounded", home=tmp_path)
        assert again.returncode == 0, again.stderr
        files = hub.files("me/grounded")
        assert [p for p in files if p.startswith("data/")] == ["data/sif/train-00000-of-00001.parquet"]
        assert files["data/sif/train-00000-of-00001.parquet"] == (
            small / "data" / "sif" / "train-00000-of-00001.parquet").read_bytes()
        assert len(hub.commits) == 2 and sorted(hub.commits[1]["deleted"]) == [
            f"data/{s}/train-00000-of-00001.parquet" for s in ("aperture", "mgpo", "textual")]
        card = DatasetCard(files["README.md"].decode())
        assert [c["config_name"] for c in card.data.configs] == ["sif"]


def test_private_repo_on_a_branch(run, tmp_path):
    with FakeHub(TOKEN) as hub:
        done = publish(run, hub, "--repo-id", "me/private", "--private", "--revision", "v1", home=tmp_path)
        assert done.returncode == 0, done.stderr
        assert hub.repos["me/private"]["private"] is True
        assert "README.md" in hub.files("me/private", "v1") and "README.md" not in hub.files("me/private")


def test_without_a_token_publish_says_so_in_one_line(run, tmp_path):
    with FakeHub(TOKEN) as hub:
        done = publish(run, hub, "--repo-id", "me/grounded", token=None, home=tmp_path)
        assert done.returncode == 1 and not hub.requests
        assert done.stderr.strip().splitlines()[-1] == (
            "groundcot: publish: no Hugging Face token: set HF_TOKEN or log in with `hf auth login`")
        wrong = publish(run, hub, "--repo-id", "me/grounded", token="hf_wrongToken0123456789", home=tmp_path)
        assert wrong.returncode == 1 and "hf_wrongToken0123456789" not in wrong.stderr + wrong.stdout
        assert "publish to me/grounded failed" in wrong.stderr.strip().splitlines()[-1]


def test_missing_run_is_one_line(tmp_path, capfd):
    assert main(["publish", str(tmp_path / "nothing"), "--repo-id", "me/x", "--dry-run"]) == 2
    err = capfd.readouterr().err.strip()
    assert "nothing: no such folder" in err and "\n" not in err


def test_scrub_removes_secrets_but_keeps_variable_names(monkeypatch):
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-verysecretvalue42")
    config = {"teacher": {"kind": "openai", "connection": {
                  "api_key_env": "MY_TEACHER_KEY", "api_key_secret": "file:/run/key",
                  "base_url": "https://user:pa55@api.example.com/v1"},
                  "request": {"extra_body": {"Authorization": "Bearer abc"}}},
              "runner": {"options": {"note": "key is sk-verysecretvalue42"}}}
    from groundcot.runs.publish import known_secrets

    clean = scrub(config, known_secrets(None, config))
    conn = clean["teacher"]["connection"]
    assert conn["api_key_env"] == "MY_TEACHER_KEY"
    assert conn["api_key_secret"] == "<removed>"
    assert conn["base_url"] == "https://api.example.com/v1"
    assert clean["teacher"]["request"]["extra_body"]["Authorization"] == "<removed>"
    assert "sk-verysecretvalue42" not in json.dumps(clean)


def test_the_sources_splits_become_the_configs_splits(tmp_path, image_root):
    lines = []
    for i, split in enumerate(["train", "train", "val", "test", ""]):
        (image_root / f"img{i}.png").write_bytes(png_bytes(64, 48))
        lines.append(viscot_line(f"img{i}.png", 64, 48, [[10, 10, 30 + i, 30]], question=f"What is {i}?",
                                 split=split))
    (tmp_path / "toy_cot_train.jsonl").write_text("\n".join(lines) + "\n")
    job = tmp_path / "job.yaml"
    job.write_text("sources: [{kind: viscot, path: toy_cot_train.jsonl, image_root: images}]\n"
                   "styles: [sif, mgpo]\ndepth: {enabled: false}\n")
    out = tmp_path / "out"
    assert main(["generate", str(job), "-o", str(out)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in (out / "data").rglob("*.parquet")) == [
        f"data/{style}/{split}-00000-of-00001.parquet" for style in ("mgpo", "sif") for split in ("test", "train", "val")]
    ds = datasets.load_dataset(str(out), "mgpo")
    assert {name: len(part) for name, part in ds.items()} == {"train": 3, "val": 1, "test": 1}  # "" -> train
    assert sorted(ds["val"]["question"]) == ["What is 2?"]


def test_the_license_follows_the_sources_and_flags_flickr30k():
    from groundcot.runs.card import licenses, provenance

    gqa = {"kind": "gqa", "path": "q.json", "scene_graphs": "g.json", "image_root": "images"}
    viscot = {"kind": "viscot", "path": "m.jsonl", "image_root": "images"}
    assert licenses(provenance([gqa], {"gqa": {"gqa"}}))[:2] == ("cc-by-4.0", {})
    # Flickr30k images through VisCoT
    license_id, extra, notes = licenses(provenance([viscot], {"viscot": {"cub", "flickr30k"}}))
    assert license_id == "other" and extra == {"license_name": "mixed-source-terms"}
    assert any("non-commercial" in n for n in notes)
    assert licenses(provenance([viscot, gqa], {}))[0] == "other"
