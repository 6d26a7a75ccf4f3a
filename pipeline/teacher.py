"""``groundcot teacher {try,submit,status,collect}``: prompt work and batch jobs.

- ``try CONFIG --records N``: run the job on N records into a temporary folder and print each
  reply (as the style read it) with its verdict: accepted, or the rule it broke. No dataset is kept.
- ``submit``: upload a batch run's request shards (``RUN/batch/requests-*.jsonl``, written by
  ``generate`` with ``teacher.mode: batch``) to an OpenAI-compatible files endpoint and create one
  batch per shard; what was submitted goes to ``RUN/batch/batches.json``.
- ``status``: each batch's state and request counts.
- ``collect``: download finished batches' output files, and read any ``RUN/batch/results*.jsonl``
  (what ``vllm run-batch -o`` writes), into the response cache: the next ``generate`` is then
  served from the cache, with no live call.
"""
from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile

from apache_beam.io.filesystems import FileSystems

log = logging.getLogger("groundcot")
BATCHES = "batches.json"


def main(args) -> int:
    import openai

    from groundcot.pipeline.cli import resolve_config
    from groundcot.pipeline.config import ConfigError, load_config

    try:
        cfg = load_config(resolve_config(args.config), args.overrides if hasattr(args, "overrides") else [])
        if args.action == "try":
            return try_records(cfg, args.records)
        if cfg.teacher.kind != "openai":
            raise ConfigError("teacher.kind: batch jobs need an openai teacher (the template teacher calls no one)")
        folder = f"{(args.out or cfg.output.dir).rstrip('/')}/batch"
        return {"submit": submit, "status": status, "collect": collect}[args.action](cfg, folder)
    except ConfigError as err:
        print(f"groundcot: config error: {err}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as err:
        print(f"groundcot: {err}".replace("\n", " "), file=sys.stderr)
        return 1
    except openai.OpenAIError as err:  # the batch API's errors (a refused key, an unknown batch): one line
        key = _key(cfg)
        text = str(err).replace(key, "***") if key else str(err)
        print(f"groundcot: teacher {args.action}: {type(err).__name__}: {text}"[:500].replace("\n", " "),
              file=sys.stderr)
        return 1


def _key(cfg) -> str | None:
    from groundcot.transforms.teach.client import api_key

    try:
        return api_key(cfg.teacher.api_key_env, getattr(cfg.teacher, "api_key_secret", None))
    except Exception:  # noqa: BLE001 - only for redaction
        return None


# --- try -----------------------------------------------------------------------------------


def try_records(cfg, n: int) -> int:
    """Run the real job on the first ``n`` records (per source) in a temporary folder; print each
    reply with its verdict; keep nothing."""
    from groundcot.pipeline.config import ConfigError
    from groundcot.pipeline.run import run

    if n < 1:
        raise ConfigError(f"--records: must be at least 1 (got {n})")
    for src in cfg.sources:
        src.limit = min(src.limit or n, n)
    if getattr(cfg.teacher, "mode", "live") == "batch":
        cfg.teacher.mode = "live"  # a try asks now
    out = tempfile.mkdtemp(prefix="groundcot-try-")
    try:
        stats = run(cfg, out, allow_empty=True)
        verdicts = read_verdicts(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    for v in verdicts[:n * max(1, len(cfg.styles))]:
        print(f"=== {v['id']} [{v['style']}] {v['question']}")
        print(f"verdict: {v['verdict']}")
        print(v["reply"].rstrip() or "(no reply)")
        print()
    ledger = stats.get("teacher", {}).get("ledger", {})
    accepted = sum(v["verdict"] == "accepted" for v in verdicts)
    print(f"{accepted} of {len(verdicts)} accepted; calls {ledger.get('requests', 0)}, cache hits "
          f"{ledger.get('cache_hits', 0)}, re-asks {ledger.get('reasks', 0)}")
    return 0


def read_verdicts(out: str) -> list[dict]:
    """Each (record, style) of a run folder: its reply and verdict, in id order."""
    import pyarrow.parquet as pq

    found = []
    for meta in FileSystems.match([f"{out}/data/*/*.parquet"])[0].metadata_list:
        for row in pq.read_table(meta.path, columns=["id", "style", "question", "cot"]).to_pylist():
            found.append({"id": row["id"], "style": row["style"], "question": row["question"], "verdict": "accepted",
                          "reply": row["cot"] or ""})
    for meta in FileSystems.match([f"{out}/rejected/*.jsonl"])[0].metadata_list:
        with FileSystems.open(meta.path) as handle:
            for line in handle.read().decode().splitlines():
                row = json.loads(line)
                verdict = f"rejected at {row.get('stage')}: {row.get('reason')} ({row.get('detail', '')})"
                found.append({"id": row.get("id", ""), "style": row.get("style", ""), "verdict": verdict[:300],
                              "question": row.get("question", ""), "reply": row.get("cot") or ""})
    return sorted(found, key=lambda v: (v["id"], v["style"]))


# --- batch jobs ----------------------------------------------------------------------------


def client(cfg):
    import openai

    from groundcot.transforms.teach.client import api_key

    key = api_key(cfg.teacher.api_key_env, getattr(cfg.teacher, "api_key_secret", None))
    return openai.OpenAI(base_url=cfg.teacher.base_url, api_key=key or "EMPTY",
                         timeout=cfg.teacher.timeout_s, max_retries=cfg.teacher.max_retries)


def read_state(folder: str) -> list[dict]:
    path = f"{folder}/{BATCHES}"
    if not FileSystems.exists(path):
        return []
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


def write_state(folder: str, state: list[dict]) -> None:
    with FileSystems.create(f"{folder}/{BATCHES}") as handle:
        handle.write(json.dumps(state, indent=2).encode())


def shards(folder: str, pattern: str = "requests-*.jsonl") -> list[str]:
    try:
        return sorted(m.path for m in FileSystems.match([f"{folder}/{pattern}"])[0].metadata_list)
    except OSError:
        return []


def submit(cfg, folder: str) -> int:
    """Upload every shard not yet submitted and create its batch."""
    state = read_state(folder)
    done = {s["shard"] for s in state}
    todo = [p for p in shards(folder) if p.rsplit("/", 1)[-1] not in done]
    if not todo and not state:
        raise RuntimeError(f"no batch request shards in {folder} (run generate with teacher.mode=batch first)")
    api = client(cfg)
    for path in todo:
        with FileSystems.open(path) as handle:
            data = handle.read()
        uploaded = api.files.create(file=(path.rsplit("/", 1)[-1], data), purpose="batch")
        batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                   completion_window=cfg.teacher.batch_completion_window)
        lines = data.count(b"\n")
        state.append({"shard": path.rsplit("/", 1)[-1], "requests": lines, "file_id": uploaded.id,
                      "batch_id": batch.id, "status": batch.status, "collected": False})
        write_state(folder, state)  # after each: a failure midway loses nothing submitted
        print(f"submitted {path.rsplit('/', 1)[-1]}: {lines} requests as batch {batch.id} ({batch.status})")
    if not todo:
        print(f"nothing new to submit: {len(state)} batches already submitted (see `groundcot teacher status`)")
    return 0


def status(cfg, folder: str) -> int:
    state = read_state(folder)
    if not state:
        raise RuntimeError(f"no batches submitted from {folder} (run `groundcot teacher submit` first)")
    api = client(cfg)
    for entry in state:
        batch = api.batches.retrieve(entry["batch_id"])
        entry["status"] = batch.status
        counts = batch.request_counts
        done = f"{counts.completed} completed, {counts.failed} failed of {counts.total}" if counts else "no counts yet"
        collected = ", collected" if entry["collected"] else ""
        print(f"{entry['batch_id']} ({entry['shard']}): {batch.status}; {done}{collected}")
    write_state(folder, state)
    return 0


def collect(cfg, folder: str) -> int:
    """Import finished batches' outputs (and local run-batch results) into the response cache."""
    from groundcot.transforms.cache import Cache, with_teacher_cache

    teacher = with_teacher_cache(cfg.teacher, cfg.cache)
    if not teacher.cache:
        raise RuntimeError("teacher.cache (or cache) is not set: collected replies need a response cache")
    cache = Cache(teacher.cache)
    state = read_state(folder)
    counts = {"imported": 0, "failed": 0, "waiting": 0}
    api = client(cfg) if state else None
    for entry in state:
        if entry["collected"]:
            continue
        batch = api.batches.retrieve(entry["batch_id"])
        entry["status"] = batch.status
        if batch.status not in ("completed", "expired", "cancelled"):  # expired/cancelled: partial output
            counts["waiting"] += 1
            print(f"{entry['batch_id']}: {batch.status}, not collected yet")
            continue
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                result = import_results(api.files.content(file_id).text, cache, teacher)
                for k in ("imported", "failed"):
                    counts[k] += result[k]
        entry["collected"] = True
        write_state(folder, state)
    for path in shards(folder, "results*.jsonl"):  # vllm run-batch's output files
        with FileSystems.open(path) as handle:
            result = import_results(handle.read().decode(), cache, teacher)
        for k in ("imported", "failed"):
            counts[k] += result[k]
        print(f"read {path}: {result['imported']} replies")
    print(f"collected {counts['imported']} replies into {teacher.cache}; {counts['failed']} failed requests "
          f"(asked again by the next generate); {counts['waiting']} batches still running")
    return 0


def import_results(text: str, cache, teacher) -> dict[str, int]:
    """Batch output lines (OpenAI's, or vllm run-batch's) into the response cache by ``custom_id``,
    which is the cache key the request was written under."""
    from groundcot.transforms.teach.client import ChatClient, Ledger
    from groundcot.transforms.teach.reply import BadReply, parse_reply

    redact = ChatClient(teacher, "collect", Ledger()).redact
    counts = {"imported": 0, "failed": 0}
    for line in text.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        response = row.get("response") or {}
        body = response.get("body", response)  # vLLM versions without the status wrapper give the body
        if row.get("error") or response.get("status_code", 200) != 200:
            counts["failed"] += 1
            continue
        try:
            content, _ = parse_reply(json.dumps(body).encode())
        except BadReply as err:
            log.warning("batch result %s: %s", row.get("custom_id"), err)
            counts["failed"] += 1
            continue
        if not content.strip():
            counts["failed"] += 1
            continue
        cache.put(row["custom_id"], {"content": redact(content)})
        counts["imported"] += 1
    return counts
