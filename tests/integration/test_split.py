"""The held-out split through ``groundcot generate``: one image reached through two sources (VisCoT
metadata over PNG files, one's own JSONL over BMP copies with other names) lands in one split only."""
import io
import json
import random
from collections import defaultdict

from PIL import Image

from groundcot.pipeline.cli import main
from groundcot.schemas.runs import read_run

from support import viscot_line

N = 24  # distinct pictures; each reached twice


def picture(i: int) -> Image.Image:
    rng = random.Random(i)
    return Image.frombytes("RGB", (48, 40), bytes(rng.randrange(256) for _ in range(48 * 40 * 3)))


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def two_sources(tmp_path, split: str) -> str:
    (tmp_path / "viscot").mkdir()
    (tmp_path / "own").mkdir()
    lines, rows = [], []
    for i in range(N):
        image = picture(i)
        (tmp_path / "viscot" / f"img_{i}.png").write_bytes(encoded(image, "PNG"))
        (tmp_path / "own" / f"copy-{N - i}.bmp").write_bytes(encoded(image, "BMP"))
        lines.append(viscot_line(f"img_{i}.png", 48, 40, [[4, 4, 30, 30]], question=f"What is {i}?"))
        rows.append({"id": f"own-{i}", "image": f"copy-{N - i}.bmp", "question": f"Where is {i}?",
                     "answer": "there", "boxes": [[2, 3, 40, 36]]})
    (tmp_path / "cot.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "own.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = tmp_path / "job.yaml"
    job.write_text(f"""sources:
  - {{kind: viscot, path: cot.jsonl, image_root: viscot}}
  - {{kind: grounded, path: own.jsonl, image_root: own, card: {{name: own, license: cc-by-4.0}}}}
styles: [sif, textual]
depth: {{enabled: false}}
{split}
""")
    return str(job)


def test_one_image_through_two_sources_never_lands_in_both_splits(tmp_path):
    out = tmp_path / "out"
    assert main(["generate", two_sources(tmp_path, "split: {test_fraction: 0.4, seed: 3}"), "-o", str(out)]) == 0
    splits, per_source = defaultdict(set), defaultdict(set)
    written = defaultdict(lambda: defaultdict(int))
    for row in read_run(str(out)):
        same = int(row["question"].split()[-1].rstrip("?"))  # the picture's number, whichever file it came from
        splits[same].add(row["split"])
        per_source[same].add(row["source"])
        written[row["split"]][(row["source"], row["style"])] += 1
    assert len(splits) == N and all(sources == {"viscot", "grounded"} for sources in per_source.values())
    assert all(len(s) == 1 for s in splits.values()), {k: v for k, v in splits.items() if len(v) > 1}
    held = sum(s == {"test"} for s in splits.values())
    assert 0 < held < N and {"train", "test"} == set().union(*splits.values())

    stats = json.loads((out / "stats.json").read_text())
    for name, counted in written.items():
        assert stats["by_split"][name]["written"] == sum(counted.values()) == 4 * sum(
            s == {name} for s in splits.values())
        assert stats["by_split"][name]["by_source"] == {
            src: sum(n for (s, _), n in counted.items() if s == src) for src in ("grounded", "viscot")}
        assert stats["by_split"][name]["by_style"] == {"sif": counted[("viscot", "sif")] + counted[("grounded", "sif")],
                                                       "textual": counted[("viscot", "textual")]
                                                       + counted[("grounded", "textual")]}
    assert sorted(p.name.split("-")[0] for p in (out / "data" / "sif").glob("*.parquet")) == ["test", "train"]
    card = (out / "README.md").read_text()
    assert "## Splits" in card and f"| test | {held * 2} | {held * 2} | grounded {held * 2}, viscot {held * 2} |" in card
    assert "`test` holds out 0.4 of the images" in card


def test_test_fraction_zero_keeps_the_sources_splits(tmp_path):
    out = tmp_path / "out"
    assert main(["generate", two_sources(tmp_path, ""), "-o", str(out)]) == 0
    assert {row["split"] for row in read_run(str(out))} == {"train", ""}
    stats = json.loads((out / "stats.json").read_text())
    assert list(stats["by_split"]) == ["train"] and stats["by_split"]["train"]["written"] == 4 * N
    assert "Splits as the sources give them" in (out / "README.md").read_text()
