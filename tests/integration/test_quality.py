"""Quality a builder chooses, through ``groundcot generate``: the critic's scores and ``min_score``, near-duplicate
images across sources (re-encoded and resized) rejected and kept in one split, and a 2:1 mix filled before depth."""
import base64
import io
import json
import random
import re
from collections import Counter, defaultdict

from PIL import Image, ImageDraw

from groundcot import prompts
from groundcot.pipeline.cli import main
from groundcot.schemas.runs import read_run
from groundcot.transforms.dedup import distance
from groundcot.transforms.split import image_identity

from support import viscot_line
from support.fake_openai import FakeOpenAI, good_reply


def picture(i: int, size=(96, 80)) -> Image.Image:
    """A picture of a few shapes on a background (what a perceptual hash sees), different for each ``i``."""
    rng = random.Random(i)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.randrange(size[0] - 20), rng.randrange(size[1] - 20)
        box = [x, y, x + rng.randrange(15, 50), y + rng.randrange(15, 40)]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    return image


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def viscot_source(tmp_path, name: str, questions: list[str], box=(10, 10, 60, 50)) -> str:
    """A viscot source over PNG pictures 0..n-1, one question each; its YAML entry."""
    (tmp_path / name).mkdir()
    lines = []
    for i, question in enumerate(questions):
        (tmp_path / name / f"img_{i}.png").write_bytes(encoded(picture(i), "PNG"))
        lines.append(viscot_line(f"img_{i}.png", 96, 80, [list(box)], question=question))
    (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return f"{{kind: viscot, path: {name}.jsonl, image_root: {name}}}"


def run(tmp_path, sources: list[str], extra: str, styles="[sif]") -> tuple[dict, list[dict], list[dict]]:
    job = tmp_path / "job.yaml"
    job.write_text("sources:\n" + "".join(f"  - {s}\n" for s in sources) + f"styles: {styles}\n{extra}\n")
    out = tmp_path / "out"
    assert main(["generate", str(job), "-o", str(out)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    rejected = [json.loads(line) for f in (out / "rejected").glob("*.jsonl") for line in f.read_text().splitlines()]
    return stats, list(read_run(str(out))) if stats["written"] else [], rejected


def grade(body: dict) -> str:
    """The critic stand-in: the score depends on the question it was sent (``n=<digit>`` -> n/10). It checks it
    was sent the teacher's picture: the first step (the whole image) outlined in red, tagged 1 in the legend."""
    text = body["messages"][0]["content"]
    n = int(re.search(r"n=(\d)", text).group(1))
    assert "Step 1 (the whole image), outlined in red, tagged 1" in text and "<answer>red</answer>" in text
    url = body["messages"][1]["content"][0]["image_url"]["url"]
    image = Image.open(io.BytesIO(base64.b64decode(url.removeprefix("data:image/jpeg;base64,")))).convert("RGB")
    r, g, b = image.getpixel((0, image.height // 2))
    assert r > 200 and g < 60 and b < 60, (r, g, b)
    return json.dumps({"score": n / 10, "reason": f"step texts fit\nfor n={n}"})


def test_critic_scores_every_row_and_min_score_rejects_those_below_with_the_reason(tmp_path):
    source = viscot_source(tmp_path, "a", [f"What is shown, n={i}?" for i in range(8)])
    (tmp_path / "critic.txt").write_text(prompts.load("critic") + "\nBe strict.")  # replaced like any prompt
    with FakeOpenAI(reply_with=lambda body: grade(body) if "Be strict." in body["messages"][0]["content"] else "") as fake:
        critic = (f"quality: {{min_score: 0.45, critic: {{enabled: true, connection: "
                  f"{{base_url: '{fake.base_url}', model: fake-vlm, api_key_env: null}}}}}}\n"
                  "prompts: {critic: {file: critic.txt}}\ndepth: {enabled: false}")
        stats, rows, rejected = run(tmp_path, [source], critic, styles="[sif, textual]")
        calls = len(fake.requests)
    n_of = {row["question"]: int(row["question"][-2]) for row in rows}
    assert sorted({row["critic_score"] for row in rows}) == [0.5, 0.6, 0.7]  # n 5..7 kept; 4 is below 0.45
    assert all(row["critic_score"] == n_of[row["question"]] / 10 and
               row["critic_reason"] == f"step texts fit for n={n_of[row['question']]}" for row in rows)
    low = sorted((r["question"], r["style"], r["detail"]) for r in rejected if r["reason"] == "low_quality")
    assert len(low) == 10 and {r[1] for r in low} == {"sif", "textual"}
    assert all(d == f"score {int(q[-2]) / 10:g} < min_score 0.45: step texts fit for n={q[-2]}" for q, _, d in low)
    assert stats["written"] == 6 and stats["rejected_by_reason"] == {"low_quality": 10}
    assert calls == 16 == stats["critic"]["ledger"]["requests"] == stats["critic"]["ledger"]["graded"]
    assert stats["critic"]["rejected_by_reason"] == {"low_quality": 10} and stats["critic"]["model"] == "fake-vlm"
    assert stats["counters"]["critic.requests"] == 16 and stats["counters"]["critic.ok"] == 6

    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Quality" in card and "`fake-vlm`" in card and "below `min_score` 0.45 were rejected as `low_quality` (10)" in card
    assert main(["inspect", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    critic_part = page[page.index('<h2 id="critic">'):page.index('<h2 id="gallery">')]
    assert "plot-critic.png" in critic_part and "<td>sif</td><td>3</td><td>0.50</td>" in critic_part
    lowest = critic_part[critic_part.index("Lowest-scoring"):]
    assert lowest.index("step texts fit for n=5") < lowest.index("step texts fit for n=7")  # lowest first
    assert re.search(r"low_quality · critic · \w+ .*?<p>score 0(\.\d)? &lt; min_score 0.45: step texts fit for n=\d</p>",
                     page)  # a rejected example shows the critic's reason


def test_check_bounds_the_critics_cost_and_checks_its_endpoint(tmp_path, capsys):
    source = viscot_source(tmp_path, "a", [f"What is {i}?" for i in range(4)])
    job = tmp_path / "job.yaml"
    with FakeOpenAI() as fake:
        teacher = (f"teacher: {{kind: openai, connection: {{base_url: '{fake.base_url}', model: fake-vlm, "
                   "api_key_env: null}, cost: {price_prompt_per_mtok: 1.0, price_completion_per_mtok: 2.0}}")
        for model, code in (("fake-vlm", 0), ("fake-critc", 2)):
            job.write_text(f"sources: [{source}]\nstyles: [sif, textual]\ndepth: {{enabled: false}}\n{teacher}\n"
                           f"quality: {{critic: {{enabled: true, model: {model}, max_tokens: 100}}}}\n")
            assert main(["generate", str(job), "-o", str(tmp_path / "out"), "--check"]) == code
        assert fake.requests == []  # --check calls no model
    out, err = capsys.readouterr()
    # one call per row: a 1024-px picture (1369 image tokens) + 900 text tokens + a 2048-token trace at $1/M,
    # 100 completion tokens at $2/M; two styles
    per_row = ((1369 + 900 + 2048) * 1.0 + 100 * 2.0) / 1e6
    assert "critic: model fake-vlm at " in out and "at most 8 calls (one per validated row)" in out
    assert f"critic cost: at most ${2 * per_row:.4f} per record (2 rows), at most ${8 * per_row:.2f} for 4 records" in out
    assert err.strip().splitlines()[-1] == (f"groundcot: quality.critic.connection.model: 'fake-critc' is not served "
                                            f"by {fake.base_url}/models (it serves: fake-vlm)")


def test_a_re_encoded_copy_through_another_source_is_a_duplicate_and_never_straddles_the_split(tmp_path):
    n = 16
    first = viscot_source(tmp_path, "a", [f"What is {i}?" for i in range(n)])
    (tmp_path / "b").mkdir()
    rows = []
    for i in range(n):  # the same pictures, smaller and at JPEG quality 55, under other names
        small = picture(i).resize((72, 60), Image.Resampling.LANCZOS)
        (tmp_path / "b" / f"copy-{n - i}.jpg").write_bytes(encoded(small, "JPEG", quality=55))
        question = f"  what is {i}" if i < n // 2 else f"Where is {i}?"  # the first half: the same question
        rows.append({"id": f"b-{i}", "image": f"copy-{n - i}.jpg", "question": question, "answer": "red",
                     "boxes": [[8, 8, 45, 38]]})
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    hashes = [(image_identity((tmp_path / "a" / f"img_{i}.png").read_bytes()),
               image_identity((tmp_path / "b" / f"copy-{n - i}.jpg").read_bytes())) for i in range(n)]
    assert any(distance(a, b) > 0 for a, b in hashes)  # some copies hash a few bits away: grouping, not equality
    second = "{kind: grounded, path: b.jsonl, image_root: b, card: {name: b, license: cc-by-4.0}}"
    stats, written, rejected = run(tmp_path, [first, second], "depth: {enabled: false}\nquality: "
                                   "{near_duplicates: {enabled: true}}\nsplit: {test_fraction: 0.5, seed: 1}")
    duplicates = [r for r in rejected if r["reason"] == "duplicate"]
    assert len(duplicates) == n // 2 and stats["rejected_by_reason"] == {"duplicate": n // 2}
    kept = {r["question"].strip("? ").lower(): r["id"] for r in written}
    for r in duplicates:  # the pair's smaller id stays
        assert r["stage"] == "dedup" and r["id"] > kept[r["question"].strip("? ").lower()]
    splits, sources = defaultdict(set), defaultdict(set)
    for row in written:
        picture_of = int(row["question"].strip("? ").split()[-1])
        splits[picture_of].add(row["split"])
        sources[picture_of].add(row["source"])
    assert all(len(s) == 1 for s in splits.values()), splits
    assert {"train", "test"} == set().union(*splits.values())
    assert sum(s == {"viscot", "grounded"} for s in sources.values()) == n // 2  # the pairs kept, one split each
    assert stats["distinct_images"] == {"all": n, "by_source": {"grounded": n, "viscot": n}}
    assert (f"Distinct images (perceptual hash; near-identical images as one): {n} in all, grounded {n}, viscot {n}. "
            f"Records asking the same question of a near-identical image: {n // 2} rejected as `duplicate`."
            ) in (tmp_path / "out" / "README.md").read_text()
    assert stats["counters"]["dedup.rejected.duplicate"] == n // 2 and stats["counters"]["dedup.ok"] == n + n // 2


def test_a_two_to_one_mix_between_two_sources_is_filled_before_depth(tmp_path):
    first = viscot_source(tmp_path, "a", [f"What is {i}?" for i in range(10)])
    (tmp_path / "b").mkdir()
    rows = []
    for i in range(7):
        (tmp_path / "b" / f"p{i}.png").write_bytes(encoded(picture(100 + i), "PNG"))
        rows.append({"id": f"b-{i}", "image": f"p{i}.png", "question": f"Which {i}?", "answer": "red",
                     "boxes": [[8, 8, 45, 38]]})
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    second = "{kind: grounded, path: b.jsonl, image_root: b, card: {name: b, license: cc-by-4.0}}"
    mix = ("mix: {seed: 5, groups: [{source: viscot, share: 2}, {source: grounded, share: 1}]}\n"
           "depth: {fallback: tiny_random}")
    stats, written, rejected = run(tmp_path, [first, second], mix)
    per_source = Counter(row["source"] for row in written)
    assert abs(per_source["viscot"] - 2 * per_source["grounded"]) <= 1 and sum(per_source.values()) == 15
    assert stats["records_in"] == 17 and stats["rejected_by_reason"] == {"mix_full": 2}
    assert {r["reason"] for r in rejected} == {"mix_full"} and {r["source"] for r in rejected} == {"grounded"}
    assert stats["counters"]["depth.records"] == 15  # depth saw only the records kept
    assert stats["counters"]["teacher.ok"] == 15 and not any(k.startswith("teacher.rejected") for k in stats["counters"])
    assert stats["mix"]["asked"]["groups"] == {"source=viscot": {"share": 2.0}, "source=grounded": {"share": 1.0}}
    assert stats["mix"]["obtained"]["source=grounded"] == {"available": 7, "wanted": 5, "kept": 5,
                                                           "kept_by_source": {"grounded": 5}}
    assert stats["mix"]["obtained"]["source=viscot"]["kept"] == 10
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| `source=viscot` | share 2 | 10 | 10 | 10 |" in card and "| `source=grounded` | share 1 | 7 | 5 | 5 |" in card


def test_a_mix_by_style_and_difficulty_drops_rows_before_the_teacher_and_every_record_is_accounted_for(tmp_path):
    small, large = (10, 10, 20, 20), (5, 5, 90, 75)  # 1% of the image: hard; 83%: easy
    (tmp_path / "a").mkdir()
    lines = []
    for i in range(8):
        (tmp_path / "a" / f"img_{i}.png").write_bytes(encoded(picture(i), "PNG"))
        lines.append(viscot_line(f"img_{i}.png", 96, 80, [list(small if i < 4 else large)], question=f"What is {i}?"))
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    mix = ("mix: {groups: [{style: sif, difficulty: hard, count: 3}, {style: textual, count: 2}]}\n"
           "depth: {enabled: false}")
    stats, written, rejected = run(tmp_path, ["{kind: viscot, path: a.jsonl, image_root: a}"], mix,
                                   styles="[sif, textual]")
    hard = {f"What is {i}?" for i in range(4)}
    sif = [r for r in written if r["style"] == "sif"]
    assert len(sif) == 3 and {r["question"] for r in sif} <= hard
    assert len([r for r in written if r["style"] == "textual"]) == 2
    assert stats["counters"]["teacher.ok"] == 5  # the teacher wrote only the rows the mix kept
    assert stats["balanced"] and stats["records_in"] == 8
    # each record: written or rejected in each style, with its reason
    seen = Counter((r["question"], r["style"]) for r in written)
    seen.update((r["question"], s) for r in rejected for s in ([r["style"]] if r["style"] else ["sif", "textual"]))
    assert set(seen.values()) == {1} and len(seen) == 16
    assert {(r["stage"], r["reason"]) for r in rejected} <= {("mix", "mix_full")}
    assert stats["mix"]["obtained"]["style=sif,difficulty=hard"] == {"available": 4, "wanted": 3, "kept": 3,
                                                                     "kept_by_source": {"viscot": 3}}


def test_a_mix_naming_a_source_or_style_the_job_lacks_is_a_one_line_config_error(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    for group, key in (("{source: gqa, share: 1}", "mix.groups.0.source: 'gqa' is not a source of this job (viscot)"),
                       ("{style: mgpo, count: 3}", "mix.groups.0.style: 'mgpo' is not a style of this job (sif)")):
        job.write_text("sources: [{kind: viscot, path: a.jsonl, image_root: a}]\nstyles: [sif]\n"
                       f"mix: {{groups: [{group}]}}\n")
        assert main(["generate", str(job), "-o", str(tmp_path / "out"), "--check"]) == 2
        assert key in capsys.readouterr().err


def teacher_or_critic(body: dict) -> str:
    """One endpoint for both: the critic's requests are graded, the teacher's answered as a faithful teacher."""
    return grade(body) if "You grade a grounded chain" in body["messages"][0]["content"] else good_reply(body)


def test_the_critic_in_batch_mode_joins_the_teachers_shards_and_is_then_served_from_the_cache(tmp_path, capsys):
    source = viscot_source(tmp_path, "a", [f"What is shown, n={i}?" for i in range(4)])
    job = tmp_path / "job.yaml"
    with FakeOpenAI(reply_with=teacher_or_critic) as fake:
        job.write_text(f"sources: [{source}]\nstyles: [sif]\ndepth: {{enabled: false}}\ncache: {tmp_path / 'cache'}\n"
                       f"teacher: {{kind: openai, connection: {{base_url: '{fake.base_url}', model: fake-vlm, "
                       "api_key_env: null}, batch: {enabled: true}}\nquality: {critic: {enabled: true}}\n")

        def generate_then_collect(out) -> dict:
            assert main(["generate", str(job), "-o", str(out), "--allow-empty"]) == 0  # every row waits
            for action in ("submit", "status", "collect"):
                assert main(["teacher", action, str(job), "--out", str(out)]) == 0
            return json.loads((out / "stats.json").read_text())

        first = generate_then_collect(tmp_path / "first")  # the teacher's requests
        second = generate_then_collect(tmp_path / "second")  # the teacher's replies from the cache; the critic's requests
        stats, rows, _ = run(tmp_path, [source], job.read_text().split("styles: [sif]\n", 1)[1], styles="[sif]")
        assert fake.requests == []  # no live call in any run: batches and the cache only
    assert first["rejected_by_reason"] == {"teacher_batch_pending": 4} and first["critic"]["ledger"] == {"retries": 0}
    assert second["rejected_by_reason"] == {"critic_batch_pending": 4}
    assert second["critic"]["ledger"]["batch_requests"] == 4 and second["teacher"]["ledger"]["cache_hits"] == 4
    assert stats["written"] == 4 and stats["critic"]["ledger"]["cache_hits"] == 4
    assert sorted(row["critic_score"] for row in rows) == [0.0, 0.1, 0.2, 0.3]
