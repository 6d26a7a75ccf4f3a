"""The pictures a user looks at: the dataset card's examples and figures as a CommonMark renderer (the
Hub's) shows them, the figures' titles, legends and ticks, and the card and the inspect report opened
in headless Chromium (the rendered DOM: every picture loaded, no fence broken)."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
from markdown_it import MarkdownIt
from PIL import Image

from groundcot.pipeline.cli import main
from groundcot.runs import plots
from groundcot.transforms.styles.pictures import colour, pixel_box

from support import browser

STYLES = ("sif", "mgpo", "aperture", "textual")
SECTIONS = ["License", "How it was made", "Counts", "Splits", "Rejections", "Examples", "Use", "Citations"]


def commonmark() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")  # the Hub renders CommonMark with GFM tables


def card_body(run: Path) -> str:
    text = (run / "README.md").read_text(encoding="utf-8")
    return text.split("\n---\n", 1)[1]  # after the YAML metadata


def first_rows(run: Path) -> dict[str, dict]:
    return {s: pq.read_table(run / "data" / s / "train-00000-of-00001.parquet").slice(0, 1).to_pylist()[0]
            for s in STYLES}


def test_the_card_renders_in_commonmark_with_each_examples_picture_and_whole_text(demo_run):
    tokens = commonmark().parse(card_body(demo_run))
    h2 = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h2"]
    assert h2 == SECTIONS  # a fence left open would swallow the sections after it
    fences = [t for t in tokens if t.type == "fence"]
    rows = first_rows(demo_run)
    for style in STYLES:
        (shown,) = [f for f in fences if f.content.startswith(f"Q: {rows[style]['question']}")
                    and rows[style]["cot"] in f.content]  # the whole text in one block
        assert shown.info == "text"
    assert "```json" in rows["mgpo"]["cot"]  # the mgpo text holds a fenced block of its own
    images = {c.attrs["src"]: c for t in tokens if t.type == "inline" for c in t.children or [] if c.type == "image"}
    for style in STYLES:
        image = images[f"figures/example-{style}.png"]
        assert image.attrs.get("title") and Image.open(demo_run / image.attrs["src"]).format == "PNG"
    for name in ("hiou", "chain_length", "rejections"):
        assert images[f"figures/{name}.png"].attrs.get("title")  # every figure has a title


def test_the_cards_example_picture_is_the_rows_image_with_its_steps_boxed(demo_run):
    row = pq.read_table(demo_run / "data" / "sif" / "train-00000-of-00001.parquet").slice(0, 1).to_pylist()[0]
    picture = Image.open(demo_run / "figures" / "example-sif.png").convert("RGB")
    assert picture.size == (row["width"], row["height"])
    last = len(row["chain"]) - 1
    x1, y1, x2, y2 = pixel_box(row["chain"][last]["boxes"][0], *picture.size)
    assert picture.getpixel(((x1 + x2) // 2, y2)) == colour(last)[1]  # the evidence step, in its colour


def test_the_textual_example_picture_is_its_rows_image_without_boxes(demo_run):
    rows = first_rows(demo_run)
    assert rows["textual"]["hiou"] is None and rows["textual"]["chain"]  # words only, its sif twin's chain kept
    textual = (demo_run / "figures" / "example-textual.png").read_bytes()
    assert textual != (demo_run / "figures" / "example-sif.png").read_bytes(), "textual shows sif's boxed picture"
    shown = Image.open(io.BytesIO(textual)).convert("RGB")
    row = Image.open(io.BytesIO(rows["textual"]["image"]["bytes"])).convert("RGB")
    assert shown.size == row.size and shown.tobytes() == row.tobytes()  # the image as the row holds it, no box
    tokens = commonmark().parse(card_body(demo_run))
    titles = {c.attrs["src"]: c.attrs["title"] for t in tokens if t.type == "inline" for c in t.children or []
              if c.type == "image"}
    assert "no boxes" in titles["figures/example-textual.png"]
    assert "boxed" in titles["figures/example-sif.png"]


def test_the_figures_have_titles_whole_number_count_ticks_and_no_empty_series(tmp_path):
    fig = plots.hiou_histogram({"sif": [0.9, 0.95], "textual": []}, str(tmp_path / "hiou.png"))
    (ax,) = fig.axes
    assert ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["sif"]  # textual has no HIoU
    assert all(float(v).is_integer() for v in ax.get_yticks())  # 2 rows: no 0.25 ticks
    fig = plots.rejections_bar({"box_outside_image": 1}, str(tmp_path / "rejections.png"))
    assert fig.axes[0].get_title() and all(float(v).is_integer() for v in fig.axes[0].get_xticks())
    for draw in (plots.chain_length_histogram, plots.cot_length_histogram, plots.area_share_histogram,
                 plots.evidence_depth_histogram):
        ax = draw([1, 1] if draw is plots.chain_length_histogram else [0.2, 0.4], str(tmp_path / "x.png")).axes[0]
        assert ax.get_title() and all(float(v).is_integer() for v in ax.get_yticks())
        assert min(t.get_fontsize() for t in ax.get_xticklabels()) * plots.DPI / 72 >= 14  # pixels, shown 1:1


def test_the_demo_has_an_aperture_row_that_segments(demo_run):
    rows = pq.read_table(demo_run / "data" / "aperture" / "train-00000-of-00001.parquet",
                         columns=["actions", "cot"]).to_pylist()
    segmenting = [r for r in rows if any(a["kind"] == "segment" for a in r["actions"])]
    assert segmenting and all("<segment>" in r["cot"] for r in segmenting)
    assert any(all(a["kind"] == "zoom" for a in r["actions"]) for r in rows)  # a box its object fills: zoomed


# --- headless Chromium --------------------------------------------------------------------------------

MARK_IMAGES = """<script>
addEventListener("load", () => { for (const img of document.images) img.dataset.shown = img.naturalWidth; });
</script>"""


def browse(page: Path, profile: Path, shot: Path) -> str:
    """The DOM of ``page`` after it loaded (each <img> marked with its natural width), and a screenshot."""
    return browser.browse(page, profile, shot, 4000, "--virtual-time-budget=10000")


def shown_images(dom: str) -> dict[str, int]:
    """src -> natural width of every <img> in the DOM (0: it did not load)."""
    found = {}
    for tag in re.findall(r"<img\b[^>]*>", dom):
        src = re.search(r'src="([^"]*)"', tag).group(1)
        found[src] = int((re.search(r'data-shown="(\d+)"', tag) or [0, "0"])[1])
    return found


def test_the_card_in_headless_chromium_shows_every_examples_picture_and_no_broken_fence(demo_run, tmp_path):
    html = commonmark().render(card_body(demo_run))
    page = tmp_path / "card.html"
    page.write_text(f'<!doctype html><html><head><meta charset="utf-8"><base href="{demo_run.resolve().as_uri()}/">'
                    f"</head><body>{html}{MARK_IMAGES}</body></html>", encoding="utf-8")
    dom = browse(page, tmp_path / "profile", tmp_path / "card.png")
    assert re.findall(r"<h2>(.*?)</h2>", dom) == SECTIONS
    images = shown_images(dom)
    for style in STYLES:
        assert images[f"figures/example-{style}.png"] > 0, style  # loaded and drawn
        assert re.search(rf"<h3><code>{style}</code></h3>\s*<p><img ", dom)  # the picture under its heading
    assert all(width > 0 for width in images.values()), images
    blocks = re.findall(r'<pre><code class="language-text">(.*?)</code></pre>', dom, re.S)
    assert len(blocks) == len(STYLES) and all(b.startswith("Q: ") for b in blocks)
    (mgpo,) = [b for b in blocks if "```json" in b]
    assert mgpo.rstrip().endswith("}")  # the example's text runs to its end, the \\boxed{} answer
    assert "```" not in re.sub(r"<pre>.*?</pre>", "", dom, flags=re.S)  # no fence shown as text
    shot = Image.open(tmp_path / "card.png").convert("RGB")
    assert len(shot.getcolors(maxcolors=1 << 20)) > 100  # pictures and figures drawn, not a blank page


def test_the_report_in_headless_chromium_shows_every_picture(demo_run, tmp_path):
    out = tmp_path / "report"
    assert main(["inspect", str(demo_run), "-o", str(out), "--per-style", "2"]) == 0
    page = out / "shown.html"  # the report with the marking script, beside it
    page.write_text((out / "index.html").read_text(encoding="utf-8").replace("</body>", MARK_IMAGES + "</body>"))
    dom = browse(page, tmp_path / "profile", tmp_path / "report.png")
    images = shown_images(dom)
    stats = json.loads((demo_run / "stats.json").read_text())
    assert sum(1 for src in images if src.startswith("img/plot-")) == 6
    assert len([s for s in images if "-rejected-" in s]) == sum(min(3, n) for n in stats["rejected_by_reason"].values())
    assert dom.count('<div class="card"') == 2 * len(STYLES)
    assert images and all(width > 0 for width in images.values()), images
