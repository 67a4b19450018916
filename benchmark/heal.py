"""Cache entries that heal, and torch files that load safely.

Everything under the cache dir (prepared stores, text embeddings, pretrained encoders and their
epoch checkpoints) can be rebuilt from the data root, so a damaged entry is a cache *miss*, not an
error: :func:`~benchmark.io.quarantine` moves it aside (``<name>.corrupt-<UTC time>``, kept for a post-mortem,
never read again) with one warning line naming it, and the caller rebuilds it. Only user data (a
results folder, the data root, a file the user passed by name) produces errors.

Torch files of the suite are loaded with ``torch.load(..., weights_only=True)``: a cache shared by
a team or a cluster is input from others, and a full unpickler would run whatever code a planted
file names. What the suite saves is therefore plain data -- tensors, dicts, lists, tuples,
numbers, strings, None. Every torch file also gets a SHA-256 sidecar (``<file>.sha256``, written
*before* the file is moved into place, so a visible file always has its sidecar): a file whose
bytes changed after it was written (a flipped bit, a truncation that still unzips) fails the
check instead of loading damaged weights.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

from benchmark.errors import UserError
# quarantine lives in io (the data stores below this floor heal through it); it stays part of
# this module's healing API (__all__)
from benchmark.io import SIDECAR, atomic_write_bytes, atomic_write_text, quarantine


class CorruptCacheEntry(UserError):
    """A file that fails to load or verify. In the cache it is a miss (quarantine, rebuild); for
    a file the user named it is the one-line error this is."""

    def __init__(self, path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"'{path}' is damaged or unsafe ({reason})")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` into memory, write the SHA-256 sidecar, then the file via a temp file and
    ``os.replace`` (never half-written; the sidecar is in place before the file appears)."""
    # torch is imported here, not at module level: the engine imports this module on the path of
    # every command, and `python -m benchmark --help` must stay light (CLI start-up time)
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    atomic_write_text(sha256_bytes(data) + "\n", path.with_name(path.name + SIDECAR))
    atomic_write_bytes(data, path)


def safe_torch_load(path: str | os.PathLike, *, verify: bool = True) -> Any:
    """Load a torch file saved by :func:`atomic_torch_save` with ``weights_only=True``.

    Raises :class:`CorruptCacheEntry` if the sidecar is missing or does not match (``verify``),
    or if the file does not unpickle as plain data (damage, or a pickle that would run code)."""
    import torch  # here, not at module level: see atomic_torch_save

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptCacheEntry(path, f"unreadable: {exc.strerror or exc}") from exc
    if verify:
        sidecar = path.with_name(path.name + SIDECAR)
        try:
            want = sidecar.read_text().strip()
        except OSError:
            raise CorruptCacheEntry(path, f"no checksum file {sidecar.name}") from None
        got = sha256_bytes(data)
        if got != want:
            raise CorruptCacheEntry(path, f"SHA-256 {got[:12]}... does not match {sidecar.name} ({want[:12]}...)")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorruptCacheEntry(path, f"refused by the safe loader: {first}") from exc
    except Exception as exc:
        raise CorruptCacheEntry(path, f"{type(exc).__name__}: {exc}") from exc


__all__ = ["CorruptCacheEntry", "quarantine", "atomic_torch_save", "safe_torch_load", "SIDECAR"]
