"""One content-addressed cache for model outputs and teacher replies (``cache:`` in the job config).

Entries live under a local folder or a bucket prefix, one file per key (``<root>/<stage>/ab/abcd...``):
depth maps as their 16-bit PNG bytes, masks and teacher replies as JSON. A key is the sha256 of
everything that decides the entry (stage, model identity, input bytes), so a killed, repeated or
extended run finds what is done and computes only the rest. Writes go to a temporary name and are
renamed, so a reader never sees half an entry; an unreadable entry is a miss and is rewritten.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("groundcot")


def content_key(*parts: bytes | str) -> str:
    """sha256 over the parts, each length-prefixed so that no two part lists collide.

    >>> content_key("depth", b"x") == content_key("dep", b"thx")
    False
    """
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def json_key(payload: dict) -> str:
    """sha256 of ``payload`` as canonical JSON (the teacher's key: model, messages, parameters)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def files():
    """Beam's FileSystems (local folders and buckets), imported on first use: the trainer and verl's
    reward import the teacher's modules, and with them this one, without running a Beam job."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


class Cache:
    """``get``/``put`` JSON values and ``get_bytes``/``put_bytes`` blobs by key under ``root``.

    With no root every lookup misses and nothing is stored.
    """

    def __init__(self, root: str | None):
        if root and "://" not in root:
            root = os.path.abspath(root)  # resolved where the job is built, not on each worker
        self.root = root.rstrip("/") if root else None

    def sub(self, name: str) -> Cache:
        return Cache(f"{self.root}/{name}" if self.root else None)

    def _path(self, key: str, ext: str) -> str:
        return f"{self.root}/{key[:2]}/{key}{ext}"

    def get_bytes(self, key: str, ext: str = ".bin") -> bytes | None:
        if not self.root:
            return None
        path, fs = self._path(key, ext), files()
        try:
            if not fs.exists(path):
                return None
            with fs.open(path) as handle:
                return handle.read()
        except OSError:  # unreadable entry: a miss, rewritten after the recomputation
            return None

    def put_bytes(self, key: str, data: bytes, ext: str = ".bin") -> None:
        if not self.root:
            return
        path, fs = self._path(key, ext), files()
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with fs.create(tmp) as handle:
            handle.write(data)
        fs.rename([tmp], [path])  # readers never see a half-written entry

    def get(self, key: str) -> dict | list | None:
        data = self.get_bytes(key, ".json")
        try:
            return None if data is None else json.loads(data)
        except ValueError:
            return None

    def put(self, key: str, value: dict | list) -> None:
        self.put_bytes(key, json.dumps(value).encode(), ".json")


def teacher_cache_root(cache: str | None, teacher_cache: str | None) -> str | None:
    """The teacher's own ``cache`` if set, else the ``teacher`` folder of the job's ``cache``.

    >>> teacher_cache_root("gs://b/cache/", None), teacher_cache_root("c", "mine"), teacher_cache_root(None, None)
    ('gs://b/cache/teacher', 'mine', None)
    """
    if teacher_cache:
        return teacher_cache
    return f"{cache.rstrip('/')}/teacher" if cache else None


def with_teacher_cache(teacher_cfg, cache: str | None):
    """The teacher's config with its cache folder resolved by ``teacher_cache_root``."""
    if "cache" not in type(teacher_cfg).model_fields:  # a teacher that calls no one caches nothing
        return teacher_cfg
    return teacher_cfg.model_copy(update={"cache": teacher_cache_root(cache, teacher_cfg.cache)})


def cache_stats(counters: dict[str, int]) -> dict[str, dict[str, int]]:
    """``<stage>.cache_hits`` and ``<stage>.cache_misses`` counters (the teacher's too) as {stage: {hits, misses}}.

    >>> cache_stats({"depth.cache_hits": 3, "depth.cache_misses": 1, "teacher.cache_hits": 2, "depth.ok": 9})
    {'depth': {'hits': 3, 'misses': 1}, 'teacher': {'hits': 2, 'misses': 0}}
    """
    found: dict[str, dict[str, int]] = {}
    for name, n in counters.items():
        stage, _, outcome = name.rpartition(".")
        if stage and outcome in ("cache_hits", "cache_misses"):
            found.setdefault(stage, {"hits": 0, "misses": 0})[outcome.removeprefix("cache_")] += n
    return dict(sorted(found.items()))


class StageCache:
    """A model stage's cache: results found before the model runs, stored after, counted.

    ``encode``/``decode`` turn a record's result into the stored bytes and back.
    """

    def __init__(self, root: str | None, stage: str, ext: str,
                 encode: Callable[[object], bytes], decode: Callable[[bytes], object]):
        self.store, self.stage, self.ext = Cache(root).sub(stage), stage, ext
        self.encode, self.decode = encode, decode

    def lookup(self, items: Iterable[tuple[str, object]], assign: Callable[[object, object], None]) -> dict:
        """``(key, record)`` pairs -> the misses as {key: [records]}; hits get their result by ``assign``.

        Records sharing a key (the same image, say) are grouped, so the model runs once per key.
        """
        pairs = list(items)
        keys = list(dict.fromkeys(key for key, _ in pairs))
        found = dict(zip(keys, parallel(self._read, keys) if self.store.root else [None] * len(keys)))
        misses: dict[str, list] = {}
        hits = 0
        for key, record in pairs:
            if found[key] is None:
                misses.setdefault(key, []).append(record)
            else:
                assign(record, found[key])
                hits += 1
        if self.store.root:
            from apache_beam.metrics import Metrics  # a model stage runs in Beam: imported already

            from groundcot.transforms.stage import NAMESPACE

            Metrics.counter(NAMESPACE, f"{self.stage}.cache_hits").inc(hits)
            Metrics.counter(NAMESPACE, f"{self.stage}.cache_misses").inc(len(pairs) - hits)
        return misses

    def _read(self, key: str) -> object | None:
        try:
            data = self.store.get_bytes(key, self.ext)
            return None if data is None else self.decode(data)
        except Exception:  # noqa: BLE001 - a damaged or unreachable entry is a miss, recomputed and rewritten
            return None

    def save(self, results: list[tuple[str, object]]) -> None:
        """Store computed ``(key, result)`` pairs; a cache that cannot be written costs a warning, never a record."""
        if self.store.root:
            parallel(self._write, results)

    def _write(self, item: tuple[str, object]) -> None:
        key, value = item
        try:
            self.store.put_bytes(key, self.encode(value), self.ext)
        except Exception as err:  # noqa: BLE001
            log.warning("%s cache: cannot store %s: %s", self.stage, key, err)


def parallel(fn: Callable, items: list) -> list:
    """``fn`` over ``items`` on a few threads: bucket round trips overlap instead of adding up."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(fn, items))
