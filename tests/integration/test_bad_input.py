"""Hostile input through the real CLI: bad bytes, escaping paths, duplicates, empty text and
odd images each end as a record with its reason, the run goes on, and stats.json adds up."""
import io
import json
import logging

import numpy as np
from PIL import Image

from groundcot.pipeline.cli import main
from groundcot.schemas.runs import read_run

from support import FIXTURES, GQA_GRAPH, png_bytes, viscot_line

BOM = b"\xef\xbb\xbf"


def generate(tmp_path, sources: str, *sets: str):
    """Run ``generate`` on a job with these sources (YAML list items); (stats, rejected rows, written rows)."""
    job = tmp_path / "job.yaml"
    job.write_text(f"sources:\n{sources}\ndepth: {{enabled: false}}\n")
    out = tmp_path / "out"
    args = ["generate", str(job), "-o", str(out)] + [a for s in sets for a in ("--set", s)]
    assert main(args) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["balanced"]
    assert stats["records_in"] == stats["written"] + stats["rejected"]  # one style: one fate per record
    assert stats["rejected"] == sum(stats["rejected_by_reason"].values())
    rejected = [json.loads(line) for f in sorted((out / "rejected").glob("*.jsonl"))
                for line in f.read_text().splitlines()]
    rows = list(read_run(str(out))) if list((out / "data").glob("*/*.parquet")) else []
    return stats, rejected, rows


def line(image="a.png", question="What is it?", answer="red", **extra) -> bytes:
    return viscot_line(image, 64, 48, [[5, 5, 30, 30]], question=question, answer=answer, **extra).encode()


def test_bad_bytes_in_jsonl_are_rejected_and_a_bom_is_skipped(tmp_path, image_root):
    (image_root / "toy").mkdir()
    (image_root / "toy" / "a.png").write_bytes(png_bytes())
    first = line(question="First?")
    latin1 = line(question="Où est le café?").replace(b"\\u00e9", b"\xe9")  # one latin-1 byte, not UTF-8
    surrogate = line(question="Lone \\ud800 surrogate?").replace(b"\\\\ud800", b"\\ud800")
    meta = tmp_path / "toy_cot_train.jsonl"
    meta.write_bytes(BOM + b"\n".join([first, latin1, surrogate, line(question="Last?")]) + b"\n")
    tally = tmp_path / "tallyqa_train.jsonl"
    bad_answer = line(question="How many?", answer="2\u00ff").replace(b"\\u00ff", b"\xff")
    tally.write_bytes(b"\n".join([bad_answer, line(question="How many now?", answer="1")]) + b"\n")
    stats, rejected, rows = generate(tmp_path, f"""
  - {{kind: viscot, path: '{meta}', image_root: '{image_root}/{{dataset}}'}}
  - {{kind: tallyqa, path: '{tally}', image_root: '{image_root}/toy'}}""")
    assert sorted(r["question"] for r in rows) == ["First?", "How many now?", "Last?"]
    assert stats["by_source"]["viscot"]["rejected_by_reason"] == {"bad_encoding": 2}
    assert stats["by_source"]["tallyqa"]["rejected_by_reason"] == {"bad_encoding": 1}
    bad = sorted((r for r in rejected if r["reason"] == "bad_encoding"), key=lambda r: r["detail"])
    offset = len(BOM + first) + 1
    assert any(r["detail"].startswith(f"toy_cot_train.jsonl@{offset}: not UTF-8: byte 0xe9") for r in bad)
    assert any("\\u escape" in r["detail"] for r in bad)
    assert any(r["detail"].startswith("tallyqa_train.jsonl@0: not UTF-8: byte 0xff") for r in bad)


def test_bad_bytes_in_streamed_json_are_rejected_and_a_bom_is_skipped(tmp_path, image_root):
    llava = json.loads((FIXTURES / "viscot" / "benchmark_gqa.first3.json").read_text())
    for rec in llava:
        (image_root / rec["image"][0][len("cot/"):]).parent.mkdir(parents=True, exist_ok=True)
        (image_root / rec["image"][0][len("cot/"):]).write_bytes(png_bytes(500, 500))
    items = [json.dumps(rec, ensure_ascii=False).encode() for rec in llava]
    items[1] = items[1].replace(b"What", b"Wh\xc0t", 1)  # an invalid UTF-8 byte
    array = tmp_path / "bench.json"
    array.write_bytes(BOM + b"[" + b",\n".join(items) + b"]")
    questions = json.loads((FIXTURES / "gqa" / "SAMPLE-val_balanced_questions.json").read_text())
    members = [json.dumps({k: v}, ensure_ascii=False).encode()[1:-1] for k, v in questions.items()]
    members[0] = members[0].replace(b"Are", b"\xffre", 1)
    qfile = tmp_path / "val_questions.json"
    qfile.write_bytes(BOM + b"{" + b", ".join(members) + b"}")
    graphs = {**GQA_GRAPH, "1159529": {"width": 500, "height": 333, "objects": {}}}
    gfile = tmp_path / "val_sceneGraphs.json"
    gfile.write_bytes(BOM + json.dumps(graphs).encode().replace(b'"height": 333', b'"h\xffight": 333'))
    (tmp_path / "gqa").mkdir()
    (tmp_path / "gqa" / "2371269.jpg").write_bytes((FIXTURES / "gqa" / "2371269.jpg").read_bytes())
    stats, rejected, rows = generate(tmp_path, f"""
  - {{kind: viscot_llava, path: '{array}', image_root: '{image_root}'}}
  - {{kind: gqa, path: '{qfile}', scene_graphs: '{gfile}', image_root: '{tmp_path}/gqa'}}""")
    by = stats["by_source"]
    assert by["viscot_llava"]["in"] == 3 and by["viscot_llava"]["rejected_by_reason"] == {"bad_encoding": 1}
    assert by["gqa"]["in"] == len(questions)
    assert by["gqa"]["rejected_by_reason"]["bad_encoding"] == 1 and by["gqa"]["written"] == 2
    bad = [r for r in rejected if r["reason"] == "bad_encoding"]
    assert {r["detail"].split(":")[0] for r in bad} == {"bench.json", "val_questions.json"}
    assert all("at byte" in r["detail"] and "not UTF-8" in r["detail"] for r in bad)
    assert stats["counters"]["read.gqa_scene_graph.bad_encoding"] == 1


def test_flickr30k_bad_bytes_and_bom(tmp_path, image_root):
    root = tmp_path / "f30k"
    (root / "Sentences").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for image_id in ("1000092795", "2"):
        (root / "Sentences" / f"{image_id}.txt").write_bytes(
            BOM + (FIXTURES / "flickr30k_entities" / "1000092795.txt").read_bytes())
        (root / "Annotations" / f"{image_id}.xml").write_bytes(
            (FIXTURES / "flickr30k_entities" / "1000092795.partial.xml").read_bytes())
        (image_root / f"{image_id}.jpg").write_bytes(png_bytes(333, 500))
    (root / "Sentences" / "2.txt").write_bytes(b"A \xff [/EN#1/people man] waves .\n")
    (root / "val.txt").write_bytes(BOM + b"1000092795\n2\n3\xfe\n../../etc/x\n")
    stats, rejected, rows = generate(tmp_path, f"""
  - {{kind: flickr30k, path: '{root}', split: val, image_root: '{image_root}'}}""")
    reasons = stats["rejected_by_reason"]
    assert reasons["bad_encoding"] == 2 and reasons["path_escapes_root"] == 1
    assert len(rows) == 3  # the BOM-prefixed first id reads as usual
    details = {r["detail"] for r in rejected if r["reason"] == "bad_encoding"}
    assert any(d.startswith("val.txt@16: not UTF-8: byte 0xfe") for d in details)
    assert any("2.txt: not UTF-8: byte 0xff" in d for d in details)


def test_paths_from_record_fields_stay_under_the_root(tmp_path):
    root = tmp_path / "cot_image_data"
    (root / "toy").mkdir(parents=True)
    (root / "toy" / "a.png").write_bytes(png_bytes())
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "a.png").write_bytes(png_bytes())  # exists: it would be read if not refused
    meta = tmp_path / "toy_cot_train.jsonl"
    meta.write_bytes(b"\n".join([
        line(), line(dataset="../outside"), line(dataset=str(tmp_path / "outside")), line(dataset=".."),
        line(image="../../outside/a.png"), line(image=str(tmp_path / "outside" / "a.png"))]) + b"\n")
    stats, rejected, rows = generate(tmp_path, f"""
  - {{kind: viscot, path: '{meta}', image_root: '{root}/{{dataset}}'}}""")
    assert len(rows) == 1 and rows[0]["dataset"] == "toy"
    assert stats["rejected_by_reason"] == {"path_escapes_root": 5}
    assert {r["stage"] for r in rejected} == {"image"}


def test_the_same_record_twice_is_written_once(tmp_path, image_root):
    (image_root / "a.png").write_bytes(png_bytes())
    first, second = tmp_path / "a_cot_train.jsonl", tmp_path / "b_cot_train.jsonl"
    first.write_bytes(b"\n".join([line(), line(), line(question="Other?")]) + b"\n")
    second.write_bytes(line() + b"\n")
    stats, rejected, rows = generate(tmp_path, f"""
  - {{kind: viscot, path: ['{first}', '{second}'], image_root: '{image_root}'}}""")
    assert stats["records_in"] == 4 and stats["written"] == 2
    assert stats["rejected_by_reason"] == {"duplicate": 2}
    assert len({(r["id"], r["style"]) for r in rows}) == len(rows) == 2
    dupes = [r for r in rejected if r["reason"] == "duplicate"]
    assert {r["stage"] for r in dupes} == {"read"} and {r["id"] for r in dupes} == {
        next(r["id"] for r in rows if r["question"] == "What is it?")}


def test_empty_or_null_question_or_answer_is_rejected(tmp_path, image_root):
    (image_root / "a.png").write_bytes(png_bytes())
    meta = tmp_path / "toy_cot_train.jsonl"
    meta.write_bytes(b"\n".join([
        line(), line(question=""), line(question="   "), line(question=None), line(answer=""),
        line(answer=" \t"), line(answer=None), line(question=["a list"])]) + b"\n")
    stats, rejected, rows = generate(tmp_path, f"""
  - {{kind: viscot, path: '{meta}', image_root: '{image_root}'}}""")
    assert len(rows) == 1
    assert stats["rejected_by_reason"] == {"empty_question": 4, "empty_answer": 3}
    assert not any("None" in (r["question"], r["answer"]) for r in rejected)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if image.mode in ("I", "F") else "PNG")
    return buffer.getvalue()


def test_images_of_any_mode_and_size(tmp_path, image_root, caplog):
    ramp = np.tile(np.linspace(0, 1, 64), (48, 1))
    images = {
        "i16.png": Image.fromarray((ramp * 65535).astype(np.uint16)),  # I;16
        "i32.tif": Image.fromarray((ramp * 65535).astype(np.int32), "I"),
        "float.tif": Image.fromarray((ramp * 1000 - 500).astype(np.float32), "F"),
        "tiny.png": Image.new("RGB", (1, 1)), "sliver.png": Image.new("RGB", (5000, 2)),
        "long.png": Image.new("RGB", (60 * 28, 28)), "ok_long.png": Image.new("RGB", (50 * 28, 28)),
    }
    sizes = {}
    for name, image in images.items():
        (image_root / name).write_bytes(_png(image))
        sizes[name] = image.size
    bomb = io.BytesIO()
    Image.new("1", (15000, 15000)).save(bomb, format="PNG")  # 225 Mpx in a few kB
    (image_root / "bomb.png").write_bytes(bomb.getvalue())
    sizes["bomb.png"] = (15000, 15000)
    (image_root / "big.png").write_bytes(_png(Image.new("RGB", (300, 300))))
    sizes["big.png"] = (300, 300)
    meta = tmp_path / "toy_cot_train.jsonl"
    meta.write_text("\n".join(viscot_line(name, w, h, [[0, 0, min(w, 20), min(h, 20)]], question=name)
                              for name, (w, h) in sizes.items()) + "\n")
    with caplog.at_level(logging.WARNING):
        stats, rejected, rows = generate(tmp_path, f"""
  - {{kind: viscot, path: '{meta}', image_root: '{image_root}'}}""", "images.max_pixels=50000")
    assert {r["question"]: r["reason"] for r in rejected} == {
        "tiny.png": "image_too_small", "sliver.png": "image_too_small", "long.png": "image_extreme_aspect",
        "bomb.png": "image_too_large", "big.png": "image_too_large"}
    assert "Traceback" not in caplog.text and "DecompressionBomb" not in caplog.text
    written = {r["question"]: r["image"] for r in rows}  # decoded by datasets
    assert set(written) == {"i16.png", "i32.tif", "float.tif", "ok_long.png"}
    for name in ("i16.png", "i32.tif", "float.tif"):
        pixels = np.asarray(written[name])
        assert written[name].mode == "RGB" and pixels[0, 0, 0] < 10 and pixels[0, -1, 0] > 245
        assert 100 < pixels[0, 32, 0] < 155  # the middle of the ramp stays grey, not clipped to white
