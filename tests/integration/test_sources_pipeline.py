"""All four sources in one job, from files in their published formats."""
import json
import shutil

from test_pipeline import assert_adds_up

from groundcot.pipeline.cli import main
from groundcot.pipeline.config import load_config
from groundcot.schemas.runs import read_run
from groundcot.transforms.styles import STYLES

from support import FIXTURES, GQA_GRAPH, REPO, png_bytes, viscot_line


def test_every_job_config_in_jobs_is_valid():
    kinds = set()
    for job in sorted((REPO / "jobs").glob("*.yaml")):
        if not job.name.startswith("train_"):  # trainer configs: tests/test_trainer.py
            kinds |= {s.kind for s in load_config(str(job)).sources}
    assert kinds == {"viscot", "viscot_llava", "tallyqa", "gqa", "flickr30k", "grounded"}
    assert len(load_config(str(REPO / "jobs" / "mixed.yaml")).sources) == 4


def build(tmp_path):
    root = tmp_path / "data"
    # VisCoT metadata: paths relative to each sub-dataset folder
    (root / "viscot" / "imgs" / "toy").mkdir(parents=True)
    (root / "viscot" / "imgs" / "toy" / "a.png").write_bytes(png_bytes(64, 48))
    (root / "viscot" / "toy_cot_train.jsonl").write_text(viscot_line("a.png", 64, 48, [[5, 5, 30, 30]]) + "\n")
    # VisCoT LLaVA: the real benchmark records, images drawn at the real sizes
    llava = json.loads((FIXTURES / "viscot" / "benchmark_gqa.first3.json").read_text())
    sizes = [(391, 500), (500, 374), (500, 500)]
    (root / "cot_image_data" / "gqa").mkdir(parents=True)
    for rec, (w, h) in zip(llava, sizes):
        (root / "cot_image_data" / rec["image"][0][len("cot/"):]).write_bytes(png_bytes(w, h))
    llava[2]["image"] = llava[2]["image"][:1]  # only the normalised box for this one
    (root / "gqa_bench.json").write_text(json.dumps(llava, indent=4))
    # TallyQA boxed: two boxes, and a count of 0
    (root / "vg").mkdir()
    (root / "vg" / "1.png").write_bytes(png_bytes(80, 60))
    (root / "tallyqa_train_10.jsonl").write_text("\n".join([
        viscot_line("1.png", 80, 60, [[1, 1, 20, 20], [40, 30, 70, 55]], question="How many?", answer="2"),
        viscot_line("1.png", 80, 60, [], question="How many cats?", answer="0")]) + "\n")
    # GQA: real questions and image, a scene graph in the documented layout
    (root / "gqa_images").mkdir()
    shutil.copy(FIXTURES / "gqa" / "2371269.jpg", root / "gqa_images" / "2371269.jpg")
    (root / "val_sceneGraphs.json").write_text(json.dumps(GQA_GRAPH))
    # Flickr30k Entities: real sentences and (partial) xml, a drawn 333x500 image
    f30k = root / "f30k"
    (f30k / "Sentences").mkdir(parents=True)
    (f30k / "Annotations").mkdir()
    shutil.copy(FIXTURES / "flickr30k_entities" / "1000092795.txt", f30k / "Sentences" / "1000092795.txt")
    shutil.copy(FIXTURES / "flickr30k_entities" / "1000092795.partial.xml", f30k / "Annotations" / "1000092795.xml")
    (f30k / "val.txt").write_text("1000092795\n")
    (root / "f30k_images").mkdir()
    (root / "f30k_images" / "1000092795.jpg").write_bytes(png_bytes(333, 500))
    job = tmp_path / "mixed.yaml"
    job.write_text(f"""
sources:
  - {{kind: viscot, path: {root}/viscot/*_cot_train.jsonl, image_root: "{root}/viscot/imgs/{{dataset}}"}}
  - {{kind: viscot_llava, path: {root}/gqa_bench.json, image_root: {root}/cot_image_data}}
  - {{kind: tallyqa, path: {root}/tallyqa_train_10.jsonl, image_root: {root}/vg}}
  - {{kind: gqa, path: {FIXTURES}/gqa/SAMPLE-val_balanced_questions.json,
      scene_graphs: {root}/val_sceneGraphs.json, image_root: {root}/gqa_images}}
  - {{kind: flickr30k, path: {f30k}, split: val, image_root: {root}/f30k_images}}
depth: {{enabled: false}}
""")
    return job


def test_four_sources_in_one_job(tmp_path):
    out = tmp_path / "out"
    assert main(["generate", str(build(tmp_path)), "--out", str(out)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["balanced"]
    by = stats["by_source"]
    assert {k: (v["in"], v["written"]) for k, v in by.items()} == {
        "viscot": (1, 1), "viscot_llava": (3, 3), "tallyqa": (2, 1), "gqa": (5, 2), "flickr30k": (10, 3)}
    assert by["tallyqa"]["rejected_by_reason"] == {"no_boxes": 1}
    assert by["gqa"]["rejected_by_reason"] == {"unknown_image_id": 3}
    assert by["flickr30k"]["rejected_by_reason"] == {"phrase_not_boxed": 7}
    ds = read_run(str(out))
    rows = {(r["source"], r["source_id"]): r for r in ds}
    assert rows[("gqa", "00137901")]["gt_boxes"][0] == [470, 300, 500, 375]  # clipped
    assert rows[("gqa", "00137872")]["labels"] == ["camera", "traffic light"]
    assert rows[("viscot_llava", "7")]["gt_boxes"] == [[217, 343, 242, 393]]
    square = rows[("viscot_llava", "16")]["gt_boxes"][0]  # from the normalised box of a 500x500 image
    assert all(abs(a - b) <= 0.5 for a, b in zip(square, [117, 361, 285, 482]))
    assert rows[("flickr30k", "1000092795#1")]["gt_boxes"] == [[158, 124, 218, 334], [196, 109, 260, 372]]


def test_a_replaced_flickr30k_question_prompt_reaches_the_reader_on_worker_processes(tmp_path):
    """Two local worker processes: the replaced prompts travel with the steps (the reader's question,
    the training prompt rendered into the rows); every style is written and stats.json adds up."""
    job = build(tmp_path)
    text = job.read_text().split("sources:\n")[1]
    f30k = [line for line in text.splitlines() if "kind: flickr30k" in line][0]
    job.write_text(f"sources:\n{f30k}\ndepth: {{enabled: false}}\nstyles: [{', '.join(STYLES)}]\n"
                   "prompts: {flickr30k_question: 'Point at $phrase (from: $sentence).', "
                   "sif_train: '$question Answer in one word.'}\n")
    out = tmp_path / "out"
    assert main(["generate", str(job), "--out", str(out), "--set", "runner.workers=2"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert_adds_up(stats)
    # the fixture's ten phrases: three boxed, seven not (the reader rejects those); every style writes three
    assert stats["rejected_by_reason"] == {"phrase_not_boxed": 7} and stats["written"] == 3 * len(STYLES)
    questions = set(read_run(str(out), styles=["textual"])["question"])
    assert questions and all(q.startswith("Point at ") and "(from: " in q for q in questions), questions
    sif = read_run(str(out), styles=["sif"])
    asked = [row["messages"][0]["content"][1]["text"] for row in sif]
    assert asked == [f"{q} Answer in one word." for q in sif["question"]]
