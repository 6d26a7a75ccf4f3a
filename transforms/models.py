"""Models for a stage: checked on the driver, found and loaded on each worker.

The driver only validates what the config names (``resolve_model``) and, on runners whose
workers share its disk, decides whether the demo's tiny random fallback stands in. Each worker
then finds the model itself (``open_model``): a Hub id (its HF cache, else a download), a local
folder (for example baked into the worker image), or a bucket URL (copied once per worker into a
local folder). The fallback is built on the worker from a fixed seed, so every worker has the
same weights. Nothing of the driver's disk reaches the workers.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import urlparse

log = logging.getLogger("groundcot")
# files of other frameworks in Hub repos (SAM2's .pt checkpoints, ...): not what transformers loads
IGNORED = ["*.pt", "*.pth", "*.ckpt", "*.onnx", "*.msgpack", "*.h5", "*.tflite", "*.gguf", "*.mlmodel*"]


@dataclass
class ResolvedModel:
    """What the driver hands the workers: the model as the config names it, or the fallback."""

    requested: str
    load_from: str = ""  # Hub id, local folder or bucket URL; "" for the fallback
    fallback: bool = False
    reason: str = ""

    @property
    def kind(self) -> str:
        """``tiny_random``, ``bucket``, ``path`` or ``hub``."""
        if self.fallback:
            return "tiny_random"
        if "://" in self.load_from:
            return "bucket"
        return "path" if looks_like_path(self.load_from) else "hub"


def looks_like_path(name: str) -> bool:
    """A folder, not a Hub id: absolute, ``./``/``~`` relative, or existing here."""
    return name.startswith(("/", ".", "~")) or os.path.isdir(name)


def fingerprint(folder: str, contents: bool = False) -> str:
    """sha256 over a model folder's file names and sizes (and bytes, with ``contents``)."""
    paths = []
    for base, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        paths += [os.path.join(base, f) for f in files if not f.startswith(".")]
    if not contents:
        return listing_digest([(os.path.relpath(p, folder), os.path.getsize(p)) for p in paths])
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(f"{os.path.relpath(path, folder)}\0{os.path.getsize(path)}\0".encode())
        with open(path, "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()[:16]


def listing_digest(entries: list[tuple[str, int]]) -> str:
    """sha256 over (relative name, size) pairs: the same for a bucket folder and its local copy."""
    digest = hashlib.sha256()
    for name, size in sorted(entries):
        digest.update(f"{name.replace(os.sep, '/')}\0{size}\0".encode())
    return digest.hexdigest()[:16]


def hub_reachable(timeout_s: float = 3.0) -> bool:
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def quiet_transformers() -> None:
    """No progress bars or backend notices from transformers in pipeline logs."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# --- driver side: validate, decide the fallback ------------------------------------------

def resolve_model(model: str, fallback: str | None, what: str, local: bool = True) -> ResolvedModel:
    """Check ``model`` from the driver; where it cannot be found, the fallback if allowed.

    ``local``: the workers share this machine's disk and network (the in-process runners,
    portable LOOPBACK). Elsewhere a folder may exist only in the worker image and the Hub may be
    reachable only from the workers, so only what is certainly wrong fails here, and the
    fallback is never used.
    """
    chosen = ResolvedModel(model, model)
    if chosen.kind == "bucket":
        check_bucket(model, what)
        return chosen
    if chosen.kind == "path":
        if os.path.isdir(model) or not local:
            return chosen
        reason = f"{model} is not a folder"
    else:
        reason = hub_problem(model)
        if reason is None or (not local and reason.endswith("cannot be reached")):
            return chosen
    if fallback != "tiny_random" or not local:
        raise RuntimeError(f"{what} model cannot be loaded: {reason}. Download it, give a local path "
                           f"in {what}.model, or set {what}.enabled=false")
    log.warning("=" * 78)
    log.warning("%s FALLBACK: %s.", what.upper(), reason)
    log.warning("Using a TINY RANDOM-WEIGHTS model of the same architecture: its outputs are noise.")
    log.warning("This is for the offline demo only; it is recorded in stats.json.")
    log.warning("=" * 78)
    return ResolvedModel(model, "", fallback=True, reason=reason)


def hub_problem(model: str) -> str | None:
    """Why the Hub id ``model`` cannot be loaded from here, or None when it can."""
    from huggingface_hub import model_info, snapshot_download

    try:
        snapshot_download(model, local_files_only=True)
        return None
    except Exception as err:  # noqa: BLE001 - any cache miss means: look further
        reason = f"{model} is not in the local Hugging Face cache ({type(err).__name__})"
    if not hub_reachable():
        return reason + " and the Hub cannot be reached"
    try:
        model_info(model)  # exists and is readable with this environment's token
        return None
    except Exception as err:  # noqa: BLE001
        return reason + f" and the Hub does not serve it ({type(err).__name__})"


def check_bucket(url: str, what: str) -> None:
    """The bucket folder lists at least one file (a filesystem this machine cannot use fails too)."""
    try:
        found = bucket_files(url)
    except Exception as err:  # noqa: BLE001 - missing filesystem extra, credentials, ...
        raise RuntimeError(f"{what}.model: cannot list {url}: {err}".replace("\n", " ")) from None
    if not found:
        raise RuntimeError(f"{what}.model: {url} holds no files")


# --- worker side: find the model, load it ------------------------------------------------

@contextlib.contextmanager
def open_model(model: ResolvedModel, build_tiny: Callable[[str], str]) -> Iterator[tuple[str, str]]:
    """On the worker: (local folder holding the model, its identity for cache keys).

    The identity is what decides the model's outputs: ``id@revision`` for a Hub model, the
    folder and its files' names and sizes for a local folder or a bucket copy, and for the tiny
    fallback its weights' bytes (same seed, same weights), never sharing a key with the model
    it stands in for. A fallback folder lasts only while the model is loaded.
    """
    if model.kind == "tiny_random":
        folder = tempfile.mkdtemp(prefix="groundcot-tiny-")
        try:
            build_tiny(folder)
            yield folder, f"tiny_random:{model.requested}:{fingerprint(folder, contents=True)}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    elif model.kind == "bucket":
        yield copy_bucket(model.load_from, model_cache_root())
    elif model.kind == "path":
        folder = os.path.abspath(os.path.expanduser(model.load_from))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"model folder {model.load_from} is not on this worker")
        yield folder, f"{folder}:{fingerprint(folder)}"
    else:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(model.load_from, ignore_patterns=IGNORED)  # the worker's HF cache first
        yield folder, f"{model.load_from}@{os.path.basename(folder)}"


def model_cache_root() -> str:
    """Where a worker keeps bucket copies: ``GROUNDCOT_MODEL_CACHE``, else its temp folder."""
    return os.environ.get("GROUNDCOT_MODEL_CACHE") or os.path.join(tempfile.gettempdir(), "groundcot-models")


def bucket_files(url: str) -> list[tuple[str, int]]:
    """(path relative to ``url``, size) of every file under the bucket folder ``url``."""
    from apache_beam.io.filesystems import FileSystems

    base = url.rstrip("/")
    found = FileSystems.match([f"{base}/**"])[0].metadata_list
    return sorted((m.path[len(base) + 1:], m.size_in_bytes) for m in found if m.path.startswith(base + "/"))


def copy_bucket(url: str, root: str) -> tuple[str, str]:
    """Copy the folder ``url`` into ``root`` once per worker; (local folder, identity).

    The copy's name holds the listing's digest, so a changed bucket folder is copied anew. It is
    written under a temporary name and renamed, so processes copying at once never see a half
    copy: the first rename wins and the others drop theirs.
    """
    from apache_beam.io.filesystems import FileSystems

    files = bucket_files(url)
    if not files:
        raise FileNotFoundError(f"{url} holds no files")
    digest = listing_digest(files)
    name = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:12]
    final = os.path.join(root, f"{name}-{digest}")
    if not os.path.isdir(final):
        os.makedirs(root, exist_ok=True)
        tmp = os.path.join(root, f".tmp-{uuid.uuid4().hex}")
        try:
            for rel, _ in files:
                target = os.path.join(tmp, *rel.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with FileSystems.open(f"{url.rstrip('/')}/{rel}") as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            try:
                os.rename(tmp, final)
                log.info("copied model %s to %s", url, final)
            except OSError:  # another process of this worker finished first
                if not os.path.isdir(final):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final, f"{url.rstrip('/')}:{digest}"


def device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
