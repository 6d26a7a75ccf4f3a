"""One's own grounded-VQA data through ``groundcot generate``: JSONL rows with pixel xywh boxes and
a CC BY 4.0 licence come out with the same boxes, and a card that names that licence and that data
only (no other dataset, no local path)."""
import json

from huggingface_hub import DatasetCard

from groundcot.pipeline.cli import main
from groundcot.schemas.runs import read_run

from support import png_bytes

XYWH = {"q1": [[4, 6, 20, 10]], "q2": [[0, 0, 30, 30], [40, 10, 16, 30]], "q3": [[10, 12, 25, 20]]}


def test_own_jsonl_with_xywh_boxes_and_its_own_licence(tmp_path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(png_bytes(64, 48))
    (tmp_path / "pics" / "b.png").write_bytes(png_bytes(80, 60, colour=(20, 200, 40)))
    rows = [{"uid": qid, "img": "a.png" if qid != "q2" else "b.png", "question": f"Where is {qid}?",
             "answer": "there", "xywh": boxes} for qid, boxes in XYWH.items()]
    rows.append({"uid": "q4", "img": "a.png", "question": "Where?", "answer": "here", "xywh": [[1, 2]]})
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = tmp_path / "job.yaml"
    job.write_text("""sources:
  - kind: grounded
    path: mine.jsonl
    image_root: pics
    fields: {id: uid, image: img, boxes: xywh}
    box_format: xywh
    card: {name: my-grounded-vqa, license: cc-by-4.0, source_datasets: [me/my-grounded-vqa]}
styles: [sif]
depth: {enabled: false}
""")
    out = tmp_path / "out"
    assert main(["generate", str(job), "--out", str(out)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["by_source"]["grounded"]["in"] == 4
    assert stats["by_source"]["grounded"]["rejected_by_reason"] == {"bad_boxes": 1}
    written = {r["source_id"]: r["gt_boxes"] for r in read_run(str(out))}
    assert written == {qid: [[x, y, x + w, y + h] for x, y, w, h in boxes] for qid, boxes in XYWH.items()}

    text = (out / "README.md").read_text()
    card = DatasetCard(text)
    assert card.data.license == "cc-by-4.0" and card.data.source_datasets == ["me/my-grounded-vqa"]
    assert "license_name" not in card.data.to_dict()
    for other in ("Visual-CoT", "visualcot", "GQA", "Flickr", "TallyQA", str(tmp_path), "/pics"):
        assert other not in text, other
    assert "- my-grounded-vqa: cc-by-4.0" in text and "`grounded`: `mine.jsonl`" in text
