"""The frozen language model runs once per unique text, ever.

:class:`CachedTextEncoder` wraps a :class:`~methods.text_encoders.TextEncoder`. ``encode(texts)``

1. deduplicates the texts (PTB-XL's ~21,800 reports hold a few thousand distinct strings);
2. looks each unique text up in an in-process dict, then in an on-disk SQLite table keyed by
   ``(encoder.identity(), sha256(text))``;
3. runs the model only on the texts found nowhere, stores their vectors, and
4. returns one row per input text, in input order.

The identity holds the model name, a fingerprint of its weights (and tokenizer), the pooling and
the maximum length (for tfidf: the fitted vocabulary, idf and SVD), so a different LM, pooling,
truncation or fit never hits a stale entry. The exact text is hashed: no normalisation.

Storage: one SQLite file ``<cache>/text-embeddings/embeddings.sqlite`` with one table
``embeddings(identity, text_hash, dim, vec, digest)`` where ``vec`` is the float32 vector's bytes
and ``digest`` a 128-bit BLAKE2b of ``identity, text_hash, vec`` (so a flipped bit in a stored
vector, which SQLite's own page checks do not see, is caught; a database from before the digest
column is upgraded in place and its rows, having no digest, are recomputed once).
SQLite in WAL mode makes concurrent readers and writers in several processes safe; every write
is one transaction (``INSERT OR REPLACE`` on the primary key), so a crash never leaves a
half-written vector and two processes that compute the same text concurrently store it once. On a network file system where
WAL is unavailable SQLite falls back to its rollback journal (still atomic, slower under
contention); putting the cache on a local disk is best.

Healing: a damaged database (SQLite reports it corrupt or not a database) is a cache miss: it is
moved aside as ``embeddings.sqlite.corrupt-<time>`` with one warning line and a fresh one is
started (texts are embedded again on demand). A row whose vector has the wrong size or is not
finite, or whose digest does not match, is a miss for that text (counted in ``damaged`` and
named in one warning line per call) and is overwritten with a fresh vector. Disk full / read-only / permission errors are one-line errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.errors import UserError
from benchmark.io import quarantine
from benchmark.paths import resolve_cache_dir, text_cache_dir
from benchmark.registry import TEXT_ENCODERS, parse_spec

from methods.text_encoders import TextEncoder

DB_NAME = "embeddings.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    identity  TEXT    NOT NULL,
    text_hash TEXT    NOT NULL,
    dim       INTEGER NOT NULL,
    vec       BLOB    NOT NULL,
    digest    BLOB,
    PRIMARY KEY (identity, text_hash)
) WITHOUT ROWID
"""
_CHUNK = 500  # host parameters per SELECT (SQLite's limit is 999 on old builds)
log = logging.getLogger("benchmark.cache")


def text_hash(text: str) -> str:
    """Cache key of one text: sha256 of its exact UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def row_digest(identity: str, text_key: str, vec: bytes) -> bytes:
    """Checksum of one stored row: 128-bit BLAKE2b over its key and the vector's bytes."""
    h = hashlib.blake2b(digest_size=16)
    for part in (identity.encode("utf-8"), text_key.encode("ascii"), vec):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


class CachedTextEncoder:
    """A text encoder behind a two-level (memory, SQLite) embedding cache.

    ``hits`` counts unique texts served from memory or disk (``memory_hits`` + ``disk_hits``),
    ``misses`` unique texts that had to go through the model, both summed over all ``encode``
    calls. ``encoder.calls`` counts texts the model really saw.
    """

    def __init__(self, encoder: TextEncoder, cache_dir: str | os.PathLike | None = None) -> None:
        self.encoder = encoder
        self.db_path = text_cache_dir(resolve_cache_dir(cache_dir)) / DB_NAME
        self.memory_hits = 0
        self.disk_hits = 0
        self.misses = 0
        self.damaged = 0  # stored rows that failed their size/finite/digest check (recomputed)
        self._memory: dict[str, np.ndarray] = {}
        self._memory_identity: str | None = None
        self._identity: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._conn_pid: int | None = None

    # -- what callers read ------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def pooling(self) -> str:
        return self.encoder.pooling

    @property
    def requires_fit(self) -> bool:
        return self.encoder.requires_fit

    @property
    def hits(self) -> int:
        return self.memory_hits + self.disk_hits

    def identity(self) -> str:
        """The wrapped encoder's identity (memoised; recomputed after ``fit``)."""
        if self._identity is None:
            self._identity = self.encoder.identity()
        return self._identity

    def module(self):
        return self.encoder.module()

    def fit(self, texts: Sequence[str]) -> "CachedTextEncoder":
        """Fit the wrapped encoder (tfidf) on the training reports; its identity changes with the fit."""
        self.encoder.fit(texts)
        self._identity = None
        return self

    # -- SQLite ---------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        # A connection must not cross a fork: reopen in a child process (e.g. a DataLoader worker).
        if self._conn is None or self._conn_pid != os.getpid():
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.db_path, timeout=120.0, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
                cols = {r[1] for r in conn.execute("PRAGMA table_info(embeddings)")}
                if "digest" not in cols:  # a cache from before per-row digests: upgrade in place
                    try:
                        conn.execute("ALTER TABLE embeddings ADD COLUMN digest BLOB")
                    except sqlite3.OperationalError as exc:  # another process just did it
                        if "duplicate column" not in str(exc):
                            raise
            except BaseException:
                conn.close()
                raise
            self._conn, self._conn_pid = conn, os.getpid()
        return self._conn

    def _with_db(self, action):
        """Run ``action(connection)``; a damaged database (SQLITE_CORRUPT / NOTADB) is a cache miss:
        it is moved aside with a warning and ``action`` runs once more on a fresh one. Other
        SQLite errors (disk full, read-only folder, locked) are one-line ``UserError`` s."""
        for attempt in (0, 1):
            try:
                return action(self._db())
            except sqlite3.DatabaseError as exc:
                code = getattr(exc, "sqlite_errorname", "")
                damaged = code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or (
                    not code and any(m in str(exc) for m in ("malformed", "not a database")))
                if not damaged or attempt:
                    raise self._error(exc) from exc
                self._heal(str(exc))
        raise AssertionError("unreachable")

    def _heal(self, reason: str) -> None:
        self.close()
        dest = quarantine(self.db_path, reason)
        for suffix in ("-wal", "-shm"):  # the journal of the damaged file belongs with it
            side = self.db_path.with_name(self.db_path.name + suffix)
            if side.exists():
                if dest is not None:
                    os.replace(side, dest.with_name(dest.name + suffix))
                else:
                    side.unlink(missing_ok=True)

    def _error(self, exc: Exception) -> UserError:
        code = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
        hint = {
            "SQLITE_FULL": "the disk is full: free space (or move the cache with --cache-dir / ECGBENCH_CACHE_DIR) and re-run",
            "SQLITE_READONLY": "the folder is read-only: fix its permissions or use another --cache-dir",
            "SQLITE_CANTOPEN": "it cannot be opened: check the folder exists and is writable, or use another --cache-dir",
            "SQLITE_PERM": "permission denied: fix its permissions or use another --cache-dir",
            "SQLITE_BUSY": "another process holds it locked too long: re-run",
        }
        what = next((h for k, h in hint.items() if code.startswith(k)), "delete it (it is rebuilt on demand)")
        return UserError(f"text embedding cache '{self.db_path}': {exc} [{code}]: {what}")

    def _load(self, identity: str, hashes: list[str]) -> dict[str, np.ndarray]:
        dim = self.encoder.dim

        def load(db):
            found: dict[str, np.ndarray] = {}
            bad = 0
            for s in range(0, len(hashes), _CHUNK):
                chunk = hashes[s : s + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT text_hash, dim, vec, digest FROM embeddings WHERE identity = ? AND text_hash IN ({marks})",
                    [identity, *chunk],
                ).fetchall()
                for h, d, blob, digest in rows:
                    if digest is None:  # written before digests existed: recompute, not damaged
                        continue
                    ok = (d == dim and isinstance(blob, bytes) and len(blob) == 4 * dim
                          and digest == row_digest(identity, h, blob))
                    v = np.frombuffer(blob, dtype=np.float32).copy() if ok else None
                    if v is not None and np.isfinite(v).all():
                        found[h] = v
                    else:
                        bad += 1
            return found, bad

        found, bad = self._with_db(load)
        if bad:
            self.damaged += bad
            log.warning("text embedding cache '%s': %d damaged row(s) (size, NaN or checksum) ignored and recomputed",
                        self.db_path, bad)
        return found

    def _store(self, identity: str, items: list[tuple[str, np.ndarray]]) -> None:
        rows = []
        for h, v in items:
            blob = np.ascontiguousarray(v, dtype=np.float32).tobytes()
            rows.append((identity, h, int(v.shape[0]), blob, row_digest(identity, h, blob)))

        def store(db):
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO embeddings (identity, text_hash, dim, vec, digest) VALUES (?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise

        self._with_db(store)

    # -- the one thing it does ------------------------------------------------------------------
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """float32 ``[len(texts), dim]``, in input order; the model sees only never-seen texts."""
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"text encoders take strings, got {type(t).__name__}: {t!r}")
        identity = self.identity()  # raises for an unfitted tfidf
        dim = self.encoder.dim
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        if identity != self._memory_identity:
            self._memory, self._memory_identity = {}, identity

        unique = list(dict.fromkeys(texts))
        hashes = {t: text_hash(t) for t in unique}
        vectors: dict[str, np.ndarray] = {}
        todo = []
        for t in unique:
            v = self._memory.get(hashes[t])
            if v is None:
                todo.append(t)
            else:
                vectors[t] = v
        self.memory_hits += len(unique) - len(todo)

        if todo:
            on_disk = self._load(identity, [hashes[t] for t in todo])
            missing = []
            for t in todo:
                v = on_disk.get(hashes[t])
                if v is None:
                    missing.append(t)
                else:
                    vectors[t] = self._memory[hashes[t]] = v
            self.disk_hits += len(todo) - len(missing)
            if missing:
                computed = self.encoder.encode(missing, batch_size=batch_size)
                if not np.isfinite(computed).all():
                    bad = missing[int(np.flatnonzero(~np.isfinite(computed).all(axis=1))[0])]
                    raise RuntimeError(f"text encoder {self.name} produced NaN/inf for {bad!r}")
                items = [(hashes[t], computed[i]) for i, t in enumerate(missing)]
                self._store(identity, items)
                for t, (h, v) in zip(missing, items):
                    vectors[t] = self._memory[h] = v
                self.misses += len(missing)

        return np.stack([vectors[t] for t in texts]).astype(np.float32, copy=False)

    __call__ = encode

    def clear_memory(self) -> None:
        """Drop the in-process layer (the next call reads from disk)."""
        self._memory = {}

    def close(self) -> None:
        if self._conn is not None and self._conn_pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"CachedTextEncoder({self.encoder!r}, db={str(self.db_path)!r}, hits={self.hits}, misses={self.misses})"


def _factory_params(spec: str) -> set[str] | None:
    """Keyword settings the factory behind ``spec`` accepts (None: anything)."""
    name, _ = parse_spec(spec)
    if ":" in name and name.split(":", 1)[0] in TEXT_ENCODERS.prefixes():
        entry = TEXT_ENCODERS._prefixes[name.split(":", 1)[0]]
    else:
        entry = TEXT_ENCODERS.entry(name)
    return entry.accepted_params()


def create_text_encoder(
    spec: str,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    fit_texts: Sequence[str] | None = None,
) -> CachedTextEncoder:
    """Build a registered text encoder from its spec (``minilm``, ``tfidf[dim=128]``, ``hf:PATH``)
    and wrap it in the embedding cache under ``cache_dir``.

    ``device`` (and ``cache_dir``, for mpnet's unpacked model) are passed to factories that take
    them. An encoder that must be fitted (tfidf) is fitted on ``fit_texts`` (the *training*
    reports only) before anything is cached; without them call ``.fit(texts)`` yourself.
    """
    accepted = _factory_params(spec)
    extra = {}
    if accepted is None or "device" in accepted:
        extra["device"] = device
    if (accepted is None or "cache_dir" in accepted) and cache_dir is not None:
        extra["cache_dir"] = str(cache_dir)
    name, params = parse_spec(spec)
    extra = {k: v for k, v in extra.items() if k not in params}  # the spec's own settings win
    encoder = TEXT_ENCODERS.create(spec, **extra)
    cached = CachedTextEncoder(encoder, cache_dir)
    if fit_texts is not None:
        cached.fit(fit_texts)
    return cached


__all__ = ["CachedTextEncoder", "create_text_encoder", "text_hash", "row_digest", "DB_NAME"]
