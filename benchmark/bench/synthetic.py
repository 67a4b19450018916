"""The bench's synthetic prepared stores (figures 4 and 5): PTB-XL-shaped, ECG-like, built once
into ``paths.synthetic_dir(cache_dir)`` and reused; ``benchmark cache`` lists and cleans them."""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap

from benchmark.data.base import LEADS
from benchmark.data.store import FORMAT_VERSION, MANIFEST, open_store
from benchmark.errors import UserError
from benchmark.paths import human_size, synthetic_dir, touch, tree_size

log = logging.getLogger("benchmark.bench")


def synthetic_summary(cache_dir: Path) -> tuple[Path, str] | None:
    """(folder, total size) of the bench's synthetic stores in ``cache_dir``; None if there are none."""
    d = synthetic_dir(cache_dir)
    if not d.is_dir() or not any(d.iterdir()):
        return None
    return d, human_size(tree_size(d))


def synthetic_store(cache_dir: Path, n: int, fs: int, window_s: float = 10.0, progress: bool = False):
    """A prepared store of ``n`` synthetic 12-lead ECG-like records (opened with ``open_store``).

    Built once (in a temp folder, renamed into place) and reused; content is sinusoids plus noise,
    varied per record, so pages are not trivially compressible or identical."""
    t = int(round(fs * window_s))
    path = synthetic_dir(cache_dir) / f"synthetic-{n}x12x{t}"
    if (path / MANIFEST).is_file():
        touch(path / MANIFEST)
        log.info("reusing synthetic store %s (%s)", path, human_size(4 * n * 12 * t))
        return open_store(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    need = 4 * n * 12 * t
    free = shutil.disk_usage(path.parent).free
    if free < need * 1.05 + 2**28:
        raise UserError(f"the synthetic store needs {human_size(need)} in {path.parent}, only {human_size(free)} "
                        "free: point --cache-dir (or ECGBENCH_CACHE_DIR) at a larger disk, or use --quick")
    log.info("building synthetic store %s (%s, reused by later benches)", path, human_size(need))
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    try:
        rng = np.random.default_rng(0)
        tt = np.arange(t, dtype=np.float32) / fs
        base = np.stack([
            np.sin(2 * np.pi * rng.uniform(0.8, 2.0) * tt[None, :] + rng.uniform(0, 6.3, (12, 1)))
            + 0.1 * rng.standard_normal((12, t)) for _ in range(64)
        ]).astype(np.float32)
        sig = open_memmap(tmp / "signals.npy", mode="w+", dtype=np.float32, shape=(n, 12, t))
        offset = sig.offset  # the .npy header; the data are written with plain file writes, since
        del sig  # writing through a map would keep every written page in this process's RSS
        chunk = 256
        with open(tmp / "signals.npy", "r+b") as fh:
            for start in range(0, n, chunk):
                k = min(chunk, n - start)
                pick = (start + np.arange(k)) % len(base)
                fh.seek(offset + start * 12 * t * 4)
                fh.write((base[pick] * np.float32(1.0 + 0.001 * (start // chunk))).tobytes())
        split = np.array(["train"] * 8 + ["val", "test"])[np.arange(n) % 10]
        ids = [f"syn{i}" for i in range(n)]
        pd.DataFrame({"id": ids, "example": ids, "patient": ids, "split": split, "source": ids}).to_parquet(
            tmp / "meta.parquet", index=False)
        np.save(tmp / "rows.npy", np.arange(n, dtype=np.int64))
        (tmp / "labels").mkdir()
        np.savez(tmp / "stats.npz", mean=np.zeros(12, np.float32), std=np.ones(12, np.float32))
        manifest = {"format": FORMAT_VERSION, "dataset": "synthetic", "key": path.name,
                    "params": {"fs": fs, "window_s": window_s, "options": {}}, "leads": list(LEADS),
                    "tasks": {}, "records_kept": n, "skipped": [], "info": {}}
        (tmp / MANIFEST).write_text(json.dumps(manifest))
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_store(path)


def delete_synthetic(cache_dir: Path) -> None:
    shutil.rmtree(synthetic_dir(cache_dir), ignore_errors=True)
