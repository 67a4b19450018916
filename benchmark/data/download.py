"""Download a PhysioNet database, resumably and verified against its published checksums.

``python -m benchmark data download {ptbxl,mitbih,cinc2017} --to DIR`` calls :func:`download`
(``mitdb``, ``ptb-xl`` and ``challenge-2017``, PhysioNet's names, are accepted too).

How it works
------------
PhysioNet publishes ``SHA256SUMS.txt`` at the root of every database version (one line
``<sha256> <relative path>`` per file). :func:`download` fetches it first, picks the files the
suite reads, and downloads each into ``DIR/<folder>`` (``ptb-xl``, ``mitdb``, ``cinc2017``: the
layout ``--data-root DIR`` expects, see ``benchmark.paths.DATASET_DIRS``):

* a file already there with the right checksum is skipped, so re-running is cheap;
* a file is written to ``<file>.part`` and renamed only after its checksum matched, so a crash or
  Ctrl-C never leaves a file that looks complete; re-running resumes a ``.part`` with an HTTP
  ``Range`` request (servers that ignore ``Range`` send the whole file, which is then restarted);
* a checksum mismatch deletes the ``.part`` and raises a one-line ``DataError`` naming the file;
* a network failure raises a one-line ``UserError`` naming the URL; re-running resumes.

Databases (paths relative to the base URL, default ``https://physionet.org/files/``)
-------------------------------------------------------------------------------------
* ``ptbxl``: ``ptb-xl/1.0.3/``, every listed file (records100, records500, the CSVs; ~3 GB).
* ``mitbih`` (alias ``mitdb``): ``mitdb/1.0.0/``, every listed file (48 records; ~100 MB).
* ``cinc2017``: ``challenge-2017/1.0.0/``, the training set only. PhysioNet keeps the records in
  ``training/A00/`` ... ``training/A08/``; they are stored flat (``cinc2017/A00001.hea``), as the
  loader and the shared data expect. The final (v3) labels ``REFERENCE-v3.csv`` at the database
  root become ``cinc2017/REFERENCE.csv`` (the labels the loader reads by default);
  ``training/REFERENCE.csv`` (the labels released with the training set) becomes
  ``REFERENCE-original.csv``; other ``training/`` files keep their names. The zip archives,
  validation set, papers and sources are not downloaded.

The base URL can be changed with ``base_url=`` or the environment variable
``ECGBENCH_PHYSIONET_URL`` (a mirror, or the loopback server of ``tests/test_download.py``); it is
the folder that contains ``<database>/<version>/``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmark.errors import DataError, UserError, unknown_name
from benchmark.paths import DATASET_DIRS

PHYSIONET_URL_ENV = "ECGBENCH_PHYSIONET_URL"
DEFAULT_BASE_URL = "https://physionet.org/files/"
CHECKSUMS = "SHA256SUMS.txt"
CHUNK = 1 << 20
USER_AGENT = "ecgbench-download/0.1 (+https://physionet.org)"


def _all_files(path: str) -> str | None:
    return path


def _cinc2017_files(path: str) -> str | None:
    """PhysioNet path -> local path inside ``cinc2017/`` (None: not downloaded)."""
    if path == "REFERENCE-v3.csv":
        return "REFERENCE.csv"
    if not path.startswith("training/"):
        return None
    rest = path[len("training/") :]
    if rest == "REFERENCE.csv":
        return "REFERENCE-original.csv"
    return rest.rsplit("/", 1)[-1]  # training/A00/A00001.mat -> A00001.mat


@dataclass(frozen=True)
class Source:
    path: str  # database folder relative to the base URL, with version
    folder: str  # local folder under --to
    select: Callable[[str], str | None] = _all_files  # remote path -> local relative path or None


SOURCES: dict[str, Source] = {
    "ptbxl": Source("ptb-xl/1.0.3/", DATASET_DIRS["ptbxl"]),
    "mitbih": Source("mitdb/1.0.0/", DATASET_DIRS["mitbih"]),  # PhysioNet's mitdb, into mitdb/
    "cinc2017": Source("challenge-2017/1.0.0/", DATASET_DIRS["cinc2017"], _cinc2017_files),
}
# the PhysioNet database names, accepted besides the dataset names (keys of SOURCES)
ALIASES = {"mitdb": "mitbih", "ptb-xl": "ptbxl", "challenge-2017": "cinc2017"}


def resolve_base_url(base_url: str | None) -> str:
    url = base_url or os.environ.get(PHYSIONET_URL_ENV) or DEFAULT_BASE_URL
    return url if url.endswith("/") else url + "/"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def parse_checksums(text: str, url: str) -> list[tuple[str, str]]:
    """``SHA256SUMS.txt`` -> [(sha256, relative path)]; ``DataError`` for a malformed line."""
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DataError(f"'{url}' line {lineno} is not '<sha256> <path>': {line.strip()[:80]!r}")
        path = parts[1].lstrip("*").strip()
        if path.startswith("/") or ".." in Path(path).parts:
            raise DataError(f"'{url}' line {lineno}: refusing unsafe path '{path}'")
        out.append((digest, path))
    return out


def _network_error(url: str, exc: BaseException) -> UserError:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
    reason = str(reason).splitlines()[0] if str(reason) else type(exc).__name__
    return UserError(f"download of {url} failed ({reason}); re-run the same command to resume")


def _open(url: str, timeout: float, offset: int = 0):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _fetch_text(url: str, timeout: float) -> str:
    try:
        with _open(url, timeout) as resp:
            return resp.read().decode("utf-8")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _network_error(url, exc) from None


def _fetch_file(url: str, dest: Path, digest: str | None, timeout: float, retries: int, on_bytes) -> None:
    """Download ``url`` to ``dest`` via ``dest.part`` (resumed if present), verify, rename."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    last_exc: BaseException | None = None
    for _attempt in range(retries + 1):
        offset = part.stat().st_size if part.exists() else 0
        try:
            resp = _open(url, timeout, offset)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # nothing left to send: the .part may be complete
                last_exc = None
                break
            raise _network_error(url, exc) from None
        except (urllib.error.URLError, OSError) as exc:
            last_exc = exc
            continue
        try:
            with resp:
                resumed = offset and resp.status == 206
                with open(part, "ab" if resumed else "wb") as fh:
                    for block in iter(lambda: resp.read(CHUNK), b""):
                        fh.write(block)
                        on_bytes(len(block))
            last_exc = None
            break
        except (urllib.error.URLError, OSError, ValueError) as exc:  # connection lost mid-file
            last_exc = exc
    if last_exc is not None:
        raise _network_error(url, last_exc)
    if digest is not None and sha256_of(part) != digest:
        part.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for '{dest}' (downloaded from {url}); the bad file was deleted, "
            "re-run to download it again"
        )
    os.replace(part, dest)


def download(
    name: str,
    to: str | os.PathLike,
    base_url: str | None = None,
    verify: bool = True,
    progress: bool = True,
    workers: int = 4,
    *,
    timeout: float = 60.0,
    retries: int = 2,
) -> Path:
    """Download PhysioNet database ``name`` into ``<to>/<folder>``; return that folder.

    ``verify=False`` trusts files that already exist and skips checksum checks (faster re-runs of a
    huge download you already verified); ``workers`` files are fetched in parallel; ``timeout`` is
    per network operation (seconds) and a broken transfer is resumed up to ``retries`` times.
    """
    key = ALIASES.get(name, name)
    if key not in SOURCES:
        raise unknown_name("PhysioNet database", name, [*SOURCES, *ALIASES])
    src = SOURCES[key]
    db_url = resolve_base_url(base_url) + src.path
    dest_root = Path(to).expanduser() / src.folder
    try:
        dest_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create download folder '{dest_root}': {exc.strerror or exc}") from None

    sums_url = db_url + CHECKSUMS
    entries = parse_checksums(_fetch_text(sums_url, timeout), sums_url)
    jobs: list[tuple[str, Path, str]] = []
    for digest, remote in entries:
        local = src.select(remote)
        if local is not None:
            jobs.append((db_url + remote, dest_root / local, digest))
    if not jobs:
        raise DataError(f"'{sums_url}' lists no file of database '{key}': is the base URL right?")
    if len({dest for _, dest, _ in jobs}) != len(jobs):
        raise DataError(f"'{sums_url}' maps two files to the same local name; cannot store them flat")

    todo = []
    for url, dest, digest in jobs:
        if dest.is_file() and (not verify or sha256_of(dest) == digest):
            continue
        todo.append((url, dest, digest))

    from tqdm.auto import tqdm

    lock = threading.Lock()
    with tqdm(
        total=len(todo),
        unit="file",
        desc=f"download {key}",
        disable=not progress or not todo,
        dynamic_ncols=True,
    ) as bar:
        received = [0]

        def on_bytes(n: int) -> None:
            with lock:
                received[0] += n
                bar.set_postfix_str(f"{received[0] / 1e6:.1f} MB", refresh=False)

        def one(job):
            url, dest, digest = job
            _fetch_file(url, dest, digest if verify else None, timeout, retries, on_bytes)
            with lock:
                bar.update(1)

        with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
            futures = [pool.submit(one, job) for job in todo]
            try:
                for fut in as_completed(futures):
                    fut.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    return dest_root
