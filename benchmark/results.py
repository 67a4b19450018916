"""Tidy, resumable results: one long-format row per number, written atomically per job.

Layout of a results folder (documented for users in ``results/README.md``)::

    <out>/rows/<job_id>.parquet      metric rows of one finished job (written LAST: its
                                     existence means the job is complete)
    <out>/scores/<job_id>.parquet    per-example test scores + labels (example, class, label, score)
    <out>/meta/<job_id>.json         job metadata (config, labelled subset, thresholds, timings)
    <out>/history/<key>.parquet      pretraining loss curves
    <out>/results.csv                all rows of the folder in one table (rewritten after each job)
    <out>/superseded/{rows,scores,meta}/   files of jobs rewritten since under other settings
                                     (same method, seed, protocol, mode, dataset, task and
                                     fraction, another job id: e.g. after a default changed)

Every write goes to a temporary file in the same folder and is moved into place with
``os.replace``, so a run killed at any instant (even ``kill -9``) leaves either the old file or
the new one, never half of one. Temporary files start with ``.`` and end in ``.tmp``; readers
ignore them.

This module never imports torch (reports read results without any model code).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import functools
import os
import platform
import re
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from benchmark.errors import UserError
from benchmark.io import atomic_write_csv, atomic_write_json, atomic_write_parquet, atomic_write_text, jsonable

log = logging.getLogger("benchmark.results")

# Column order of the tidy table; see results/README.md for what each column means.
ROW_COLUMNS: tuple[str, ...] = (
    "run_id", "job_id", "method", "method_name", "seed", "protocol", "mode", "dataset", "task",
    "label_fraction", "metric", "class", "value", "ci_low", "ci_high", "n", "n_pos", "n_classes",
    "note", "config_hash", "git_commit", "git_dirty", "device", "torch_version", "python_version",
    "host", "created",
)
FLOAT_COLUMNS = ("label_fraction", "value", "ci_low", "ci_high")
INT_COLUMNS = ("seed", "n", "n_pos", "n_classes")
BOOL_COLUMNS = ("git_dirty",)
TEXT_COLUMNS = tuple(c for c in ROW_COLUMNS if c not in FLOAT_COLUMNS + INT_COLUMNS + BOOL_COLUMNS)
# A number is identified by these columns; merging keeps the latest row per key.
KEY_COLUMNS: tuple[str, ...] = (
    "method", "seed", "protocol", "mode", "dataset", "task", "label_fraction", "metric", "class",
)
SCORE_COLUMNS = ("example", "class", "label", "score")
# What a job is, whatever its settings: a rewritten job with the same values supersedes the old one.
JOB_KEY_COLUMNS: tuple[str, ...] = ("method", "seed", "protocol", "mode", "dataset", "task", "label_fraction")

# Readable prefix of a job id: these key fields, in this order, when present.
_JOB_ID_FIELDS = ("method", "protocol", "mode", "dataset", "task", "label_fraction", "seed")


# --------------------------------------------------------------------------------------------
# identifiers and environment
# --------------------------------------------------------------------------------------------
def make_job_id(key: Mapping[str, Any]) -> str:
    """The one helper that names a job: a readable prefix plus a hash of the whole key.

    ``{"method": "mets[lm=tfidf]", "protocol": "few-label", ...}`` ->
    ``mets_lm=tfidf_few-label_linear-probe_ptbxl_super_0.1_s0-3f9a0c1b2d``. The prefix is
    truncated and stripped of unsafe characters (it is only for humans); the 10-hex hash of
    the canonical JSON of the key makes the id unique.
    """
    canon = json.dumps({str(k): jsonable(v) for k, v in key.items()}, sort_keys=True, default=str)
    digest = hashlib.sha1(canon.encode()).hexdigest()[:10]
    parts = []
    for f in _JOB_ID_FIELDS:
        if f in key and key[f] is not None and not (isinstance(key[f], float) and math.isnan(key[f])):
            v = key[f]
            parts.append(f"s{v}" if f == "seed" else str(v))
    prefix = re.sub(r"[^A-Za-z0-9.=+-]+", "_", "_".join(parts)).strip("_.")[:80]
    return f"{prefix}-{digest}" if prefix else digest


def safe_name(text: str) -> str:
    """A string usable as a file name on every OS (history keys and the like)."""
    name = re.sub(r"[^A-Za-z0-9.=+-]+", "_", str(text)).strip("_.")
    if not name:
        raise ValueError(f"cannot make a file name from {text!r}")
    if len(name) > 120 or name != str(text):
        name = f"{name[:100]}-{hashlib.sha1(str(text).encode()).hexdigest()[:8]}"
    return name


def new_run_id() -> str:
    """Identifies one invocation of ``benchmark run`` (UTC time + random suffix)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + os.urandom(3).hex()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def env_info(device: str | None = None, repo: str | os.PathLike | None = None) -> dict:
    """Facts about the code and machine that produced a number, for every result row.

    ``git_commit`` is ``git rev-parse HEAD`` of the repository (outside git: ``$ECGBENCH_GIT_COMMIT``
    if set, else ''), ``git_dirty``
    whether tracked files differ from it. ``device`` is what the caller ran on (e.g.
    ``'cuda'``); a CUDA device is expanded with its name when torch is already imported.
    ``torch_version`` comes from package metadata, so this does not import torch.
    """
    repo = Path(repo) if repo else Path(__file__).resolve().parent.parent
    commit, dirty = code_version(str(repo))
    try:
        from importlib.metadata import version

        torch_version = version("torch")
    except Exception:
        torch_version = ""
    return _env_rest(commit, dirty, device, torch_version)


# tracked folders of outputs, not code: a run that resumes into ``results/shared`` of a checkout has
# changed tracked files there, but not the code that makes the numbers
OUTPUT_DIRS = ("results", "reports")


@functools.lru_cache(maxsize=None)
def code_version(repo: str) -> tuple[str, bool]:
    """``(commit, dirty)`` of ``repo``, read once per process: a process runs the code it loaded at
    its start, so edits or commits made while it runs must not relabel its later rows (the runner
    reads it when a run begins). ``dirty``: a tracked file outside ``OUTPUT_DIRS`` differs from the
    commit (results written into a checkout's own ``results/`` leave the code clean)."""
    commit, dirty = "", False
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        if commit:
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                     *(f":(exclude){d}" for d in OUTPUT_DIRS)],
                                    cwd=repo, capture_output=True, text=True, timeout=10).stdout
            dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        commit = ""
    if not commit and os.environ.get("ECGBENCH_GIT_COMMIT"):
        # a copy of the code without .git (a container, a cluster job): the launcher says which commit
        commit = os.environ["ECGBENCH_GIT_COMMIT"].strip()
    return commit, dirty


def _env_rest(commit: str, dirty: bool, device: str | None, torch_version: str) -> dict:
    dev = device or "cpu"
    if dev.startswith("cuda") and "torch" in sys.modules:
        try:
            torch = sys.modules["torch"]
            if torch.cuda.is_available():
                dev = f"{dev} ({torch.cuda.get_device_name(torch.device(dev))})"
        except Exception:
            pass
    elif dev == "cpu":
        dev = f"cpu ({platform.machine()}, {os.cpu_count()} cores)"
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "device": dev,
        "torch_version": torch_version,
        "python_version": platform.python_version(),
        "host": socket.gethostname(),
    }


# --------------------------------------------------------------------------------------------
# the tidy table
# --------------------------------------------------------------------------------------------
def normalize_rows(rows: Iterable[Mapping] | pd.DataFrame) -> pd.DataFrame:
    """Rows -> DataFrame with every ``ROW_COLUMNS`` column (missing ones filled with NaN/''/0)
    in the documented order and dtype; extra columns are kept after them."""
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for col in ROW_COLUMNS:
        if col not in df.columns:
            if col in FLOAT_COLUMNS:
                df[col] = np.nan
            elif col in INT_COLUMNS:
                df[col] = -1 if col == "seed" else 0
            elif col in BOOL_COLUMNS:
                df[col] = False
            else:
                df[col] = ""
    for col in FLOAT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in INT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").fillna(-1).astype("int64")
    for col in BOOL_COLUMNS:  # CSV gives 'True'/'False' strings
        if df[col].dtype != bool:
            df[col] = df[col].astype(str).str.strip().str.lower().isin(["true", "1", "yes"])
    for col in TEXT_COLUMNS:
        s = df[col]
        if s.isna().any() or not (pd.api.types.is_string_dtype(s) or s.dtype == object):
            s = s.astype(object)
            s = s.where(s.notna(), "")
        df[col] = s.astype(str)
    extra = [c for c in df.columns if c not in ROW_COLUMNS]
    return df[list(ROW_COLUMNS) + extra].reset_index(drop=True)


def scores_frame(examples: Iterable, classes: Iterable[str], y: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """Per-example test scores in long format (example, class, label, score), the form saved
    next to every job so any metric can be recomputed without the model."""
    ex = np.asarray(list(examples)).astype(str)
    classes = [str(c) for c in classes]
    y = np.asarray(y).reshape(len(ex), -1)
    s = np.asarray(scores, dtype=np.float64).reshape(len(ex), -1)
    if y.shape[1] != len(classes) or s.shape != y.shape:
        raise ValueError(f"labels {y.shape} / scores {s.shape} do not match {len(classes)} classes")
    return pd.DataFrame({
        "example": np.repeat(ex, len(classes)),
        "class": np.tile(np.asarray(classes, dtype=object), len(ex)),
        "label": y.reshape(-1).astype(np.int8),
        "score": s.reshape(-1),
    })


def scores_matrix(df: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Inverse of :func:`scores_frame`: ``(examples, classes, y [N, C], scores [N, C])`` with
    examples and classes in their first-appearance order."""
    examples = list(dict.fromkeys(df["example"]))
    classes = list(dict.fromkeys(df["class"]))
    y = df.pivot(index="example", columns="class", values="label").loc[examples, classes]
    s = df.pivot(index="example", columns="class", values="score").loc[examples, classes]
    return np.asarray(examples), classes, y.to_numpy().astype(int), s.to_numpy().astype(float)


class ResultStore:
    """The results folder of one run (see the module docstring for the layout)."""

    def __init__(self, out_dir: str | os.PathLike):
        self.root = Path(out_dir)
        # rows files already read: path -> ((mtime_ns, size), frame); results.csv is rewritten
        # after every job, so re-reading hundreds of unchanged files each time would be quadratic.
        self._rows_cache: dict[Path, tuple[tuple[int, int], pd.DataFrame]] = {}

    # paths -------------------------------------------------------------------------------
    @property
    def rows_dir(self) -> Path:
        return self.root / "rows"

    @property
    def scores_dir(self) -> Path:
        return self.root / "scores"

    @property
    def meta_dir(self) -> Path:
        return self.root / "meta"

    @property
    def history_dir(self) -> Path:
        return self.root / "history"

    @property
    def examples_dir(self) -> Path:
        """Small artefacts for figures, e.g. ``ecg_panel.npz`` (written by the harness)."""
        return self.root / "examples"

    @property
    def csv_path(self) -> Path:
        return self.root / "results.csv"

    def rows_path(self, job_id: str) -> Path:
        return self.rows_dir / f"{_check_job_id(job_id)}.parquet"

    def scores_path(self, job_id: str) -> Path:
        return self.scores_dir / f"{_check_job_id(job_id)}.parquet"

    def meta_path(self, job_id: str) -> Path:
        return self.meta_dir / f"{_check_job_id(job_id)}.json"

    # jobs --------------------------------------------------------------------------------
    def job_done(self, job_id: str) -> bool:
        """A job is done iff its rows file exists (it is written last, atomically)."""
        return self.rows_path(job_id).is_file()

    def done_jobs(self) -> list[str]:
        return sorted(p.stem for p in self.rows_dir.glob("*.parquet")) if self.rows_dir.is_dir() else []

    def write_job(
        self,
        job_id: str,
        rows: list[dict] | pd.DataFrame,
        scores: pd.DataFrame | None = None,
        meta: dict | None = None,
    ) -> pd.DataFrame:
        """Save one finished job: meta, then scores, then rows (last), then ``results.csv``.

        Rows get ``job_id`` (and ``created`` if missing) filled in and are normalised to the
        documented schema. Returns the rows as written.
        """
        df = normalize_rows(rows)
        if df.empty:
            raise ValueError(f"job {job_id} has no result rows")
        df["job_id"] = job_id
        df.loc[df["created"] == "", "created"] = utc_now()
        if meta is not None:
            atomic_write_json(meta, self.meta_path(job_id))
        if scores is not None:
            missing = set(SCORE_COLUMNS) - set(scores.columns)
            if missing:
                raise ValueError(f"scores of job {job_id} lack columns {sorted(missing)}")
            atomic_write_parquet(scores.reset_index(drop=True), self.scores_path(job_id))
        atomic_write_parquet(df, self.rows_path(job_id))
        self.supersede(job_id, df)
        self.write_csv()
        return df

    @property
    def superseded_dir(self) -> Path:
        return self.root / "superseded"

    def supersede(self, job_id: str, df: pd.DataFrame) -> list[str]:
        """Move the files of other jobs with the same job key (method, seed, protocol, mode,
        dataset, task, label fraction) as ``job_id`` -- the same job under settings that have since
        changed, e.g. a new default -- to ``superseded/`` (rows, scores, meta kept as they were), so
        the folder's rows and ``results.csv`` hold one row set per job. Returns the moved ids."""
        key = [c for c in JOB_KEY_COLUMNS if c in df.columns]
        rows = self.load_rows()
        if rows.empty or not key:
            return []
        mine = df[key].drop_duplicates().astype(str)
        others = rows[rows["job_id"] != job_id]
        ids = sorted(set(others.loc[others[key].astype(str).apply(tuple, axis=1).isin(
            set(mine.apply(tuple, axis=1))), "job_id"]))
        for old in ids:
            for src, kind in ((self.rows_path(old), "rows"), (self.scores_path(old), "scores"),
                              (self.meta_path(old), "meta")):
                if src.is_file():
                    dst = self.superseded_dir / kind / src.name
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
            self._rows_cache.pop(self.rows_path(old), None)
            log.info("job %s supersedes %s (same job, other settings): its files moved to %s", job_id, old,
                     self.superseded_dir)
        return ids

    def write_csv(self) -> None:
        """Rewrite the consolidated ``results.csv`` from the rows files (for humans)."""
        atomic_write_csv(self.load_rows(), self.csv_path)

    def write_history(self, key: str, df: pd.DataFrame) -> Path:
        """Save a pretraining loss curve (columns e.g. method, seed, epoch, loss, val_loss)."""
        df = df.copy()
        df["key"] = str(key)
        path = self.history_dir / f"{safe_name(key)}.parquet"
        atomic_write_parquet(df.reset_index(drop=True), path)
        return path

    # reading -----------------------------------------------------------------------------
    def load_rows(self) -> pd.DataFrame:
        """All finished jobs' rows (empty frame with the schema's columns if none)."""
        files = sorted(self.rows_dir.glob("*.parquet")) if self.rows_dir.is_dir() else []
        frames = []
        for p in files:
            st = p.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            hit = self._rows_cache.get(p)
            if hit is None or hit[0] != stamp:
                hit = (stamp, normalize_rows(_read_parquet(p)))
                self._rows_cache[p] = hit
            if not hit[1].empty:
                frames.append(hit[1])
        if not frames:
            return normalize_rows(pd.DataFrame(columns=list(ROW_COLUMNS)))
        return pd.concat(frames, ignore_index=True)

    def load_scores(self, job_id: str) -> pd.DataFrame:
        path = self.scores_path(job_id)
        if not path.is_file():
            raise UserError(f"no per-example scores for job '{job_id}' in {self.root}")
        return _read_parquet(path)

    def load_meta(self, job_id: str) -> dict:
        path = self.meta_path(job_id)
        return json.loads(path.read_text()) if path.is_file() else {}

    def load_history(self) -> pd.DataFrame:
        files = sorted(self.history_dir.glob("*.parquet")) if self.history_dir.is_dir() else []
        frames = [_read_parquet(p) for p in files]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _check_job_id(job_id: str) -> str:
    if not job_id or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._=+-]*", job_id) or len(job_id) > 200:
        raise ValueError(f"unsafe job id {job_id!r}: build ids with make_job_id()")
    return job_id


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:
        raise UserError(f"cannot read result file {path}: {exc}; delete it and re-run to redo that job") from exc


# --------------------------------------------------------------------------------------------
# merging folders
# --------------------------------------------------------------------------------------------
def load_results_dir(path: str | os.PathLike) -> pd.DataFrame:
    """Rows of one results folder: ``rows/*.parquet``, or ``results.csv`` if only that exists."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"results folder '{path}' does not exist: pass --results DIR of a finished run")
    store = ResultStore(path)
    if store.done_jobs():
        return store.load_rows()
    if store.csv_path.is_file():
        text_cols = {c: str for c in TEXT_COLUMNS}
        return normalize_rows(pd.read_csv(store.csv_path, dtype=text_cols, keep_default_na=False,
                                          na_values=["", "nan", "NaN"]))
    raise UserError(f"'{path}' holds no results (no rows/*.parquet, no results.csv)")


def holds_results(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a results folder of ``benchmark run`` (rows/*.parquet or results.csv)."""
    store = ResultStore(path)
    return bool(store.done_jobs()) or store.csv_path.is_file()


def result_folders(path: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """The results folders directly inside ``path`` (a folder of result folders, e.g. ``results/``),
    sorted by name, and the sub-folders skipped because they hold none (e.g. an Optuna study)."""
    path = Path(path)
    found, skipped = [], []
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        (found if holds_results(sub) else skipped).append(sub)
    return found, skipped


def merge_results(dirs: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate several results folders; for rows with the same ``KEY_COLUMNS`` keep the
    latest by ``created`` (equal timestamps: the folder given later wins). Adds a
    ``results_dir`` column saying where each row came from."""
    frames = []
    for d in dirs:
        df = load_results_dir(d)
        df["results_dir"] = str(d)
        frames.append(df)
    if not frames:
        raise UserError("no results folders given")
    df = pd.concat(frames, ignore_index=True)
    df["_order"] = np.arange(len(df))
    df["_t"] = pd.to_datetime(df["created"], utc=True, errors="coerce", format="ISO8601")
    df = df.sort_values(["_t", "_order"], kind="mergesort", na_position="first")
    df = df.drop_duplicates(list(KEY_COLUMNS), keep="last")
    return df.sort_values("_order").drop(columns=["_order", "_t"]).reset_index(drop=True)


# -- the run-level record: resolved config and the command lines that wrote the folder ------------
CONFIG_FILE = "config.yaml"
COMMANDS_FILE = "command.txt"


def config_yaml(cfg: Mapping[str, Any]) -> str:
    """The resolved config as YAML (what ``--print-config`` prints and ``config.yaml`` holds;
    ``--config`` reads it back to the same config)."""
    import yaml  # local: only the commands that record or print a config need it

    return yaml.safe_dump(jsonable(dict(cfg)), sort_keys=True, default_flow_style=False)


def write_run_record(out: str | os.PathLike, cfg: Mapping[str, Any], argv: Iterable[str],
                     command: str = "python -m benchmark") -> None:
    """Record one invocation in results folder ``out``: ``config.yaml`` (the resolved config of
    this invocation) and one more entry in ``command.txt`` (UTC time, working directory and the
    exact command line, shell-quoted; earlier invocations' entries are kept). Both atomic."""
    import shlex

    root = Path(out)
    atomic_write_text(config_yaml(cfg), root / CONFIG_FILE)
    path = root / COMMANDS_FILE
    try:
        before = path.read_text()
    except FileNotFoundError:
        before = ""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = (f"# {when}\ncd {shlex.quote(os.getcwd())} && {command} {shlex.join(str(a) for a in argv)}\n")
    atomic_write_text(before + ("\n" if before and not before.endswith("\n") else "") + entry, path)
