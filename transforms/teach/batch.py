"""The batch backend: requests written down as OpenAI Batch JSONL shards instead of sent, and the
jobs that carry them through an endpoint's Batch API (``groundcot teacher submit|status|collect``).

With ``teacher.batch.enabled``, ``generate`` writes every request the response cache cannot serve
to ``RUN/batch/requests-*.jsonl`` (its records wait as ``teacher_batch_pending``). ``submit``
uploads the shards and creates one batch each (state in ``RUN/batch/batches.json``), ``status``
shows them, ``collect`` reads finished outputs, and any ``RUN/batch/results*.jsonl`` (what
``vllm run-batch -o`` writes), into the response cache: the next ``generate`` is served from it.
"""
from __future__ import annotations

import json
import logging
import uuid

from pydantic import BaseModel, ConfigDict, Field

from groundcot.transforms.cache import files
from groundcot.transforms.teach.client import ChatClient, TeacherError
from groundcot.transforms.teach.connection import make_client

log = logging.getLogger("groundcot")
BATCHES = "batches.json"
CHAT_URL = "/v1/chat/completions"  # the url of a batch request line (OpenAI and vLLM)


class Batch(BaseModel):
    """The ``batch`` sub-section of an API teacher."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Call nothing: write every request the response cache cannot serve "
                          "as OpenAI Batch JSONL shards in RUN/batch/ (records wait as teacher_batch_pending), for "
                          "`groundcot teacher submit|status|collect` or `vllm run-batch`.")
    shard_requests: int = Field(50000, ge=1, description="Most requests per batch shard (OpenAI's limit "
                                "per batch file is 50,000).")
    completion_window: str = Field("24h", description="completion_window of the batches submit creates.")


class BatchClient(ChatClient):
    """A ``ChatClient`` that writes each request down (``take``) instead of sending it."""

    keyed = True  # the cache key is the line's custom_id

    def __init__(self, cfg, run_id: str, ledger):
        super().__init__(cfg, run_id, ledger)
        self.lines: dict[str, dict] = {}  # custom_id -> request line, until the DoFn writes them

    async def open(self) -> None:
        self._key = self.conn.key()  # only to redact: nothing is called

    async def ask(self, key: str, body: dict, sizes) -> str:
        self.lines[key] = {"custom_id": key, "method": "POST", "url": CHAT_URL, "body": body}
        self.ledger.inc("batch_requests")
        raise TeacherError("teacher_batch_pending", "the request is in this run's batch/ shards; "
                           "`groundcot teacher submit`, then `collect`, then generate again")

    def take(self) -> list[dict]:
        """The request lines gathered since the last call (each ``custom_id`` once)."""
        lines, self.lines = self.lines, {}
        return list(lines.values())


def write_shards(folder: str, lines: list[dict], per_shard: int) -> list[str]:
    """Batch request lines as OpenAI Batch JSONL files under ``folder`` (one uniquely named file per
    ``per_shard`` lines; the same files ``vllm run-batch`` reads)."""
    paths = []
    for start in range(0, len(lines), per_shard):
        path = f"{folder.rstrip('/')}/requests-{uuid.uuid4().hex[:12]}.jsonl"
        with files().create(path) as handle:
            for line in lines[start:start + per_shard]:
                handle.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        paths.append(path)
    return paths


# --- the batch jobs: ``teacher`` is the job's openai teacher section, cache resolved ----------


def read_state(folder: str) -> list[dict]:
    path = f"{folder}/{BATCHES}"
    if not files().exists(path):
        return []
    with files().open(path) as handle:
        return json.loads(handle.read())


def write_state(folder: str, state: list[dict]) -> None:
    with files().create(f"{folder}/{BATCHES}") as handle:
        handle.write(json.dumps(state, indent=2).encode())


def shards(folder: str, pattern: str = "requests-*.jsonl") -> list[str]:
    try:
        return sorted(m.path for m in files().match([f"{folder}/{pattern}"])[0].metadata_list)
    except OSError:
        return []


def submit(teacher, folder: str) -> int:
    """Upload every shard not yet submitted and create its batch."""
    state = read_state(folder)
    done = {s["shard"] for s in state}
    todo = [p for p in shards(folder) if p.rsplit("/", 1)[-1] not in done]
    if not todo and not state:
        raise RuntimeError(f"no batch request shards in {folder} (run generate with teacher.batch.enabled=true first)")
    api = make_client(teacher.connection, asynchronous=False)
    for path in todo:
        with files().open(path) as handle:
            data = handle.read()
        uploaded = api.files.create(file=(path.rsplit("/", 1)[-1], data), purpose="batch")
        batch = api.batches.create(input_file_id=uploaded.id, endpoint=CHAT_URL,
                                   completion_window=teacher.batch.completion_window)
        lines = data.count(b"\n")
        state.append({"shard": path.rsplit("/", 1)[-1], "requests": lines, "file_id": uploaded.id,
                      "batch_id": batch.id, "status": batch.status, "collected": False})
        write_state(folder, state)  # after each: a failure midway loses nothing submitted
        print(f"submitted {path.rsplit('/', 1)[-1]}: {lines} requests as batch {batch.id} ({batch.status})")
    if not todo:
        print(f"nothing new to submit: {len(state)} batches already submitted (see `groundcot teacher status`)")
    return 0


def status(teacher, folder: str) -> int:
    state = read_state(folder)
    if not state:
        raise RuntimeError(f"no batches submitted from {folder} (run `groundcot teacher submit` first)")
    api = make_client(teacher.connection, asynchronous=False)
    for entry in state:
        batch = api.batches.retrieve(entry["batch_id"])
        entry["status"] = batch.status
        counts = batch.request_counts
        done = f"{counts.completed} completed, {counts.failed} failed of {counts.total}" if counts else "no counts yet"
        collected = ", collected" if entry["collected"] else ""
        print(f"{entry['batch_id']} ({entry['shard']}): {batch.status}; {done}{collected}")
    write_state(folder, state)
    return 0


def collect(teacher, folder: str) -> int:
    """Import finished batches' outputs (and local run-batch results) into the response cache."""
    from groundcot.transforms.cache import Cache

    if not teacher.cache:
        raise RuntimeError("teacher.cache (or cache) is not set: collected replies need a response cache")
    cache = Cache(teacher.cache)
    state = read_state(folder)
    counts = {"imported": 0, "failed": 0, "waiting": 0}
    api = make_client(teacher.connection, asynchronous=False) if state else None
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
        with files().open(path) as handle:
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
    from groundcot.transforms.teach.reply import BadReply, parse_reply

    redact = teacher.connection.redact
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
            content, usage = parse_reply(json.dumps(body).encode())
        except BadReply as err:
            log.warning("batch result %s: %s", row.get("custom_id"), err)
            counts["failed"] += 1
            continue
        if not content.strip():
            counts["failed"] += 1
            continue
        # its usage too: the run the reply serves counts the tokens (ledger, estimated cost)
        cache.put(row["custom_id"], {"content": redact(content), "usage": usage if isinstance(usage, dict) else {},
                                     "via": "batch"})
        counts["imported"] += 1
    return counts


JOBS = {"submit": submit, "status": status, "collect": collect}
