"""The OpenAI teacher end to end, against a scripted local OpenAI-compatible server."""
import base64
import io
import json
import socket
import time
from collections import Counter

import pytest
from PIL import Image

from groundcot.pipeline.cli import main
from groundcot.schemas.runs import read_run
from groundcot.transforms.teach.connection import Connection, EndpointError, check_endpoint

from support import png_bytes, viscot_line
from support.fake_openai import FakeOpenAI

KEY = "sk-groundcot-test-SECRET-7c1f"
MODES = ["good", "fenced", "malformed_once", "malformed", "wrong_box", "rate_limited_once",
         "server_error_once", "server_error", "slow_once", "echo_auth", "paraphrase", "unprocessable"]
PRICES = {"price_prompt_per_mtok": 2.0, "price_completion_per_mtok": 10.0}


def dataset(tmp_path, modes, size=(64, 48)):
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    (root / "a.png").write_bytes(png_bytes(*size))
    meta = tmp_path / "toy_cot_train.jsonl"
    meta.write_text("".join(viscot_line("a.png", *size, [[10, 10, 30, 30]], question=f"What is it? [[{m}]]",
                                        answer="red") + "\n" for m in modes))
    return meta, root


def job(tmp_path, fake, modes, prompts=None, **teacher):
    """A job config for ``modes``; ``teacher``: sub-sections (merged into the defaults here) or values."""
    meta, root = dataset(tmp_path, modes)
    settings = {"kind": "openai", "cache": str(tmp_path / "cache"),
                "connection": {"base_url": fake.base_url, "model": "fake-vlm", "api_key_env": "GC_TEST_KEY",
                               "timeout_s": 1.0, "max_retries": 2, "retry_backoff_s": 0.01},
                "limits": {"max_concurrency": 4},
                "request": {"temperature": 0.3, "max_tokens": 256, "image_max_side": 40}}
    for name, value in teacher.items():
        settings[name] = {**settings.get(name, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps({"sources": [{"kind": "viscot", "path": str(meta), "image_root": str(root)}],
                                "depth": {"enabled": False}, "teacher": settings, "prompts": prompts or {}}))
    return str(path)


def mode_of(text: str) -> str:
    return text.split("[[")[1].split("]]")[0]


def outcome(out):
    stats = json.loads((out / "stats.json").read_text())
    rejected = {json.loads(l)["question"]: json.loads(l) for f in (out / "rejected").glob("*.jsonl")
                for l in f.read_text().splitlines()}
    written = {r["question"]: r for r in read_run(str(out))} if stats["written"] else {}
    return stats, written, rejected


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("GC_TEST_KEY", KEY)


def module_run(tmp_path_factory, modes, fake, **teacher):
    """A run that several tests only read: the job's path and the output folder."""
    tmp = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GC_TEST_KEY", KEY)
        path = job(tmp, fake, modes, **teacher)
        assert main(["generate", path, "--out", str(tmp / "out")]) == 0
    return path, tmp / "out"


@pytest.fixture(scope="module")
def behaviours(tmp_path_factory):
    """One record per endpoint behaviour (MODES), one run."""
    with FakeOpenAI(slow_s=1.0) as fake:
        return module_run(tmp_path_factory, MODES, fake, connection={"timeout_s": 0.5})[1]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Good replies (one after a re-ask), with the judge, prices and a cache: the run's job, its
    output and the requests the endpoint received."""
    with FakeOpenAI() as fake:
        path, out = module_run(tmp_path_factory, ["good", "malformed_once", "fenced", "paraphrase"], fake,
                               judge={"enabled": True}, cost=PRICES)
    return path, out, fake.requests


def test_each_behaviour_is_accepted_reasked_retried_or_rejected(behaviours):
    stats, written, rejected = outcome(behaviours)
    assert stats["balanced"] and stats["records_in"] == len(MODES)
    mode = lambda q: q.split("[[")[1].rstrip("]")  # noqa: E731
    assert {mode(q) for q in written} == {"good", "fenced", "malformed_once", "rate_limited_once",
                                          "server_error_once", "slow_once"}
    reasons = {mode(q): r["reason"] for q, r in rejected.items()}
    assert reasons == {"malformed": "grammar_not_think_then_answer", "wrong_box": "chain_box_mismatch",
                       "server_error": "teacher_server_error", "echo_auth": "teacher_http_400",
                       "paraphrase": "answer_mismatch", "unprocessable": "teacher_http_422"}
    assert rejected["What is it? [[malformed]]"]["stage"] == "validate"
    for row in written.values():
        assert row["teacher"] == "openai:fake-vlm" and row["cot"].startswith("<think>")
    ledger = stats["teacher"]["ledger"]
    assert ledger["status_429"] == 1 and ledger["status_500"] == 1 + 3  # once, then 1 + 2 retries
    assert ledger["failures.server_error"] == 1 and ledger["failures.http_400"] == 1
    assert ledger["reasks"] == 4  # malformed_once, malformed, wrong_box, paraphrase
    assert ledger["retries"] >= 1 + 1 + 2 + 1  # 429, 500 once, 500 twice more, the slow one's timeout
    assert ledger["prompt_tokens"] == 100 * ledger["status_200"]


def test_requests_carry_the_images_and_parameters(shared):
    sent = next(r for r in shared[2] if "[[good]]" in r["body"]["messages"][0]["content"])
    body, headers = sent["body"], sent["headers"]
    assert headers["authorization"] == f"Bearer {KEY}"
    assert body["model"] == "fake-vlm" and body["temperature"] == 0.3 and body["max_tokens"] == 256
    system, picture, instruction = body["messages"]  # shared prefix (system text, image), then the style's part
    assert "What is it?" in system["content"] and "Correct answer: red" in system["content"]
    assert 'Step 1 (the whole image), outlined in red, tagged 1: <area>[{"bbox_2d": [0.000, 0.000, 1.000, 1.000]' \
        in system["content"]
    images = [p["image_url"]["url"] for p in picture["content"] if p["type"] == "image_url"]
    assert len(images) == len(picture["content"]) == 1  # the image once, every step drawn on it
    assert [p["type"] for p in instruction["content"]] == ["text"]  # sif needs no crop
    first = Image.open(io.BytesIO(base64.b64decode(images[0].split(",", 1)[1])))
    assert first.format == "JPEG" and max(first.size) == 40  # downscaled to image_max_side
    r, g, b = first.convert("RGB").getpixel((0, 0))
    assert r > 150 and g < 100  # the full-image box is drawn in red along the edge


def test_second_run_is_served_from_the_cache(shared, tmp_path, key):
    path, one, requests = shared
    with FakeOpenAI() as fake:  # the same job at a new endpoint: no chat request reaches it
        base_url = f"teacher.connection.base_url={fake.base_url}"
        assert main(["generate", path, "--out", str(tmp_path / "two"), "--set", base_url]) == 0
        assert fake.requests == []
    first, second = outcome(one), outcome(tmp_path / "two")
    ledger = second[0]["teacher"]["ledger"]
    assert ledger.get("requests", 0) == 0 and ledger["cache_hits"] == len(requests)  # re-asks and judge included
    assert {q: r["cot"] for q, r in first[1].items()} == {q: r["cot"] for q, r in second[1].items()}


def test_judge_accepts_a_paraphrased_answer(shared):
    stats, written, _ = outcome(shared[1])
    assert "What is it? [[paraphrase]]" in written and stats["rejected"] == 0
    assert stats["teacher"]["ledger"]["judge_calls"] == 1  # only the paraphrase differed from the answer


def test_request_budget(tmp_path, key):
    with FakeOpenAI() as fake:
        out = tmp_path / "out"
        path = job(tmp_path, fake, ["good", "fenced"], limits={"request_budget": 1})
        assert main(["generate", path, "--out", str(out)]) == 0
    stats, _, rejected = outcome(out)
    assert stats["written"] == 1 and stats["rejected_by_reason"] == {"teacher_budget_exhausted": 1}


def test_cost_estimate(shared):
    teacher = json.loads((shared[1] / "stats.json").read_text())["teacher"]
    calls = teacher["ledger"]["status_200"]
    assert calls == len(shared[2]) == 6  # 4 records, a re-ask, a judge call; each 100 + 40 tokens
    assert teacher["estimated_cost_usd"] == pytest.approx(calls * (100 * 2.0 + 40 * 10.0) / 1e6)


def test_the_key_never_appears_anywhere(tmp_path, key, capfd, caplog):
    modes = ["echo_auth", "echo_key", "echo_key_bad", "good"]
    with FakeOpenAI() as fake:
        out = tmp_path / "out"
        assert main(["generate", job(tmp_path, fake, modes), "--out", str(out)]) == 0
        assert KEY in json.dumps(fake.requests[0]["headers"])  # it was sent, and echoed back
    stats, written, rejected = outcome(out)
    assert stats["balanced"] and stats["written"] == 2
    detail = rejected["What is it? [[echo_auth]]"]["detail"]
    assert "***" in detail and KEY not in detail
    assert "(***)" in written["What is it? [[echo_key]]"]["cot"]  # the reply was kept, the key was not
    bad = rejected["What is it? [[echo_key_bad]]"]
    assert bad["stage"] == "validate" and bad["cot"] == "I cannot do that with the key ***."
    cached = [p for p in (tmp_path / "cache").rglob("*.json")]
    assert len(cached) >= 3 and any("***" in p.read_text() for p in cached)
    for path in [*out.rglob("*"), *cached]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    printed = capfd.readouterr()
    assert KEY not in printed.out + printed.err + caplog.text


def test_malformed_replies_are_named_retried_and_counted(tmp_path, key):
    broken = ["html", "bad_json", "choices_not_list", "no_choices", "bad_utf8"]
    modes = [*broken, "html_once", "good"]
    with FakeOpenAI() as fake:
        out = tmp_path / "out"
        assert main(["generate", job(tmp_path, fake, modes), "--out", str(out)]) == 0
        sent = Counter(mode_of(r["body"]["messages"][0]["content"]) for r in fake.requests)
    stats, written, rejected = outcome(out)
    assert stats["balanced"] and stats["records_in"] == len(modes)
    assert {mode_of(q) for q in written} == {"html_once", "good"}
    fates = {mode_of(q): (r["stage"], r["reason"], r["detail"].split(":")[1].strip()) for q, r in rejected.items()}
    assert fates == {"html": ("teacher", "teacher_bad_reply", "html"),
                     "bad_json": ("teacher", "teacher_bad_reply", "invalid_json"),
                     "choices_not_list": ("teacher", "teacher_bad_reply", "choices_not_a_list"),
                     "no_choices": ("teacher", "teacher_bad_reply", "no_choices"),
                     "bad_utf8": ("teacher", "teacher_bad_reply", "invalid_utf8")}
    assert all(r["detail"].endswith("(after 3 attempts)") for r in rejected.values())
    assert sent == {**{m: 3 for m in broken}, "html_once": 2, "good": 1}  # 1 + max_retries each
    ledger = stats["teacher"]["ledger"]
    assert ledger["failures.bad_reply"] == len(broken) and ledger["errors.bad_reply"] == 3 * len(broken) + 1
    assert ledger["errors.bad_reply.html"] == 3 + 1 and ledger["errors.bad_reply.invalid_utf8"] == 3
    assert ledger["attempts"] == sum(sent.values()) and ledger["retries"] == 2 * len(broken) + 1
    assert stats["rejected_by_reason"] == {"teacher_bad_reply": len(broken)}


def test_a_refusal_keeps_the_reason_the_server_gave(behaviours):
    # FastAPI's {"detail": ...} (transformers serve) and OpenAI's {"error": {"message": ...}}
    _, _, rejected = outcome(behaviours)
    fates = {mode_of(q): (r["reason"], r["detail"]) for q, r in rejected.items()}
    assert fates["unprocessable"] == ("teacher_http_422", "UnprocessableEntityError: HTTP 422: Unexpected fields "
                                                          "in the request: {'top_k'}")
    assert fates["echo_auth"][0] == "teacher_http_400" and "bad request; you sent Bearer ***" in fates["echo_auth"][1]
    assert KEY not in json.dumps(fates)


def test_timeout_bounds_the_whole_reply_not_each_read(tmp_path, key):
    # 20 pieces 0.1 s apart: no single read waits 0.5 s, the whole reply takes 2 s
    with FakeOpenAI(trickle_s=2.0) as fake:
        out = tmp_path / "out"
        path = job(tmp_path, fake, ["trickle", "trickle_once", "good"],
                   connection={"timeout_s": 0.5, "max_retries": 1})
        started = time.monotonic()
        assert main(["generate", path, "--out", str(out)]) == 0
        elapsed = time.monotonic() - started
        sent = Counter(mode_of(r["body"]["messages"][0]["content"]) for r in fake.requests)
    stats, written, rejected = outcome(out)
    assert stats["balanced"] and {mode_of(q) for q in written} == {"trickle_once", "good"}
    assert rejected["What is it? [[trickle]]"]["reason"] == "teacher_timeout"
    assert sent == {"trickle": 2, "trickle_once": 2, "good": 1}
    ledger = stats["teacher"]["ledger"]
    assert ledger["failures.timeout"] == 1 and ledger["errors.timeout"] == 3 and ledger["retries"] == 2
    assert elapsed < 30  # not 2 s per trickled attempt on top of the job


def test_health_check_names_an_unreachable_endpoint_or_a_refused_key(tmp_path, key, monkeypatch):
    with FakeOpenAI(key=KEY) as fake:
        cfg = Connection(base_url=fake.base_url, model="fake-vlm", api_key_env="GC_TEST_KEY")
        check_endpoint(cfg)  # reachable, key accepted
        monkeypatch.setenv("GC_TEST_KEY", "sk-wrong-key-1234")
        with pytest.raises(EndpointError, match="refused the key in GC_TEST_KEY \\(HTTP 401\\)") as refused:
            check_endpoint(cfg)
        assert fake.health_checks == 2
    assert "sk-wrong" not in str(refused.value) and "\n" not in str(refused.value)
    closed = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EndpointError, match="is unreachable") as unreachable:
        check_endpoint(Connection(base_url=closed, model="m", api_key_env="GC_TEST_KEY"))
    assert "Connection refused" in str(unreachable.value) and KEY not in str(unreachable.value)


def test_an_unreachable_endpoint_stops_the_job_before_it_starts(tmp_path, key, capfd):
    with FakeOpenAI() as fake:
        path = job(tmp_path, fake, ["good"])
    out = tmp_path / "out"  # the server is gone: its port refuses connections
    assert main(["generate", path, "--out", str(out)]) == 2  # as --check says it: nothing ran
    err = capfd.readouterr().err
    assert "is unreachable" in err and KEY not in err and not (out / "stats.json").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_missing_key_variable_is_named_not_shown(tmp_path, monkeypatch, capfd):
    monkeypatch.delenv("GC_TEST_KEY", raising=False)
    with FakeOpenAI() as fake:
        path = job(tmp_path, fake, ["good"])
        # the same exit code and line from --check and from the run
        assert main(["generate", path, "--out", str(tmp_path / "out"), "--check"]) == 2
        checked = capfd.readouterr().err
        assert main(["generate", path, "--out", str(tmp_path / "out")]) == 2
        ran = capfd.readouterr().err
    assert checked.strip() == ran.strip().splitlines()[-1] == (
        "groundcot: teacher.connection.api_key_env: the environment variable GC_TEST_KEY is not set")


def test_a_model_the_endpoint_does_not_serve_fails_the_check(tmp_path, key, capfd):
    with FakeOpenAI() as fake:
        path = job(tmp_path, fake, ["good"], connection={"model": "gpt-4o-typo"})
        for args in (["--check"], []):
            assert main(["generate", path, "--out", str(tmp_path / "out"), *args]) == 2
            err = capfd.readouterr().err.strip().splitlines()[-1]
            assert err == (f"groundcot: teacher.connection.model: 'gpt-4o-typo' is not served by {fake.base_url}/models "
                           "(it serves: fake-vlm)")
        assert fake.requests == []
    assert not (tmp_path / "out").exists()


def test_every_style_through_the_api_teacher(tmp_path, key):
    meta, root = dataset(tmp_path, ["good"])
    path = tmp_path / "styles.yaml"
    path.write_text(json.dumps({
        "sources": [{"kind": "viscot", "path": str(meta), "image_root": str(root)}],
        "styles": ["sif", "textual", "mgpo", "aperture"], "depth": {"enabled": False},
        "teacher": {"kind": "openai", "connection": {"base_url": "", "model": "fake-vlm", "api_key_env": "GC_TEST_KEY"},
                    "request": {"crop_min_zoom": 1.0}}}))  # crops even though the image is sent at full resolution
    with FakeOpenAI() as fake:
        out = tmp_path / "out"
        base_url = f"teacher.connection.base_url={fake.base_url}"
        assert main(["generate", str(path), "--out", str(out), "--set", base_url]) == 0
        bodies = [r["body"] for r in fake.requests]
    stats, _, _ = outcome(out)
    assert stats["written"] == 4 and stats["teacher"]["ledger"]["requests"] == 4  # one call per style
    rows = {r["style"]: r for r in read_run(str(out))}
    assert rows["mgpo"]["cot"].endswith("\\boxed{red}") and rows["aperture"]["cot"].endswith("<answer>red</answer>")
    assert all(r["teacher"] == "openai:fake-vlm" for r in rows.values())
    def images_sent(phrase):  # phrase: from that style's instruction
        body = next(b for b in bodies if phrase in b["messages"][2]["content"][0]["text"])
        return sum(p["type"] == "image_url" for m in body["messages"][1:] for p in m["content"])

    assert images_sent("picks the key region") == 2  # mgpo: the shared image, and the region's crop
    assert images_sent("looks closer step by step") == 1 + len(rows["aperture"]["actions"])  # + one crop per action
    assert images_sent("reasons in words") == images_sent("one <area> and one <text> per step") == 1
    prefixes = {json.dumps(b["messages"][:2], sort_keys=True) for b in bodies}
    assert len(prefixes) == 1  # every style of the record starts with the same bytes
    ledger = stats["teacher"]["ledger"]
    assert ledger["images"] == 1 + 1 + 2 + 1 + len(rows["aperture"]["actions"])  # sif, textual, mgpo, aperture
    assert ledger["cached_prompt_tokens"] == 3 * 64  # the fake reports the prefix cached after its first call
    assert ledger["prefix_built"] == 1 and ledger["prefix_reused"] == 3
