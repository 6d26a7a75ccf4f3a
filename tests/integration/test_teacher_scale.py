"""The teacher at scale, through the real CLI: the cost cap, the --check plan, `teacher try`, and
quality figures per style in stats.json."""

import pytest
from test_teacher_api import KEY, job, outcome

from groundcot.pipeline.cli import main

from support.fake_openai import FakeOpenAI


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("GC_TEST_KEY", KEY)


def test_max_cost_usd_stops_new_calls_and_rejects_the_rest(tmp_path, key):
    # each call: 100 prompt + 40 completion tokens = $0.0006 at $2 / $10 per million
    with FakeOpenAI() as fake:
        path = job(tmp_path, fake, ["good"] * 5, limits={"max_concurrency": 1},
                   cost={"price_prompt_per_mtok": 2.0, "price_completion_per_mtok": 10.0, "max_cost_usd": 0.0013})
        # identical questions would share one cache entry: give each record its own
        meta = tmp_path / "toy_cot_train.jsonl"
        meta.write_text("".join(line.replace("What is it?", f"What is it ({i})?") + "\n"
                                for i, line in enumerate(meta.read_text().splitlines())))
        out = tmp_path / "out"
        assert main(["generate", path, "--out", str(out)]) == 0
        calls = len(fake.requests)
    stats, _, rejected = outcome(out)
    assert calls == 3  # $0.0006, $0.0012 (< cap: one more), $0.0018: no new call after that
    assert stats["balanced"] and stats["written"] == 3 and stats["rejected_by_reason"] == {"teacher_budget_exhausted": 2}
    assert all("max_cost_usd 0.0013 spent" in r["detail"] for r in rejected.values())
    teacher = stats["teacher"]
    assert teacher["estimated_cost_usd"] == pytest.approx(3 * 0.0006) and teacher["max_cost_usd"] == 0.0013
    assert teacher["ledger"]["requests"] == 3
    assert stats["records_in"] == stats["written"] + stats["rejected"]


def test_max_cost_usd_needs_prices(tmp_path, key, capfd):
    with FakeOpenAI() as fake:
        assert main(["generate", job(tmp_path, fake, ["good"], cost={"max_cost_usd": 1.0}), "--check"]) == 2
    assert "max_cost_usd needs price_prompt_per_mtok" in capfd.readouterr().err


def test_check_prints_calls_image_tokens_and_cost(tmp_path, key, capsys):
    with FakeOpenAI() as fake:
        path = job(tmp_path, fake, ["good"] * 4,
                   cost={"price_prompt_per_mtok": 2.0, "price_completion_per_mtok": 10.0, "max_cost_usd": 5.0})
        assert main(["generate", path, "--check", "--set", "styles=[sif,mgpo]"]) == 0
        assert fake.requests == []
    out = capsys.readouterr().out
    assert "teacher calls: about 8 (4 records x 2 styles)" in out
    # image_max_side 40: a 40x40 square is 4 Qwen2.5-VL tokens; sif 1 image, mgpo 1 + its crop
    assert "teacher images: one (3 images per record over 2 styles), at most 12 image tokens per record" in out
    per_record = ((12 + 2 * 900) * 2.0 + 2 * 256 * 10.0) / 1e6
    assert f"at most ${per_record:.4f} per record before re-asks" in out
    assert f"at most ${4 * per_record:.2f} for 4 records (48 image tokens)" in out
    assert "calls stop at teacher.cost.max_cost_usd $5" in out


def test_quality_per_style_in_stats(tmp_path, key):
    modes = ["good", "malformed_once", "malformed", "wrong_box"]
    with FakeOpenAI() as fake:
        out = tmp_path / "out"
        assert main(["generate", job(tmp_path, fake, modes), "--out", str(out), "--set", "styles=[sif,textual]"]) == 0
    stats, _, _ = outcome(out)
    quality = stats["teacher"]["quality"]
    assert set(quality) == {"sif", "textual"}
    # sif: good first try; malformed_once fixed by the re-ask; malformed and wrong_box rejected after one
    assert quality["sif"] == {"accepted_first_try": 1, "accepted_after_reask": 1, "reasked": 3, "rejected": 2,
                              "rejected_by_reason": {"grammar_not_think_then_answer": 1, "chain_box_mismatch": 1}}
    # textual has no boxes: wrong_box's reply is fine there
    assert quality["textual"]["accepted_after_reask"] == 1 and quality["textual"]["rejected"] == 1
    for style, q in quality.items():
        by_style = stats["by_style"][style]
        assert q["accepted_first_try"] + q["accepted_after_reask"] == by_style["written"]
        assert sum(q["rejected_by_reason"].values()) == q["rejected"] == by_style["rejected"]


def test_teacher_try_prints_each_reply_with_its_verdict(tmp_path, key, capsys):
    expected = {"good": "accepted", "wrong_box": "rejected at validate: chain_box_mismatch",
                "malformed": "rejected at validate: grammar_not_think_then_answer"}
    with FakeOpenAI() as fake:
        path = job(tmp_path, fake, list(expected), reask=False)
        assert main(["teacher", "try", path, "--records", "2"]) == 0
        assert len(fake.requests) == 2  # N records, one style
    out = capsys.readouterr().out
    blocks = out.split("=== ")[1:]
    assert len(blocks) == 2
    for block in blocks:
        header, verdict, *reply = block.splitlines()
        mode = header.split("[[")[1].split("]]")[0]
        assert verdict.startswith(f"verdict: {expected[mode]}")
        assert ("I cannot do that." if mode == "malformed" else "<answer>red</answer>") in "\n".join(reply)
    assert f"{sum('verdict: accepted' in b for b in blocks)} of 2 accepted; calls 2" in out
    assert not (tmp_path / "out").exists() and KEY not in out


def test_teacher_try_says_when_calls_were_retried_after_a_timeout(tmp_path, key, capsys):
    with FakeOpenAI(slow_s=2.0) as fake:
        path = job(tmp_path, fake, ["slow_once", "good"], reask=False, connection={"timeout_s": 0.5})
        assert main(["teacher", "try", path, "--records", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "2 of 2 accepted; calls 2, cache hits 0, re-asks 0, retried 1 time (failed attempts: 1 timeout)"
