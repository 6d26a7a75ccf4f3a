"""``groundcot publish RUN --repo-id USER/NAME``: a finished run -> a dataset repo on the Hugging Face Hub.

What goes up, in one commit: the card (``README.md``) and its ``figures/``, every style's Parquet files
under ``data/``, ``stats.json`` and the job config as ``job.yaml`` (both with secrets removed).
``rejected/`` stays local. Files under ``data/`` and ``figures/`` that the repo holds from an earlier
run and this run did not write are deleted in the same commit. Uploads go through ``huggingface_hub``
(Xet or LFS: large files, resumable by re-running). The token comes from ``HF_TOKEN`` or the saved
login and is never printed or written.
"""
from __future__ import annotations

import json
import logging
import os
import sys

import yaml

from groundcot.schemas.runs import RunChanging, RunNotFound, consistent, published, read_bytes, style_shards
from groundcot.transforms.secrets import REMOVED, SECRET_KEY, scrub_url

log = logging.getLogger("groundcot")
REPLACED = ("data/", "figures/")  # what a new run's upload replaces in the repo


class PublishError(RuntimeError):
    """Publishing cannot go on; one line saying why."""


def scrub(value, secrets: tuple[str, ...] = ()):
    """A copy of a config with secret values removed: keys that name a secret (a variable's *name*,
    ``*_env``, is kept), credentials in URLs, and any known secret string."""
    if isinstance(value, dict):
        return {k: (REMOVED if SECRET_KEY.search(k) and not k.endswith("_env") and v else scrub(v, secrets))
                for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, str):
        value = scrub_url(value)
        for secret in secrets:
            value = value.replace(secret, REMOVED)
    return value


def known_secrets(token: str | None, config: dict) -> tuple[str, ...]:
    """The token and the values of the environment variables the config names for keys."""
    found = [token] if token else []
    for name in env_names(config):
        if os.environ.get(name):
            found.append(os.environ[name])
    return tuple(s for s in found if len(s) >= 8)


def env_names(value) -> list[str]:
    """Every ``api_key_env`` value anywhere in a config (e.g. ``teacher.connection.api_key_env``)."""
    if isinstance(value, dict):
        own = [value["api_key_env"]] if isinstance(value.get("api_key_env"), str) else []
        return own + [n for v in value.values() for n in env_names(v)]
    return [n for v in value for n in env_names(v)] if isinstance(value, list) else []


def plan(run: str, token: str | None = None) -> dict[str, bytes | str]:
    """Path in the repo -> the file to upload (a local path or the bytes): what ``--dry-run`` lists."""
    from groundcot.runs.card import CARD, FIGURES, write_card

    run = run.rstrip("/")
    shards = style_shards(run)  # RunNotFound names the path
    try:
        stats = json.loads(read_bytes(f"{run}/stats.json"))
    except (OSError, ValueError) as err:
        raise PublishError(f"{run}/stats.json: cannot read the run's stats ({err})") from None
    try:
        read_bytes(f"{run}/{CARD}")
    except OSError:
        log.info("%s has no card yet: writing it", run)
        write_card(run)
    secrets = known_secrets(token, stats.get("config") or {})
    files: dict[str, bytes | str] = {CARD: f"{run}/{CARD}"}
    for name in ("hiou.png", "chain_length.png", "rejections.png"):
        files[f"{FIGURES}/{name}"] = f"{run}/{FIGURES}/{name}"
    for paths in shards.values():
        for path in paths:
            files[path[len(run) + 1:]] = path
    clean = scrub(stats, secrets)
    files["stats.json"] = json.dumps(clean, indent=2).encode()
    files["job.yaml"] = yaml.safe_dump(clean.get("config") or {}, sort_keys=False).encode()
    return dict(sorted(files.items()))


def size_of(source: bytes | str) -> int:
    if isinstance(source, bytes):
        return len(source)
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(source)
    return fs.size(path)


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def tree(files: dict[str, bytes | str]) -> list[tuple[str, int]]:
    return [(path, size_of(src)) for path, src in files.items()]


def print_tree(listing: list[tuple[str, int]], repo_id: str, revision: str) -> None:
    print(f"would push to datasets/{repo_id} ({revision}), one commit:")
    for path, size in listing:
        print(f"  {path}  {size}  ({human(size)})")
    print(f"{len(listing)} files, {sum(s for _, s in listing)} bytes ({human(sum(s for _, s in listing))})")


def payload(source: bytes | str):
    """What ``CommitOperationAdd`` uploads: the bytes, or a local path (a bucket file is read into memory)."""
    if isinstance(source, bytes) or "://" not in source:
        return source
    return read_bytes(source)


def push(files: dict[str, bytes | str], repo_id: str, token: str, private: bool, revision: str | None) -> str:
    """Create the repo (and branch) if needed and commit ``files``, replacing the previous run's; the commit URL."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
    there = api.list_repo_files(repo_id, repo_type="dataset", revision=revision)
    stale = [p for p in there if p.startswith(REPLACED) and p not in files]
    operations = [CommitOperationDelete(path_in_repo=p) for p in stale]
    operations += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=payload(src)) for p, src in files.items()]
    info = api.create_commit(repo_id, operations, repo_type="dataset", revision=revision,
                             commit_message=f"groundcot run {run_id_of(files)}")
    log.info("deleted %d files of the previous run", len(stale))
    return info.commit_url


def run_id_of(files: dict[str, bytes | str]) -> str:
    stats = files.get("stats.json")
    return json.loads(stats).get("run_id", "") if isinstance(stats, bytes) else ""


def main(args) -> int:
    """The ``groundcot publish`` command; exit code 0, else one line on stderr and 2 (no whole run at RUN) or 1."""
    from huggingface_hub import get_token

    revision = args.revision or "main"
    token = get_token()
    run = args.run.rstrip("/")
    try:
        run_id, files = consistent(run, lambda: (published(run), plan(run, token)))
        if args.dry_run:
            print_tree(tree(files), args.repo_id, revision)
            return 0
        if not token:
            raise PublishError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login`")
        url = push(files, args.repo_id, token, args.private, args.revision)
        if published(run) != run_id:  # the files went up while a re-run replaced them
            raise PublishError(f"{run} was re-published while uploading ({url} may mix two runs); publish again")
    except RunNotFound as err:  # no run there, or a cut shard: as inspect and export say it
        print(f"groundcot: publish: {err}", file=sys.stderr)
        return 2
    except (RunChanging, PublishError) as err:
        print(f"groundcot: publish: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - Hub errors: one line, without the token
        text = f"{type(err).__name__}: {err}".replace("\n", " ")
        print(f"groundcot: publish to {args.repo_id} failed: {scrub(text, (token,) if token else ())}",
              file=sys.stderr)
        return 1
    print(f"published {len(files)} files to datasets/{args.repo_id} ({revision}): {url}")
    return 0
