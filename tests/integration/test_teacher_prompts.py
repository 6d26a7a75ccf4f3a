"""Prompts replaced from the job config, through the real CLI: what the teacher is sent (at the
loopback OpenAI stand-in), the rows' conversations, the card's hashes, the checks, `groundcot prompts`."""
import hashlib
import re
from pathlib import Path

import pytest
from test_teacher_api import KEY, job, outcome

from groundcot import prompts
from groundcot.pipeline.cli import main

from support import one_line
from support.fake_openai import FakeOpenAI

RULE = "House rule: name the colour of every region you mention."


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("GC_TEST_KEY", KEY)


def card_hashes(out: Path) -> dict[str, str]:
    line = next(x for x in (out / "README.md").read_text().splitlines() if x.startswith("Prompt templates"))
    return dict(re.findall(r"`(\w+)` ([0-9a-f]{12}(?: \(replaced\))?)", line))


def test_a_replaced_prompt_changes_the_bytes_sent_the_rows_and_the_card(tmp_path, key):
    (tmp_path / "mine").mkdir()
    system = prompts.default("teacher_system") + "\n" + RULE
    (tmp_path / "mine" / "system.txt").write_text(system + "\n")
    replaced = {"teacher_system": {"file": "mine/system.txt"}, "sif_train": "$question Answer in one word."}
    with FakeOpenAI() as fake:
        default_out, out = tmp_path / "default", tmp_path / "replaced"
        assert main(["generate", job(tmp_path, fake, ["good"]), "--out", str(default_out)]) == 0
        default_sent = [r["body"]["messages"][0]["content"] for r in fake.requests]
        # the Teach step carries the replacements in its pickled DoFn, here as on worker processes (where
        # test_sources_pipeline's flickr30k run checks the reader's and the rows' prompts)
        assert main(["generate", job(tmp_path, fake, ["good"], prompts=replaced), "--out", str(out)]) == 0
        sent = [r["body"]["messages"][0]["content"] for r in fake.requests[len(default_sent):]]
    assert prompts.load("sif_train") == prompts.default("sif_train")  # the job's prompts left with it
    assert default_sent and all(RULE not in text for text in default_sent)
    assert sent and all(text.endswith("\n" + RULE) for text in sent)  # a new cache key: asked again
    stats, written, _ = outcome(out)
    (row,) = written.values()
    question = row["messages"][0]["content"][1]["text"]
    assert question == "What is it? [[good]] Answer in one word."  # rendered in the rows
    echoed = stats["config"]["prompts"]
    assert echoed["teacher_system"] == {"file": str(tmp_path / "mine" / "system.txt"), "text": system}
    assert echoed["sif_train"] == {"file": None, "text": "$question Answer in one word."}
    before, after = card_hashes(default_out), card_hashes(out)
    assert set(before) == set(prompts.names()) and not any("replaced" in h for h in before.values())
    assert after["teacher_system"] == hashlib.sha256(system.encode()).hexdigest()[:12] + " (replaced)"
    assert after["sif_train"].endswith(" (replaced)") and after["sif_train"][:12] != before["sif_train"]
    kept = set(before) - set(replaced)
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}


@pytest.mark.parametrize("section, message", [
    ({"judge": "Q: $question A: $reference B: $candidat"},
     "prompts.judge: unknown placeholder $candidat (the default uses $candidate, $question, $reference)"),
    ({"teacher_reask": "Fix it: $reason."},
     "prompts.teacher_reask: placeholder $detail is missing (the default uses $detail, $reason)"),
    ({"teacher_sif": "Costs $5."}, "prompts.teacher_sif: a $ that starts no placeholder (write $$ for a dollar sign)"),
    ({"teacher_sift": "hello"}, "prompts.teacher_sift: no such prompt (known: aperture_multiturn, "),
    ({"judge": {"file": "nowhere.txt"}}, "prompts.judge.file: cannot read "),
])
def test_a_bad_prompt_fails_check_in_one_line(tmp_path, key, capfd, section, message):
    with FakeOpenAI() as fake:
        assert main(["generate", job(tmp_path, fake, ["good"], prompts=section), "--check"]) == 2
        assert fake.requests == [] and fake.health_checks == 0
    assert one_line(capfd).startswith(f"groundcot: config error: {message}")


def test_an_old_flat_teacher_key_says_where_it_moved(tmp_path, key, capfd):
    with FakeOpenAI() as fake:
        path = job(tmp_path, fake, ["good"])
        assert main(["generate", path, "--check", "--set", "teacher.max_concurrency=4"]) == 2
        assert one_line(capfd).endswith("teacher: max_concurrency has moved to teacher.limits.max_concurrency")
        assert main(["generate", path, "--check", "--set", "teacher.mode=batch"]) == 2
        assert one_line(capfd).endswith("teacher: mode has moved to teacher.batch.enabled")
        assert main(["generate", path, "--check", "--set", "teacher.judge=true"]) == 2
        assert one_line(capfd).endswith("teacher: judge is a section now: write teacher.judge.enabled")


def test_prompts_list_and_show(capsys):
    assert main(["prompts", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == prompts.names()
    judge = next(line for line in listed if line.startswith("judge "))
    assert "yes/no" in judge and judge.endswith("[$candidate, $question, $reference]")
    assert main(["prompts", "show", "teacher_reask"]) == 0
    shipped = (Path(prompts.__file__).parent / "teacher_reask.txt").read_text()
    assert capsys.readouterr().out == shipped.strip() + "\n"  # ready to copy into a file


def test_prompts_show_an_unknown_name(capfd):
    assert main(["prompts", "show", "teacher_sift"]) == 2
    assert one_line(capfd).startswith("groundcot: no prompt 'teacher_sift' (known: aperture_multiturn,")


def test_one_place_builds_openai_clients():
    """Only transforms/teach/connection.py constructs an OpenAI client: the teacher, the batch
    commands and the trainer's judges all get theirs from make_client."""
    root = Path(prompts.__file__).parent.parent
    building = re.compile(r"\b(?:Async)?OpenAI\(")
    package = [p for p in root.rglob("*.py")  # the package's own modules, not the tests, benches or a venv
               if p.relative_to(root).parts[0] not in ("tests", "bench") and ".venv" not in p.parts]
    found = sorted(str(p.relative_to(root)) for p in package if building.search(p.read_text()))
    assert found == ["transforms/teach/connection.py"]
