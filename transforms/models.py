"""Finding a model for a stage, on the driver: a local path, the HF cache, or the Hub.

Only a demo config may fall back to a tiny random model of the same architecture; the
fallback is logged loudly and recorded in stats.json.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlparse

log = logging.getLogger("groundcot")


@dataclass
class ResolvedModel:
    """What the workers load: a hub id or a local path, and whether it is the fallback."""

    requested: str
    load_from: str
    local_files_only: bool = False
    fallback: bool = False
    reason: str = ""
    revision: str = ""  # the Hub snapshot's commit, when known

    def identity(self) -> str:
        """What decides this model's outputs, for cache keys: id@revision, or a local folder and its files.

        The tiny random fallback is keyed by its files' contents (same seed, same weights), never
        by its temporary folder, and never shares a key with the model it stands in for.
        """
        if self.fallback:
            return f"tiny_random:{self.requested}:{fingerprint(self.load_from, contents=True)}"
        if os.path.isdir(self.load_from):
            return f"{os.path.abspath(self.load_from)}:{fingerprint(self.load_from)}"
        return f"{self.requested}@{self.revision}" if self.revision else self.requested


def fingerprint(folder: str, contents: bool = False) -> str:
    """sha256 over a model folder's file names and sizes (and bytes, with ``contents``)."""
    paths = []
    for base, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        paths += [os.path.join(base, f) for f in files if not f.startswith(".")]
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(f"{os.path.relpath(path, folder)}\0{os.path.getsize(path)}\0".encode())
        if contents:
            with open(path, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
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


def resolve_model(model: str, fallback: str | None, build_tiny: Callable[[str], str], what: str) -> ResolvedModel:
    """Find ``model`` (local path, HF cache, or the Hub); else fall back if allowed."""
    if os.path.isdir(model):
        return ResolvedModel(model, model)
    from huggingface_hub import model_info, snapshot_download

    try:
        snapshot = snapshot_download(model, local_files_only=True)
        return ResolvedModel(model, model, local_files_only=True, revision=os.path.basename(snapshot))
    except Exception as err:  # noqa: BLE001 - any cache miss means: look further
        reason = f"{model} is not in the local Hugging Face cache ({type(err).__name__})"
    if not hub_reachable():
        reason += " and the Hub cannot be reached"
    else:
        try:
            info = model_info(model)  # exists and is readable with this environment's token
            return ResolvedModel(model, model, revision=info.sha or "")
        except Exception as err:  # noqa: BLE001
            reason += f" and the Hub does not serve it ({type(err).__name__})"
    if fallback != "tiny_random":
        raise RuntimeError(f"{what} model cannot be loaded: {reason}. Download it, give a local path "
                           f"in {what}.model, or set {what}.enabled=false")
    path = build_tiny(tempfile.mkdtemp(prefix=f"groundcot-{what}-"))
    log.warning("=" * 78)
    log.warning("%s FALLBACK: %s.", what.upper(), reason)
    log.warning("Using a TINY RANDOM-WEIGHTS model of the same architecture: its outputs are noise.")
    log.warning("This is for the offline demo only; it is recorded in stats.json.")
    log.warning("=" * 78)
    return ResolvedModel(model, path, fallback=True, reason=reason)


def device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
