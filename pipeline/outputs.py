"""The output folder of a run: staged writes, an atomic publish, a manifest and a lock.

    OUT/_groundcot.json               manifest: the files the last published run wrote
    OUT/.groundcot.lock               held while a run is on (run id, pid, host, start)
    OUT/.groundcot-staging/<run_id>/  where a run writes until it publishes

A run writes only into its staging folder. At the end it moves its files into OUT and removes
the files the previous manifest listed that it did not write again. While it does, the manifest
says ``"state": "publishing"``: readers wait for ``published`` and repeat a read that a publish
overlapped (schemas/runs.py ``consistent``), so they see one run whole. Only files a manifest lists
are ever replaced or removed; anything else under OUT is left alone. Everything goes through
Beam's ``FileSystems``, so OUT may be a bucket prefix. The lock is exclusive on local disk
(``O_EXCL``); on a bucket it is check-then-write, best effort.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
import uuid
from datetime import datetime, timezone

from apache_beam.io.filesystems import FileSystems

from groundcot.schemas.runs import MANIFEST

log = logging.getLogger("groundcot")
LOCK, STAGING = ".groundcot.lock", ".groundcot-staging"
OWN = {MANIFEST, LOCK, STAGING, f"{MANIFEST}.tmp"}
TOP_FILES = ("README.md", "stats.json")  # files every run writes at OUT's top (the card, the counts)
UNREADABLE_LOCK_GRACE_S = 30  # a lock file still empty after this long was left by a killed run


class OutputRefused(RuntimeError):
    """OUT cannot be used by this run; one line saying why and what to do."""


class DiskFull(RuntimeError):
    """A disk filled while the run wrote; one line naming where."""


FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


def disk_full(err: BaseException, out: str) -> str | None:
    """The line for a failure that filled a disk (``OUT: no space left on device``), else None.

    Seen in the error, in what it wraps (Beam raises a step's error again, augmented) or, from a worker
    process, in its text. Names the file when it is outside OUT, else OUT (a run writes only there).
    """
    found, seen = err, set()
    while found is not None and id(found) not in seen:
        seen.add(id(found))
        if isinstance(found, OSError) and found.errno in FULL:
            name = str(found.filename or "")
            where = name if name and not name.startswith(f"{out}/") else out
            return f"{where}: {FULL[found.errno]}"
        found = found.__cause__ or found.__context__
    text = str(err)
    for number, words in FULL.items():
        if f"[Errno {number}]" in text or os.strerror(number) in text:
            return f"{out}: {words}"
    return None


def is_local(path: str) -> bool:
    return "://" not in path


def files_under(prefix: str) -> list[str]:
    """Every file under ``prefix``, as paths relative to it."""
    found = FileSystems.match([f"{prefix}/**"])[0].metadata_list
    return sorted(m.path[len(prefix) + 1:] for m in found)


def read_json(path: str) -> dict | None:
    """The JSON object in ``path``, or None when it is missing or not JSON."""
    try:
        with FileSystems.open(path) as handle:
            data = json.loads(handle.read().decode())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: str, data: dict) -> None:
    """Write ``data`` to a temporary file, then rename it into place."""
    tmp = f"{path}.tmp"
    with FileSystems.create(tmp) as handle:
        handle.write(json.dumps(data, indent=2).encode())
    FileSystems.rename([tmp], [path])


def delete(paths: list[str]) -> None:
    """Delete the files and folders among ``paths`` that exist."""
    found = [m.path for r in FileSystems.match(paths) for m in r.metadata_list]
    if found:
        FileSystems.delete(found)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


class OutputFolder:
    """``with OutputFolder(out, run_id) as staging: ...write under staging...; folder.publish()``.

    Entering checks that OUT is groundcot's (or ``overwrite``), takes the lock and removes the
    staging folders of runs that died. Leaving removes this run's staging folder (unless
    ``keep_staging`` was set) and releases the lock, whatever happened.
    """

    def __init__(self, out: str, run_id: str, overwrite: bool = False):
        self.out, self.run_id, self.overwrite = out.rstrip("/"), run_id, overwrite
        self.staging = f"{self.out}/{STAGING}/{run_id}"
        self.lock = f"{self.out}/{LOCK}"
        self.keep_staging = False

    def __enter__(self) -> str:
        self.refuse_foreign()
        self.take_lock()
        try:
            leftovers = [p for p in self._entries(f"{self.out}/{STAGING}") if p != self.run_id]
            if leftovers:
                log.info("removing the staging folders of runs that did not finish: %s", ", ".join(leftovers))
                delete([f"{self.out}/{STAGING}/{name}" for name in leftovers])
        except BaseException:
            self.release_lock()
            raise
        return self.staging

    def __exit__(self, *exc) -> None:
        try:
            if self.keep_staging:
                log.info("this run's outputs are kept in %s", self.staging)
            else:
                delete([self.staging])
                parent = f"{self.out}/{STAGING}"
                if is_local(parent) and os.path.isdir(parent) and not os.listdir(parent):
                    os.rmdir(parent)
        finally:
            self.release_lock()

    def _entries(self, folder: str) -> list[str]:
        """The names directly under ``folder``."""
        if is_local(folder):
            return sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        return sorted({path.split("/")[0] for path in files_under(folder)})

    def refuse_foreign(self) -> None:
        """A non-empty OUT without a manifest was not written by groundcot: refuse unless told."""
        if read_json(f"{self.out}/{MANIFEST}") is not None:
            return
        foreign = [name for name in self._entries(self.out) if name not in OWN]
        if foreign and not self.overwrite:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise OutputRefused(f"{self.out} is not empty ({shown}) and no groundcot run wrote it (no {MANIFEST}); "
                                "choose another --out, or pass --overwrite to write groundcot's files there "
                                "(data/, rejected/, stats.json, README.md, figures/), leaving the rest alone")
        clash = [name for name in foreign if name in TOP_FILES]
        if clash:
            raise OutputRefused(f"{self.out} holds {' and '.join(clash)}, which no groundcot run wrote and this run "
                                "would replace; --overwrite leaves other files alone, so move it or choose another --out")
        if foreign:
            log.warning("--overwrite: writing groundcot's files into %s, which holds other files", self.out)

    def take_lock(self) -> None:
        me = {"run_id": self.run_id, "pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        for _ in range(3):
            if self._create_lock(me):
                return
            other = read_json(self.lock)
            if not self._stale(other):
                who = (f"run {other['run_id']} (pid {other.get('pid')} on {other.get('host')}, started "
                       f"{other.get('started')})") if other else "another run"
                raise OutputRefused(f"{self.out} is in use by {who}; wait for it to finish, or remove "
                                    f"{self.lock} if that run is gone")
            log.warning("taking over the lock on %s: run %s (pid %s) is gone", self.out,
                        (other or {}).get("run_id"), (other or {}).get("pid"))
            self._remove_stale_lock(other)
        raise OutputRefused(f"{self.out}: could not take {self.lock}; another run is starting there")

    def _create_lock(self, me: dict) -> bool:
        """Create the lock file only if it does not exist."""
        data = json.dumps(me).encode()
        if is_local(self.lock):
            os.makedirs(self.out, exist_ok=True)
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            return True
        if FileSystems.exists(self.lock):  # buckets: check, write, read back (best effort)
            return False
        with FileSystems.create(self.lock) as handle:
            handle.write(data)
        return (read_json(self.lock) or {}).get("run_id") == self.run_id

    def _stale(self, other: dict | None) -> bool:
        """Left by a process of this host that no longer runs (or an unreadable file, if old)."""
        if other is None:
            try:
                mtime = FileSystems.match([self.lock])[0].metadata_list[0].last_updated_in_seconds
            except (IndexError, OSError):
                return True  # gone meanwhile
            return time.time() - mtime > UNREADABLE_LOCK_GRACE_S
        return other.get("host") == socket.gethostname() and not pid_alive(int(other.get("pid", 0)))

    def _remove_stale_lock(self, stale: dict | None) -> None:
        """Remove the lock only if it is still the stale one (another run may have taken it over)."""
        if not is_local(self.lock):
            delete([self.lock])
            return
        aside = f"{self.lock}.{uuid.uuid4().hex}"
        try:
            os.rename(self.lock, aside)
        except FileNotFoundError:
            return
        if read_json(aside) != stale:
            try:
                os.link(aside, self.lock)  # not ours to remove: put it back unless a new one is there
            except FileExistsError:
                pass
        os.remove(aside)

    def release_lock(self) -> None:
        if (read_json(self.lock) or {}).get("run_id") == self.run_id:
            delete([self.lock])

    def publish(self, skip: tuple[str, ...] = ("_counts/",)) -> list[str]:
        """Move this run's files from staging into OUT, then remove the previous run's other files.

        The manifest lists both sets while files move, so a publish cut short leaves no file that
        a later run would not know as groundcot's.
        """
        new = [p for p in files_under(self.staging)
               if not p.startswith(skip) and "beam-temp-" not in p]
        old = (read_json(f"{self.out}/{MANIFEST}") or {}).get("files", [])
        known = set(old)
        clash = [p for p in new if p not in known and FileSystems.exists(f"{self.out}/{p}")]
        if clash:  # a file groundcot did not write is never replaced; this run stays in staging
            self.keep_staging = True
            raise OutputRefused(f"{self.out}/{clash[0]} exists and no groundcot run wrote it; this run's files stay "
                                f"in {self.staging}: move that file away and run again")
        manifest = {"written_by": "groundcot", "run_id": self.run_id, "state": "publishing",
                    "files": sorted(set(old) | set(new))}
        write_json(f"{self.out}/{MANIFEST}", manifest)
        for path in new:
            if is_local(self.out):
                os.makedirs(os.path.dirname(f"{self.out}/{path}"), exist_ok=True)
        FileSystems.rename([f"{self.staging}/{p}" for p in new], [f"{self.out}/{p}" for p in new])
        delete([f"{self.out}/{p}" for p in sorted(set(old) - set(new))])
        manifest.update(state="published", files=new,
                        published=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        write_json(f"{self.out}/{MANIFEST}", manifest)
        return new
