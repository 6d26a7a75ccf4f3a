"""Teacher replies cached by a hash of everything that decides them.

Keyed by sha256 of (model, messages with their images, parameters), stored as one JSON
file per call under a local folder or a bucket prefix, so re-runs and resumed runs never
pay twice for the same call.
"""
from __future__ import annotations

import hashlib
import json

from apache_beam.io.filesystems import FileSystems


def cache_key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ResponseCache:
    def __init__(self, root: str | None):
        self.root = root.rstrip("/") if root else None

    def _path(self, key: str) -> str:
        return f"{self.root}/{key[:2]}/{key}.json"

    def get(self, key: str) -> dict | None:
        if not self.root:
            return None
        path = self._path(key)
        try:
            if not FileSystems.exists(path):
                return None
            with FileSystems.open(path) as handle:
                return json.loads(handle.read())
        except (OSError, ValueError):  # unreadable entry: treat as a miss, it is rewritten
            return None

    def put(self, key: str, value: dict) -> None:
        if not self.root:
            return
        path, tmp = self._path(key), f"{self._path(key)}.tmp-{id(value)}"
        with FileSystems.create(tmp) as handle:
            handle.write(json.dumps(value).encode())
        FileSystems.rename([tmp], [path])  # readers never see a half-written entry
