"""Cooperative, crash-safe claims on jobs and pretrainings.

Any number of ``run`` processes (or Dask workers, on one machine or many sharing a filesystem)
may point at the same results folder and cache. Before a worker runs a job (or a pretraining) it
*claims* it: under a short ``filelock.FileLock`` it reads the claim's lease file, and takes the
claim only if there is none, the lease has expired, or the lease is its own. The lease records
the owner (host, pid, a random token) and an expiry time; while the work runs a heartbeat thread
renews it every ``ttl / 4`` seconds. A worker that dies (``kill -9``, a lost node) stops renewing,
its lease expires after ``ttl`` seconds and another worker takes the work over -- a pretraining
then resumes from the dead worker's last epoch checkpoint. A finished job is recognised by its
rows file (``ResultStore.job_done``), a finished pretraining by its verified ``model.pt``, so a
claim is only ever about work in progress; it is released (its lease file deleted) when the work
ends, also when it fails.

A worker that finds work claimed by someone else does not wait: it moves on to other work and
comes back later. Never a bare "file exists" check: the lease is read and written under the lock,
and an expired lease is taken over atomically.

Clocks: expiry compares wall-clock times, so the machines sharing a folder need roughly
synchronised clocks (NTP); the TTL (``lease_seconds``, default 120 s) bounds how long a crashed
worker's work waits. ``filelock`` uses ``fcntl`` locks, which NFSv4 and Lustre support; on a
filesystem without working locks keep one scheduler (``--workers``) per folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from filelock import FileLock

from benchmark.io import atomic_write_text

log = logging.getLogger("benchmark.claims")

DEFAULT_TTL = 120.0
_OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_id() -> str:
    """This process's identity in lease files (recomputed after a fork)."""
    global _OWNER
    host, pid, token = _OWNER.rsplit(":", 2)
    if int(pid) != os.getpid():
        _OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return _OWNER


class Claim:
    """A held lease on one piece of work; renew it with a heartbeat, release it when done."""

    def __init__(self, folder: Path, key: str, ttl: float, what: str):
        self.folder, self.key, self.ttl, self.what = folder, key, float(ttl), what
        self.lease = folder / f"{key}.lease"
        self.lockfile = folder / f"{key}.lock"
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lease file under the lock ----------------------------------------------------------
    def _lock(self):
        return FileLock(str(self.lockfile), timeout=max(30.0, self.ttl))

    def _read(self) -> dict | None:
        try:
            return json.loads(self.lease.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"owner": "?", "expires": 0.0}  # unreadable lease: treat as expired

    def _write(self, now: float) -> None:
        rec = {"owner": owner_id(), "what": self.what, "expires": now + self.ttl, "renewed": now, "ttl": self.ttl}
        atomic_write_text(json.dumps(rec), self.lease)

    def acquire(self) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock():
            now = time.time()
            cur = self._read()
            if cur is not None and cur.get("owner") != owner_id() and float(cur.get("expires", 0)) > now:
                return False
            if cur is not None and cur.get("owner") != owner_id():
                log.warning("%s: the lease of %s expired %.0f s ago (worker gone?): taking it over",
                            self.what, cur.get("owner"), now - float(cur.get("expires", 0)))
            self._write(now)
        return True

    def renew(self) -> bool:
        with self._lock():
            cur = self._read()
            if cur is None or cur.get("owner") != owner_id():
                self.lost = True  # taken over after we stalled longer than the TTL
                return False
            self._write(time.time())
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError), self._lock():
            cur = self._read()
            if cur is not None and cur.get("owner") == owner_id():
                self.lease.unlink(missing_ok=True)

    # -- heartbeat --------------------------------------------------------------------------
    def start_heartbeat(self) -> "Claim":
        def beat():
            while not self._stop.wait(self.ttl / 4):
                try:
                    if not self.renew():
                        log.warning("%s: lease lost to another worker", self.what)
                        return
                except Exception as exc:  # a full disk must not kill the job; the lease may lapse
                    log.warning("%s: could not renew the lease (%s)", self.what, exc)

        self._thread = threading.Thread(target=beat, name=f"lease-{self.key}", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Claims:
    """Claims kept in one folder (``<out>/.claims`` for jobs, ``<cache>/pretrained/<h>`` for a
    pretraining)."""

    def __init__(self, folder: str | os.PathLike, ttl: float = DEFAULT_TTL):
        self.folder = Path(folder)
        self.ttl = float(ttl)

    def try_claim(self, key: str, what: str = "") -> Claim | None:
        """The claim on ``key`` with its heartbeat running, or None if another live worker holds it."""
        claim = Claim(self.folder, key, self.ttl, what or key)
        if not claim.acquire():
            return None
        return claim.start_heartbeat()

    def holder(self, key: str) -> dict | None:
        """The live lease on ``key`` (None if free or expired)."""
        cur = Claim(self.folder, key, self.ttl, key)._read()
        if cur is None or float(cur.get("expires", 0)) <= time.time():
            return None
        return cur


class Busy(Exception):
    """Work another live worker holds a claim on (the caller picks other work and retries)."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


__all__ = ["Claims", "Claim", "Busy", "owner_id", "DEFAULT_TTL"]
