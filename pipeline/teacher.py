"""``groundcot teacher {try,submit,status,collect}``: prompt work and batch jobs.

- ``try CONFIG --records N``: run the job on N records into a temporary folder and print each
  reply (as the style read it) with its verdict: accepted, or the rule it broke. No dataset is kept.
- ``submit``, ``status``, ``collect``: the batch backend's jobs (``transforms/teach/batch.py``);
  this module only loads the job and reports errors in one line. It stays in ``pipeline/``
  because ``try`` runs the job (transforms never import the pipeline).
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile

from apache_beam.io.filesystems import FileSystems

from groundcot.transforms.teach import is_api


def main(args) -> int:
    import openai

    from groundcot.pipeline.cli import resolve_config
    from groundcot.pipeline.config import ConfigError, load_config
    from groundcot.pipeline.outputs import OutputRefused
    from groundcot.pipeline.preflight import CheckFailed, check_batch_cache
    from groundcot.transforms.cache import with_teacher_cache
    from groundcot.transforms.teach.batch import JOBS

    try:
        cfg = load_config(resolve_config(args.config), args.overrides if hasattr(args, "overrides") else [])
        if args.action == "try":
            return try_records(cfg, args.records)
        if not is_api(cfg.teacher):
            raise ConfigError("teacher.kind: batch jobs need an openai teacher (the template teacher calls no one)")
        check_batch_cache(cfg)
        folder = f"{(args.out or cfg.output.dir).rstrip('/')}/batch"
        return JOBS[args.action](with_teacher_cache(cfg.teacher, cfg.cache), folder)
    except ConfigError as err:
        print(f"groundcot: config error: {err}", file=sys.stderr)
        return 2
    except (OutputRefused, CheckFailed) as err:  # teacher try: a check before the run failed
        print(f"groundcot: {err}".replace("\n", " "), file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as err:
        print(f"groundcot: {err}".replace("\n", " "), file=sys.stderr)
        return 1
    except openai.OpenAIError as err:  # the batch API's errors (a refused key, an unknown batch): one line
        text = _redacted(cfg.teacher.connection, str(err))
        print(f"groundcot: teacher {args.action}: {type(err).__name__}: {text}"[:500].replace("\n", " "),
              file=sys.stderr)
        return 1


def _redacted(conn, text: str) -> str:
    try:
        return conn.redact(text)
    except Exception:  # noqa: BLE001 - a key that cannot be read is not in the text either
        return text


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
    if is_api(cfg.teacher) and cfg.teacher.batch.enabled:
        cfg.teacher.batch.enabled = False  # a try asks now
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
          f"{ledger.get('cache_hits', 0)}, re-asks {ledger.get('reasks', 0)}{retried(ledger)}")
    return 0


def retried(ledger: dict) -> str:
    """", retried N times (failed attempts: ...)" when attempts were repeated, and the calls that
    failed for good; else "".

    >>> retried({"retries": 3, "errors.timeout": 3, "errors.rate_limited": 1, "failures.timeout": 1})
    ', retried 3 times (failed attempts: 3 timeout, 1 rate_limited); 1 call failed for good (1 timeout)'
    """
    errors = {k.removeprefix("errors."): n for k, n in ledger.items()
              if k.startswith("errors.") and k.count(".") == 1}
    failed = {k.removeprefix("failures."): n for k, n in ledger.items() if k.startswith("failures.")}
    text = ""
    if ledger.get("retries"):
        why = ", ".join(f"{n} {k}" for k, n in sorted(errors.items(), key=lambda kv: (kv[0] != "timeout", kv[0])))
        n = ledger["retries"]
        text = f", retried {n} time{'s' * (n != 1)} (failed attempts: {why})"
    if failed:
        total = sum(failed.values())
        text += (f"; {total} call{'s' * (total > 1)} failed for good ("
                 + ", ".join(f"{n} {k}" for k, n in sorted(failed.items())) + ")")
    return text


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
