"""groundcot inspect: the report of the demo run and of a synthetic run, parsed, drawn and opened in Chromium."""
from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from groundcot.pipeline.cli import main
from groundcot.schemas.columns import features
from groundcot.transforms.styles import columns_of
from groundcot.transforms.styles.pictures import colour, line_width, pixel_box

from support.browser import browse

PER_STYLE = 3


class Page(HTMLParser):
    """What a test needs of index.html: links, cards, headings' ids and the images of each card."""

    def __init__(self):
        super().__init__()
        self.links, self.ids, self.cards, self.rejected, self.stack = [], set(), [], 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.links.append(a[key])
        if a.get("id"):
            self.ids.add(a["id"])
        classes = (a.get("class") or "").split()
        if tag == "div" and "card" in classes:
            self.cards.append({"style": a.get("data-style"), "images": [], "twin": False})
        if tag == "div" and "rejected-example" in classes:
            self.rejected += 1
        if tag == "div" and "twin" in classes and self.cards:
            self.cards[-1]["twin"] = True
        if tag == "img" and self.cards:
            self.cards[-1]["images"].append(a["src"])


def parse(index: Path) -> Page:
    page = Page()
    page.feed(index.read_text(encoding="utf-8"))
    page.close()
    return page


DRAWN = ("area_share_histogram", "evidence_depth_histogram", "hiou_histogram")


@pytest.fixture(scope="module")
def demo_report(demo_run_and_log, tmp_path_factory):
    """The demo run's report, made once: (run, report folder, the run's log lines, plot name -> the values
    the report drew it from, for the plots in DRAWN)."""
    from groundcot.runs import plots

    run, lines = demo_run_and_log  # the session's demo run (conftest.py), read-only
    out = tmp_path_factory.mktemp("inspect")
    drawn = {}
    with pytest.MonkeyPatch.context() as patch:
        for name in DRAWN:
            original = getattr(plots, name)
            patch.setattr(plots, name, lambda values, path, _o=original, _n=name: (
                drawn.__setitem__(_n, values), _o(values, path))[1])
        assert main(["inspect", str(run), "-o", str(out), "--per-style", str(PER_STYLE)]) == 0
    return run, out, lines, drawn


def test_the_local_run_logs_one_progress_line_instead_of_per_stage_lines(demo_report):
    run, _, lines, _ = demo_report
    stats = json.loads((run / "stats.json").read_text())
    progress = [line for line in lines if line.startswith("progress: ")]
    assert progress[0].startswith("progress: starting: reading ")  # before Beam is imported
    assert progress[1].startswith("progress: loading models (")  # at once, before any record is through
    n = stats["records_in"]  # the demo's jsonl lines are its input size
    assert progress and progress[-1].startswith("progress: done after ") and f": read {n}/{n} records; rows: " in progress[-1]
    assert f"finished ({stats['written']} kept, {stats['rejected']} rejected)" in progress[-1]
    assert not [line for line in lines if "in this worker" in line]  # no per-stage lines


def expected_cards(stats: dict) -> int:
    return sum(min(PER_STYLE, e["written"]) for s, e in stats["by_style"].items() if s != "before_styles")


def test_demo_report_parses_links_existing_files_and_shows_every_style_and_reason(demo_report):
    run, out, _, _ = demo_report
    stats = json.loads((run / "stats.json").read_text())
    page = parse(out / "index.html")
    assert page.links
    for link in page.links:
        if not link.startswith("#"):
            assert (out / link).is_file(), link  # relative to index.html, nothing remote
            assert not link.startswith(("http:", "https:", "/"))
    styles = [s for s in stats["by_style"] if s != "before_styles"]
    assert {f"style-{s}" for s in styles} <= page.ids
    assert {f"reason-{r}" for r in stats["rejected_by_reason"]} <= page.ids and stats["rejected_by_reason"]
    assert page.rejected == sum(min(3, n) for n in stats["rejected_by_reason"].values())
    assert len(page.cards) == expected_cards(stats)
    for style in styles:
        cards = [c for c in page.cards if c["style"] == style]
        assert len(cards) == PER_STYLE and all(c["images"] for c in cards)
        assert all(c["twin"] for c in cards) == (style == "textual")  # textual rows beside their sif twin
    for name in ("hiou", "steps", "area", "depth", "cot", "rejections"):
        assert f"img/plot-{name}.png" in page.links


def test_the_same_seed_draws_the_same_rows_and_another_seed_others(demo_report, tmp_path):
    run, out, _, _ = demo_report
    again = tmp_path / "again"
    other = tmp_path / "other"
    assert main(["inspect", str(run), "-o", str(again), "--per-style", str(PER_STYLE)]) == 0
    assert main(["inspect", str(run), "-o", str(other), "--per-style", str(PER_STYLE), "--seed", "7"]) == 0
    first = sorted(p.name for p in (out / "img").iterdir())
    assert sorted(p.name for p in (again / "img").iterdir()) == first
    assert sorted(p.name for p in (other / "img").iterdir()) != first
    assert main(["inspect", str(run), "-o", str(again), "--per-style", str(PER_STYLE), "--seed", "7"]) == 0
    assert sorted(p.name for p in (again / "img").iterdir()) == sorted(p.name for p in (other / "img").iterdir())


def test_a_run_without_stats_is_one_error_line(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert "not a finished groundcot run" in capsys.readouterr().err


def synthetic_run(root: Path, chain: list[dict], size=(200, 100)) -> Path:
    """A one-row sif run written with the sif config's own schema, on a plain grey image."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    Image.new("RGB", size, (128, 128, 128)).save(buffer, format="PNG")
    row = {name: None for name in columns_of("sif")}
    row.update(id="syn-1", source="viscot", source_id="0", dataset="syn", split="train", question="where?",
               answer="here", image={"bytes": buffer.getvalue(), "path": None}, width=size[0], height=size[1],
               gt_boxes=[], labels=[], chain=chain, masks=[], messages=[], style="sif", teacher="template",
               hiou=1.0, cot="<think><area>[]</area><text>a</text><area>[]</area></think><answer>here</answer>")
    schema = features(columns_of("sif")).arrow_schema
    (root / "data" / "sif").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=schema), root / "data" / "sif" / "train-00000-of-00001.parquet")
    (root / "stats.json").write_text(json.dumps({
        "records_in": 1, "written": 1, "rejected": 0, "rejected_by_reason": {},
        "by_style": {"sif": {"written": 1, "rejected": 0, "rejected_by_reason": {}}}}))
    return root


def test_gallery_boxes_land_on_the_pixels_the_chain_says(tmp_path):
    chain = [{"kind": "full", "boxes": [[0.0, 0.0, 1.0, 1.0]], "depths": []},
             {"kind": "gt", "boxes": [[0.25, 0.2, 0.75, 0.9]], "depths": []}]
    run = synthetic_run(tmp_path / "run", chain)
    out = tmp_path / "report"
    assert main(["inspect", str(run), "-o", str(out)]) == 0
    (card,) = parse(out / "index.html").cards
    drawn = Image.open(out / card["images"][0]).convert("RGB")
    assert drawn.size == (200, 100)
    width = line_width(drawn)
    for step, boxes in enumerate(c["boxes"] for c in chain):
        rgb = colour(step)[1]
        x1, y1, x2, y2 = pixel_box(boxes[0], 200, 100)
        # the bottom and right edges (the number's tag sits at the top-left corner)
        assert drawn.getpixel(((x1 + x2) // 2, y2)) == rgb
        assert drawn.getpixel((x2, (y1 + y2) // 2)) == rgb
        assert drawn.getpixel((x2 - width + 1, (y1 + y2) // 2)) == rgb  # the outline's inner pixel
    inner = pixel_box(chain[1]["boxes"][0], 200, 100)
    assert drawn.getpixel(((inner[0] + inner[2]) // 2, (inner[1] + inner[3]) // 2)) == (128, 128, 128)
    text = (out / "index.html").read_text()
    for step in (1, 2):  # each <area> of the text coloured like its step
        assert f'data-step="{step}" style="border-color:rgb{colour(step - 1)[1]}' in text


def test_report_opens_in_headless_chromium_with_every_card(demo_report, tmp_path):
    run, out, _, _ = demo_report
    stats = json.loads((run / "stats.json").read_text())
    shot = tmp_path / "shot.png"
    dom = browse(out / "index.html", tmp_path / "profile", shot, 2000)
    assert dom.count('<div class="card"') == expected_cards(stats)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    colours = image.getcolors(maxcolors=1 << 20)
    white = max(colours)[0] / (1280 * 2000)
    assert len(colours) > 100 and white < 0.95  # text, tables and plots drawn, not a blank page
    # the images loaded from disk: the rendered page holds the plots' and pictures' colours
    assert sum(n for n, rgb in colours if rgb[2] > 150 and rgb[0] < 100) > 1000  # matplotlib blue bars


def test_the_gallery_reads_only_the_row_groups_of_its_sampled_rows(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from groundcot.runs.inspect import sample_rows

    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(50)], "messages": [[]] * 50}), path, row_group_size=5)
    read = []
    original = pq.ParquetFile.read_row_group

    def spy(self, i, *args, **kwargs):
        read.append((i, tuple(kwargs.get("columns") or ())))
        return original(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("a whole file was read"))
    rows = sample_rows([str(path)], 3, seed=4)
    assert len({r["id"] for r in rows}) == 3
    groups = {int(r["id"][1:]) // 5 for r in rows}
    assert sorted(i for i, _ in read) == sorted(groups)  # one read per group holding a sampled row
    assert all(cols == ("id",) for _, cols in read)  # messages are never shown: never read
    assert rows == sample_rows([str(path)], 3, seed=4)


def test_rejected_examples_draw_their_gt_boxes_on_the_source_image(tmp_path):
    chain = [{"kind": "full", "boxes": [[0.0, 0.0, 1.0, 1.0]], "depths": []}]
    run = synthetic_run(tmp_path / "run", chain)
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (100, 80), (128, 128, 128)).save(root / "a.png")
    rejected = {"id": "r1", "source": "viscot", "source_id": "1", "dataset": "syn", "image_path": "a.png",
                "question": "q?", "answer": "a", "gt_boxes": [[20.0, 10.0, 60.0, 50.0]],
                "cot": "<think><area>[]</area></think><answer>b</answer>", "style": "sif", "stage": "validate",
                "reason": "wrong_answer", "detail": "answer b, expected a"}
    (run / "rejected").mkdir()
    (run / "rejected" / "rejected-00000-of-00001.jsonl").write_text(json.dumps(rejected) + "\n")
    stats = json.loads((run / "stats.json").read_text())
    stats.update(rejected=1, rejected_by_reason={"wrong_answer": 1},
                 config={"sources": [{"kind": "viscot", "image_root": str(root)}]})
    (run / "stats.json").write_text(json.dumps(stats))
    out = tmp_path / "report"
    assert main(["inspect", str(run), "-o", str(out)]) == 0
    page = parse(out / "index.html")
    assert page.rejected == 1 and "reason-wrong_answer" in page.ids
    text = (out / "index.html").read_text()
    assert "answer b, expected a" in text and 'data-step="1"' in text
    (drawn,) = [link for link in page.links if "rejected-r1" in link]
    image = Image.open(out / drawn).convert("RGB")
    x1, _, x2, y2 = pixel_box([0.2, 0.125, 0.6, 0.625], 100, 80)
    assert image.getpixel(((x1 + x2) // 2, y2)) == colour(0)[1]  # the GT box, where the record put it


def test_per_record_distributions_count_each_record_once_not_once_per_style(demo_report):
    import pyarrow.parquet as pq

    demo_run, _, _, drawn = demo_report  # the values the report's plots were drawn from
    sif = pq.read_table(demo_run / "data" / "sif" / "train-00000-of-00001.parquet").to_pylist()  # every record
    assert len(drawn["area_share_histogram"]) == sum(len(r["gt_boxes"]) for r in sif)
    assert len(drawn["evidence_depth_histogram"]) == sum(len(r["chain"][-1]["depths"]) for r in sif)
    assert sum(map(len, drawn["hiou_histogram"].values())) == sum(  # HIoU is per row: each style's rows
        1 for s in ("sif", "mgpo", "aperture") for r in pq.read_table(
            demo_run / "data" / s / "train-00000-of-00001.parquet", columns=["hiou"]).to_pylist())


def test_a_box_outside_its_image_is_drawn_on_a_padded_canvas(tmp_path):
    run = synthetic_run(tmp_path / "run", [{"kind": "full", "boxes": [[0.0, 0.0, 1.0, 1.0]], "depths": []}])
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (100, 80), (128, 128, 128)).save(root / "a.png")
    rejected = {"id": "r1", "source": "viscot", "source_id": "1", "dataset": "syn", "image_path": "a.png",
                "question": "q?", "answer": "a", "gt_boxes": [[120.0, 90.0, 160.0, 120.0]], "style": None,
                "stage": "image", "reason": "box_outside_image", "detail": "box [120, 90, 160, 120] outside 100x80"}
    (run / "rejected").mkdir()
    (run / "rejected" / "rejected-00000-of-00001.jsonl").write_text(json.dumps(rejected) + "\n")
    stats = json.loads((run / "stats.json").read_text())
    stats.update(rejected=1, rejected_by_reason={"box_outside_image": 1},
                 config={"sources": [{"kind": "viscot", "image_root": str(root)}]})
    (run / "stats.json").write_text(json.dumps(stats))
    out = tmp_path / "report"
    assert main(["inspect", str(run), "-o", str(out)]) == 0
    (drawn,) = [link for link in parse(out / "index.html").links if "rejected-r1" in link]
    image = Image.open(out / drawn).convert("RGB")
    w, h = image.size
    assert w > 160 and h > 120  # room for the box
    red = [(x, y) for x in range(w) for y in range(h) if image.getpixel((x, y)) == colour(0)[1]]
    assert len(red) > 100 and all(x >= 100 or y >= 80 for x, y in red)  # the whole box, beyond the image
    assert image.getpixel((w // 4, h // 4)) == (128, 128, 128)  # the image itself, at the top left


def test_the_models_table_has_no_empty_column(demo_report):
    _, out, _, _ = demo_report
    text = (out / "index.html").read_text()
    table = text.split("<h3>Models and versions</h3>", 1)[1].split("</table>", 1)[0]
    header = re.findall(r"<th>(.*?)</th>", table)
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]]
    assert all(header) and cells and all(len(row) == len(header) for row in cells)
    for column in range(len(header)):
        assert any(row[column] for row in cells), header[column]
    assert any("TINY RANDOM" in row[1] for row in cells)  # the demo's stand-in models, said in the model's cell
