"""The one atomic writer: every file the suite writes goes through :func:`atomic_write`.

A write goes to a temporary file in the destination folder (``.<name>.<random>.tmp``), is
fsynced and moved into place with ``os.replace``, so a run killed at any instant (even
``kill -9``) leaves either the old file or the new one, never half of one; readers ignore the
temporary names. The new file gets the permissions an ordinary ``open(path, 'w')`` would give
under the process umask (``mkstemp`` alone gives 0600), so results, tables, figures and pages
stay readable by colleagues on a shared server. A full disk or a permission problem becomes a
one-line :class:`~benchmark.errors.UserError` naming the path.

:func:`quarantine` is the other file move of the suite: a damaged cache entry is moved aside
(``<name>.corrupt-<UTC time>``) so that its owner rebuilds it (see :mod:`benchmark.heal`). It
lives here, at the bottom, because the prepared stores (``benchmark.data``), the embedding cache
and the checkpoints all heal through it.

:func:`read_csv_checked` is the one way a source table (PTB-XL's CSVs, a ``--reports`` file) is
read: an unreadable file or a missing column is a one-line error naming the file.

This module sits at the bottom of the layers: it imports only :mod:`benchmark.errors`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from benchmark.errors import DataError, resource_error

# the cache-healing warnings keep the logger name users (and tests) filter on
heal_log = logging.getLogger("benchmark.heal")

SIDECAR = ".sha256"  # a torch file's SHA-256 checksum file: <file>.sha256


def _file_mode() -> int:
    """Mode of a newly created file under the process umask; read once, at import, since reading
    the umask means setting it for a moment."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


def _raise_resource(exc: BaseException, path: Path) -> None:
    err = resource_error(exc, path)
    if err is not None:
        raise err from exc


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)``, fsync, then ``os.replace`` into ``path``; returns ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        _raise_resource(exc, path)
        raise
    os.close(fd)
    os.chmod(tmp, FILE_MODE)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        _raise_resource(exc, path)
        raise
    return path


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write(path, write)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, write)


def atomic_write_parquet(df, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def atomic_write_csv(df, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def atomic_write_json(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write_text(json.dumps(jsonable(obj), indent=2, sort_keys=True, default=str) + "\n", path)


def jsonable(v: Any) -> Any:
    """Plain JSON types for mappings, sequences, numpy values; NaN -> None, inf -> 'inf'."""
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def read_csv_checked(path: str | os.PathLike, required=(), expected: str = "", **read_kw):
    """Read the CSV table at ``path`` (``pandas.read_csv(path, **read_kw)``): an unreadable file, or
    one lacking a ``required`` column, is a one-line :class:`~benchmark.errors.DataError` naming it
    (``expected`` completes the message, e.g. "is it PTB-XL's ptbxl_database.csv?"). The caller
    checks that the file exists, with the advice that fits its source."""
    import pandas as pd  # local: this module is imported by everything, pandas only by readers

    try:
        df = pd.read_csv(path, **read_kw)
    except Exception as exc:
        raise DataError(f"cannot read '{path}' as CSV: {exc}") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"'{path}' lacks column(s) {', '.join(missing)}" + (f": {expected}" if expected else ""))
    return df


def quarantine(path: str | os.PathLike, reason: str) -> Path | None:
    """Move a damaged cache entry (file or folder, plus a torch file's sidecar) aside and warn once.

    Returns the new path (None if the entry had vanished: another worker moved it first)."""
    path = Path(path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    dest = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, dest)
    except FileNotFoundError:
        return None
    sidecar = path.with_name(path.name + SIDECAR)
    with contextlib.suppress(FileNotFoundError):
        os.replace(sidecar, dest.with_name(dest.name + SIDECAR))
    heal_log.warning("cache entry %s is damaged (%s): moved aside to %s and rebuilt",
                     path, _short(reason), dest.name)
    return dest


def _short(reason: str, limit: int = 160) -> str:
    line = " ".join(str(reason).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


__all__ = ["FILE_MODE", "SIDECAR", "quarantine", "atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_parquet",
           "atomic_write_csv", "atomic_write_json", "jsonable"]
