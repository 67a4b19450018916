"""The prepared store: each dataset converted once into memory-mapped arrays plus a Parquet table.

Reading thousands of WFDB records per epoch is slow, so ``prepare`` converts a dataset once and
later calls open the result in well under a second.

Layout of one store, ``benchmark.paths.store_dir(cache_dir, dataset, key)``::

    signals.npy         float32 [N, L, T] (mV, stored leads only), opened with mmap_mode='r'
    meta.parquet        one row per stored example (the dataset's metadata columns)
    rows.npy            int64 positions of the rows kept (rows whose signal failed are left out)
    labels/<task>.npy   uint8 [N, C] multi-hot per task
    stats.npz           per-lead mean/std over the *training split* (kept rows), std >= STD_FLOOR
    manifest.json       dataset, params, leads, tasks, skipped records, scan info, key, source
                        fingerprint summary, format version; written LAST

Cache key: sha256 over (format version, dataset name and loader version, every preprocessing
parameter ``PrepareParams.to_dict()``, the source fingerprint). The fingerprint covers each file
the dataset lists in ``source_files``: small metadata files (``.csv``, ``.tsv``, ``.txt``,
``.json`` and WFDB annotation files) by a sha256 of their content, because they are cheap to hash
and an edit of a label table must never go unnoticed; signal and header files (``.dat``,
``.mat``, ``.hea``, ``.edf``) by (relative path, size, mtime_ns), because hashing gigabytes on
every call would make the fast path slow, and a re-downloaded or modified record changes its
size or mtime. A changed parameter or file gives a new key, hence a new store; old stores stay
until ``prepare(..., rebuild=True)`` or ``remove_stale``.

Atomicity: a store is built in a temporary sibling folder (``.<name>.tmp-<pid>-<rand>@<host>``),
``manifest.json`` is written last, then the folder is renamed into place. A folder without
``manifest.json`` is never trusted (it is removed and rebuilt). If two processes build the same
store, the first rename wins and the other discards its own copy.

Bad records: a group whose ``read_group`` raises ``DataError``, returns a wrong shape, or rows
with NaN/inf or a flat signal (every stored lead constant) are skipped and listed in
``manifest['skipped']``; with ``strict=True`` the first one stops the build with its one-line
error.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.data.base import SPLITS, ECGSet, PrepareParams, TaskSpec
from benchmark.errors import DataError, UserError, unknown_name
from benchmark.io import quarantine
from benchmark.paths import resolve_cache_dir, resolve_data_root, store_dir, touch, tree_size

FORMAT_VERSION = 1
STD_FLOOR = 1e-3
CONTENT_HASH_MAX_BYTES = 64 * 1024 * 1024
STAT_SUFFIXES = {".dat", ".mat", ".hea", ".edf", ".npy"}
MANIFEST = "manifest.json"


# -- dataset lookup ---------------------------------------------------------------------------
def dataset_class(name: str):
    """The registered dataset class for ``name`` (UserError with suggestions if unknown)."""
    from benchmark.data.datasets import canonical_dataset  # (importing it registers the built-ins)
    from benchmark.registry import DATASETS

    return DATASETS.entry(canonical_dataset(name)).factory


def make_params(cls, fs: int, window_s: float, options: dict[str, Any]) -> PrepareParams:
    """Validate dataset options against ``cls.default_options`` and merge the defaults in."""
    defaults = dict(getattr(cls, "default_options", {}) or {})
    for key in options:
        if key not in defaults:
            raise unknown_name(f"option of dataset '{getattr(cls, '__name__', cls)}'", key, defaults)
    merged = {**defaults, **{k: v for k, v in options.items() if v is not None}}
    if not (isinstance(fs, int) and fs > 0):
        raise UserError(f"sampling rate must be a positive integer in Hz, got {fs!r}")
    if not window_s > 0:
        raise UserError(f"window length must be positive seconds, got {window_s!r}")
    return PrepareParams(fs=int(fs), window_s=float(window_s), options=tuple(sorted(merged.items())))


# -- fingerprint and key ------------------------------------------------------------------------
def _rel(path: Path, root: Path) -> str:
    """Path relative to the dataset root (cheap: no resolve() for the usual root/... paths)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        pass
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return f"<{path.parent.name}>/{path.name}"


def fingerprint(files, root: Path) -> dict:
    """Source fingerprint: content hashes of metadata files, (size, mtime_ns) of signal files."""
    h = hashlib.sha256()
    n_hashed = n_stat = n_missing = 0
    total = 0
    for rel, path in sorted({_rel(Path(f), root): Path(f) for f in files}.items()):
        try:
            st = path.stat()
        except OSError:
            h.update(f"{rel}\0missing\n".encode())
            n_missing += 1
            continue
        total += st.st_size
        if path.suffix.lower() in STAT_SUFFIXES or st.st_size > CONTENT_HASH_MAX_BYTES:
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            n_stat += 1
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            h.update(f"{rel}\0sha256:{digest}\n".encode())
            n_hashed += 1
    return {
        "digest": h.hexdigest(),
        "files": n_hashed + n_stat + n_missing,
        "content_hashed": n_hashed,
        "stat_only": n_stat,
        "missing": n_missing,
        "bytes": total,
    }


def cache_key(dataset: str, cls, params: PrepareParams, fp: dict) -> str:
    payload = {
        "format": FORMAT_VERSION,
        "dataset": dataset,
        "loader_version": str(getattr(cls, "version", "1")),
        "params": params.to_dict(),
        "sources": fp["digest"],
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- public API ---------------------------------------------------------------------------------
def prepare(
    dataset: str,
    data_root=None,
    cache_dir=None,
    *,
    fs: int = 100,
    window_s: float = 10.0,
    strict: bool = False,
    progress: bool = True,
    rebuild: bool = False,
    **options,
) -> ECGSet:
    """Prepared ``ECGSet`` of ``dataset``: opened from the cache when its key exists, else built.

    ``options`` are dataset-specific (``default_options`` of the dataset class); unknown ones are a
    ``UserError``. ``strict`` turns the first bad record into an error instead of a counted skip
    (also for a store built earlier without ``strict`` that contains skips). ``rebuild`` deletes the
    existing store of this key first.
    """
    from benchmark.data.datasets import canonical_dataset

    dataset = canonical_dataset(dataset)
    cls = dataset_class(dataset)
    params = make_params(cls, fs, window_s, options)
    data_root = resolve_data_root(data_root)
    cache = resolve_cache_dir(cache_dir)
    root = Path(cls.root(data_root, params))
    fp = fingerprint(cls.source_files(root, params), root)
    key = cache_key(dataset, cls, params, fp)
    path = store_dir(cache, dataset, key)

    if rebuild and path.exists():
        _remove(path)
    if path.exists() and not (path / MANIFEST).is_file():
        _remove(path)  # a store without manifest is never trusted
    if not path.exists():
        _build(dataset, cls, root, params, path, key, fp, strict=strict, progress=progress)
    else:
        touch(path / MANIFEST)  # `benchmark cache` ages stores by last use
    try:
        ds = open_store(path)
    except DataError as exc:  # a damaged store is a cache miss: move it aside, build it again
        quarantine(path, str(exc))
        if not path.exists():
            _build(dataset, cls, root, params, path, key, fp, strict=strict, progress=progress)
        ds = open_store(path)
    if strict and ds.manifest.get("skipped"):
        first = ds.manifest["skipped"][0]
        raise DataError(
            f"{dataset}: {len(ds.manifest['skipped'])} record(s) were skipped when this store was built, "
            f"e.g. {first.get('source') or first.get('id')}: {first['reason']} (re-run with --rebuild to retry)"
        )
    return ds


def locate(dataset: str, data_root=None, cache_dir=None, *, fs: int = 100, window_s: float = 10.0,
           **options) -> dict:
    """What ``prepare`` would use, without building or opening anything: the source folder, its
    records (header files listed by the dataset), files present/missing and their bytes, and
    the store path of these settings with whether it exists (complete) and its size. Reads
    file listings and metadata tables only (seconds), never a signal."""
    from benchmark.data.datasets import canonical_dataset

    dataset = canonical_dataset(dataset)
    cls = dataset_class(dataset)
    params = make_params(cls, fs, window_s, options)
    cache = resolve_cache_dir(cache_dir)
    root = Path(cls.root(resolve_data_root(data_root), params))
    files = [Path(f) for f in cls.source_files(root, params)]
    fp = fingerprint(files, root)
    path = store_dir(cache, dataset, cache_key(dataset, cls, params, fp))
    prepared = (path / MANIFEST).is_file()
    return {"dataset": dataset, "path": str(root), "records": sum(f.suffix == ".hea" for f in files),
            "files": fp["files"], "missing": fp["missing"], "bytes": fp["bytes"], "store": str(path),
            "prepared": prepared, "store_bytes": tree_size(path) if prepared else 0,
            "fs": params.fs, "window_s": params.window_s}


def open_store(path) -> ECGSet:
    """Open a complete store (``DataError`` if ``manifest.json`` is missing or a file is damaged)."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise DataError(f"'{path}' is not a complete prepared store (no {MANIFEST}): run 'data prepare --rebuild'")
    try:
        manifest = json.loads(mpath.read_text())
        signals = np.load(path / "signals.npy", mmap_mode="r")
        meta_all = pd.read_parquet(path / "meta.parquet")
        rows = np.load(path / "rows.npy")
        stats = np.load(path / "stats.npz")
        tasks = {
            name: TaskSpec(name, tuple(t["classes"]), bool(t["multilabel"]), t.get("description", ""))
            for name, t in manifest["tasks"].items()
        }
        labels_all = {name: np.load(path / "labels" / f"{name}.npy") for name in tasks}
        _check_consistent(manifest, signals, meta_all, rows, stats, labels_all)
        labels = {name: y[rows] for name, y in labels_all.items()}
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"prepared store '{path}' is damaged ({exc}): run 'data prepare --rebuild'") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise DataError(f"prepared store '{path}' has format {manifest.get('format')}, expected {FORMAT_VERSION}")
    return ECGSet(
        name=manifest["dataset"],
        path=path,
        signals=signals,
        rows=rows,
        meta=meta_all.iloc[rows],
        leads=tuple(manifest["leads"]),
        fs=int(manifest["params"]["fs"]),
        tasks=tasks,
        labels=labels,
        mean=stats["mean"],
        std=stats["std"],
        manifest=manifest,
    )


def _check_consistent(manifest, signals, meta_all, rows, stats, labels_all) -> None:
    """Shapes that must agree in a complete store (a truncated or swapped file fails here rather
    than giving wrong rows later). Raises ValueError."""
    n = len(meta_all)
    if signals.ndim != 3 or signals.shape[0] != n:
        raise ValueError(f"signals.npy has shape {signals.shape} for {n} metadata rows")
    if signals.shape[1] != len(manifest["leads"]):
        raise ValueError(f"signals.npy has {signals.shape[1]} leads, manifest lists {len(manifest['leads'])}")
    if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= n)):
        raise ValueError("rows.npy points outside the stored examples")
    if "records_kept" in manifest and len(rows) != int(manifest["records_kept"]):
        raise ValueError(f"rows.npy holds {len(rows)} rows, manifest says {manifest['records_kept']}")
    for name, y in labels_all.items():
        if y.shape != (n, len(manifest["tasks"][name]["classes"])):
            raise ValueError(f"labels/{name}.npy has shape {y.shape}")
    for k in ("mean", "std"):
        if stats[k].shape[-1] != signals.shape[1] or not np.isfinite(stats[k]).all():
            raise ValueError(f"stats.npz '{k}' is damaged")


def list_stores(cache_dir=None) -> list[dict]:
    """Complete stores under the cache dir: path, dataset, key, created, params, records, bytes."""
    cache = resolve_cache_dir(cache_dir)
    base = store_dir(cache, "x", "y").parent
    out = []
    if not base.is_dir():
        return out
    for p in sorted(base.iterdir()):
        m = p / MANIFEST
        if p.name.startswith(".") or not m.is_file():
            continue
        try:
            man = json.loads(m.read_text())
        except (OSError, ValueError):
            continue
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        out.append(
            {
                "path": str(p),
                "dataset": man.get("dataset"),
                "key": man.get("key"),
                "created": man.get("created"),
                "params": man.get("params"),
                "records": man.get("records_kept"),
                "bytes": size,
            }
        )
    return out


def remove_stale(cache_dir=None, keep: set[str] | None = None) -> list[str]:
    """Delete complete stores whose key is not in ``keep`` and abandoned temp folders; returns paths."""
    cache = resolve_cache_dir(cache_dir)
    base = store_dir(cache, "x", "y").parent
    removed = []
    if not base.is_dir():
        return removed
    for p in base.iterdir():
        if p.name.startswith("."):
            if _abandoned(p):
                _remove(p)
                removed.append(str(p))
        elif keep is not None and p.name.rsplit("-", 1)[-1] not in keep:
            _remove(p)
            removed.append(str(p))
    return removed


# -- building -------------------------------------------------------------------------------------
def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _abandoned(tmp: Path) -> bool:
    """A temp build folder whose builder (same host) is no longer running, or older than a day."""
    try:
        head, host = tmp.name.split("@", 1)
        pid = head.rsplit("-", 2)[-2]
        if host == socket.gethostname():
            os.kill(int(pid), 0)
            return False
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError, OSError):
        pass
    try:
        return time.time() - tmp.stat().st_mtime > 86400
    except OSError:
        return False


def _cleanup_abandoned(parent: Path, name: str) -> None:
    for p in parent.glob(f".{name}.tmp-*"):
        if _abandoned(p):
            _remove(p)


def _validate_block(block, n_rows: int, shape: tuple[int, int], source: str) -> tuple[np.ndarray, list[str | None]]:
    """Checked float32 block plus one skip reason (or None) per row."""
    arr = np.asarray(block)
    if arr.shape != (n_rows,) + shape:
        raise DataError(f"{source}: loader returned shape {arr.shape}, expected {(n_rows,) + shape}")
    arr = arr.astype(np.float32, copy=False)
    reasons: list[str | None] = []
    for r in arr:
        if not np.isfinite(r).all():
            reasons.append("NaN or inf in signal")
        elif np.all(r.max(axis=-1) == r.min(axis=-1)):
            reasons.append("flat signal")
        else:
            reasons.append(None)
    return arr, reasons


def _build(dataset, cls, root: Path, params: PrepareParams, path: Path, key: str, fp: dict, *, strict: bool, progress: bool):
    from numpy.lib.format import open_memmap
    from tqdm import tqdm

    path.parent.mkdir(parents=True, exist_ok=True)
    _cleanup_abandoned(path.parent, path.name)
    scan = cls.scan(root, params)
    meta = scan.meta.reset_index(drop=True)
    for col in ("id", "example", "patient", "split", "source"):
        if col not in meta.columns:
            raise DataError(f"dataset '{dataset}': scan produced no '{col}' column")
    if strict and scan.skipped:
        s = scan.skipped[0]
        raise DataError(f"{dataset}: record {s.get('id') or s.get('source')}: {s['reason']}")
    n, n_leads, n_t = len(meta), len(scan.leads), params.n_samples

    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    tmp.mkdir(parents=True)
    try:
        signals = open_memmap(tmp / "signals.npy", mode="w+", dtype=np.float32, shape=(n, n_leads, n_t))
        kept = np.zeros(n, dtype=bool)
        skipped: list[dict] = list(scan.skipped)
        groups = meta.groupby("source", sort=False).indices
        bar = tqdm(total=n, desc=f"prepare {dataset}", unit="ecg", disable=None if progress else True)
        for source, idx in groups.items():
            idx = np.sort(np.asarray(idx))
            try:
                block = cls.read_group(root, meta.iloc[idx], params)
                block, reasons = _validate_block(block, len(idx), (n_leads, n_t), str(source))
            except DataError as exc:
                if strict:
                    raise DataError(str(exc).splitlines()[0]) from exc
                skipped.append({"source": str(source), "rows": int(len(idx)), "reason": str(exc).splitlines()[0]})
                bar.update(len(idx))
                continue
            for r, reason in zip(idx, reasons):
                if reason is None:
                    kept[r] = True
                else:
                    msg = f"{source}: {reason}"
                    if strict:
                        raise DataError(f"{dataset} record {meta.at[r, 'id']} ({msg}); fix or re-download it")
                    skipped.append({"id": str(meta.at[r, "id"]), "source": str(source), "reason": reason})
            signals[idx] = block
            bar.update(len(idx))
        bar.close()
        signals.flush()
        rows = np.flatnonzero(kept).astype(np.int64)
        mean, std, fitted_on = _fit_stats(signals, rows, meta["split"].to_numpy())
        del signals

        meta.to_parquet(tmp / "meta.parquet", index=False)
        np.save(tmp / "rows.npy", rows)
        (tmp / "labels").mkdir()
        for name, y in scan.labels.items():
            y = np.asarray(y, dtype=np.uint8)
            if y.shape != (n, len(scan.tasks[name].classes)):
                raise DataError(f"dataset '{dataset}': labels of task '{name}' have shape {y.shape}")
            np.save(tmp / "labels" / f"{name}.npy", y)
        np.savez(tmp / "stats.npz", mean=mean, std=std)
        manifest = {
            "format": FORMAT_VERSION,
            "dataset": dataset,
            "key": key,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "params": params.to_dict(),
            "leads": list(scan.leads),
            "tasks": {
                name: {"classes": list(t.classes), "multilabel": t.multilabel, "description": t.description}
                for name, t in scan.tasks.items()
            },
            "records_scanned": int(n + len(scan.skipped)),
            "records_kept": int(len(rows)),
            "skipped": skipped,
            "stats_fitted_on": fitted_on,
            "info": _jsonable(scan.info),
            "source_fingerprint": fp,
            "data_root": str(root),
        }
        tmp_manifest = tmp / (MANIFEST + ".part")
        tmp_manifest.write_text(json.dumps(manifest, indent=1, default=str))
        os.replace(tmp_manifest, tmp / MANIFEST)
        try:
            os.rename(tmp, path)
        except OSError:
            # another process renamed its complete copy into place first: keep theirs
            if (path / MANIFEST).is_file():
                _remove(tmp)
            else:
                raise
    except BaseException:
        _remove(tmp)
        raise


def _fit_stats(signals: np.ndarray, rows: np.ndarray, split: np.ndarray, chunk: int = 512):
    """Per-lead mean/std over the training rows kept (all kept rows if there is no training split)."""
    train = rows[split[rows] == "train"]
    fitted_on = "train"
    if len(train) == 0:
        train, fitted_on = rows, "all (no training split)"
    n_leads = signals.shape[1]
    s = np.zeros(n_leads)
    ss = np.zeros(n_leads)
    count = 0
    for start in range(0, len(train), chunk):
        x = np.asarray(signals[train[start : start + chunk]], dtype=np.float64)
        s += x.sum(axis=(0, 2))
        ss += (x * x).sum(axis=(0, 2))
        count += x.shape[0] * x.shape[2]
    if count == 0:
        return np.zeros(n_leads, np.float32), np.ones(n_leads, np.float32), "none (no rows)"
    mean = s / count
    var = np.maximum(ss / count - mean**2, 0.0)
    std = np.maximum(np.sqrt(var), STD_FLOOR)
    return mean.astype(np.float32), std.astype(np.float32), fitted_on


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


# -- throughput -----------------------------------------------------------------------------------
def measure_read_throughput(
    ds: ECGSet, data_root=None, n: int = 256, batch_size: int = 64, seed: int = 0, repeats: int = 3
) -> dict:
    """ECGs/s of ``ds.batch`` on random batches vs reading the same records one by one with wfdb.

    The wfdb side reads each sampled row's ``source`` record with ``wfdb.rdrecord`` (no resampling,
    so it is a lower bound on what a loader without a store would pay). Only datasets whose
    ``source`` is one record per row make sense here (PTB-XL, CinC); for MIT-BIH a source is a
    30-min record shared by thousands of beats. Each side is timed ``repeats`` times and the
    fastest pass counts (the usual guard against noise from other processes); both sides read
    files the OS has cached after the first pass. Returns ecgs/s of both and their ratio.
    """
    import wfdb

    rng = np.random.default_rng(seed)
    n = min(n, len(ds))
    idx = rng.choice(len(ds), size=n, replace=False)
    batches = [idx[i : i + batch_size] for i in range(0, n, batch_size)]
    ds.batch(batches[0][:2])  # warm-up (imports, first page faults of the header)
    t_store = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        for b in batches:
            ds.batch(b)
        t_store = min(t_store, time.perf_counter() - t0)

    root = Path(ds.manifest.get("data_root", ""))
    if data_root is not None or not root.is_dir():
        cls = dataset_class(ds.name)
        params = PrepareParams(
            fs=ds.fs, window_s=ds.manifest["params"]["window_s"], options=tuple(sorted(ds.manifest["params"]["options"].items()))
        )
        root = Path(cls.root(resolve_data_root(data_root), params))
    sources = ds.meta["source"].astype(str).to_numpy()[idx]
    t_wfdb = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        for s in sources:
            wfdb.rdrecord(str(root / s))
        t_wfdb = min(t_wfdb, time.perf_counter() - t0)
    store_rate = n / t_store
    wfdb_rate = n / t_wfdb
    return {
        "dataset": ds.name,
        "records": int(n),
        "batch_size": int(batch_size),
        "store_ecgs_per_s": round(store_rate, 1),
        "wfdb_ecgs_per_s": round(wfdb_rate, 1),
        "ratio": round(store_rate / wfdb_rate, 1),
        "fs": ds.fs,
        "repeats": int(repeats),
    }
