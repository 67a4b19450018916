"""The one ECG layout every dataset is converted to, and the contract between loaders and store.

Layout
------
* 12 leads in standard order ``LEADS`` (I, II, III, aVR, aVL, aVF, V1..V6). A dataset stores only
  the leads it has (``ECGSet.leads``); ``ECGSet.batch`` scatters them into a zero [B, 12, T]
  tensor, and ``ECGSet.lead_mask`` says which leads are real. Single-lead data fill their own
  lead: MIT-BIH MLII -> II, CinC 2017 (AliveCor) -> I.
* Signals in millivolts, resampled to a target rate (default 100 Hz) by polyphase filtering
  (``scipy.signal.resample_poly``), cut or zero-padded to ``window_s`` seconds (default 10 s).
* Normalisation: per-lead mean and standard deviation fitted on the *training split only*, applied
  in ``ECGSet.batch``. The store keeps raw millivolts, so a changed split or normalisation
  never needs a rebuild of the signals.

Data path (issue 7): ``ECGSet.batch(idx)`` reads a whole batch with one fancy index into the
memory-mapped array (rows sorted, so reads are sequential on disk), normalises it in place and
returns one tensor -- no per-sample Python. For stores larger than ``RELEASE_BYTES`` the pages the
map brought in are released from the process after every read (``madvise(MADV_DONTNEED)``, under
a millisecond for a 5 GB map; the OS page cache keeps them), so the resident memory of an epoch
over a 5 GB store stays flat instead of growing to the size of the file. (Counting bytes read is
not enough: the kernel maps whole page-cache folios, up to 2 MB, around each 48-240 KB row.) ``ECGSet.to_device(device, dtype)`` instead holds the whole
normalised set as one tensor (on a GPU when it fits: full PTB-XL at 100 Hz in fp16 is 0.5 GB) and
``batch`` then indexes that tensor.

Contract for a dataset module (see ``benchmark/data/ptbxl.py``)
---------------------------------------------------------------
A dataset is a class registered with ``@register_dataset("name")`` (``benchmark.registry``) with

* ``root(data_root, params) -> Path``: its own folder under the data root (``DataError`` if missing);
* ``source_files(root, params) -> list[Path]``: files whose fingerprints enter the cache key;
* ``scan(root, params) -> Scan``: one metadata row per example, the tasks, the label matrices;
* ``read_group(root, rows, params) -> np.ndarray [len(rows), len(leads), T] float32``: the signals
  (mV, at ``params.fs``, exactly ``params.n_samples`` long) of all rows that share one value of the
  ``source`` column (one WFDB record: a PTB-XL ECG, all beats of one MIT-BIH record, all crops of
  one CinC record). Raises ``DataError`` naming the file for a missing/truncated/corrupt file, a
  wrong sampling rate, NaN or flat signal; the store then skips that group (counted, listed in
  ``data info``) or, with ``strict=True``, stops with that one-line error.

Required metadata columns: ``id`` (unique str), ``example`` (the unit of evaluation: scores of rows
sharing it are averaged, e.g. several crops of one CinC record), ``patient`` (str), ``split``
(``train``/``val``/``test``/``none``), ``source`` (the record file the row is read from). Datasets with text add ``report_raw``, ``report_clean``,
``report_en``, ``language``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import UserError, unknown_name

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
SPLITS = ("train", "val", "test")
RELEASE_BYTES = 256 * 1024 * 1024  # stores larger than this drop their mapped pages after every read
# report_text kind -> the metadata column(s) it reads. ``both``: the cleaned report (its own language)
# and its English translation in one text, "<clean> / <english>" (once when they are the same).
TEXT_KINDS = {
    "raw": ("report_raw",),
    "clean": ("report_clean",),
    "en": ("report_en",),
    "both": ("report_clean", "report_en"),
}
BOTH_SEPARATOR = " / "


def lead_index(name: str) -> int:
    """Map a lead name as written in WFDB headers (``MLII``, ``AVR``, ``v1``) to its index in LEADS."""
    n = name.strip()
    aliases = {"MLII": "II", "MLI": "I", "MLIII": "III", "ECG": "I"}
    n = aliases.get(n.upper(), n)
    for i, lead in enumerate(LEADS):
        if lead.lower() == n.lower():
            return i
    raise UserError(f"unknown ECG lead name '{name}'")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    classes: tuple[str, ...]
    multilabel: bool
    description: str = ""


@dataclass(frozen=True)
class PrepareParams:
    """Every preprocessing parameter; all of them enter the store's cache key."""

    fs: int = 100
    window_s: float = 10.0
    options: tuple[tuple[str, Any], ...] = ()  # dataset-specific, e.g. (("annotator", "atr"),)

    @property
    def n_samples(self) -> int:
        return int(round(self.fs * self.window_s))

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def to_dict(self) -> dict:
        return {"fs": self.fs, "window_s": self.window_s, "options": dict(self.options)}


@dataclass
class Scan:
    """What a dataset module's ``scan`` returns (before any signal is read)."""

    meta: pd.DataFrame
    leads: tuple[str, ...]
    tasks: dict[str, TaskSpec]
    labels: dict[str, np.ndarray]  # task -> [N, C] uint8 multi-hot (rows without a label: all 0)
    skipped: list[dict] = field(default_factory=list)  # [{"id": ..., "reason": ...}] found while scanning
    info: dict = field(default_factory=dict)  # extra facts for `data info` (e.g. glossary coverage)


class PhysioNetDataset:
    """Shared plumbing of the dataset classes: option lookup and the dataset's own folder.

    Subclasses set ``name``, ``title`` (for messages), ``download_name`` (the argument of
    ``data download``), ``default_options`` (with a ``subdir`` entry) and implement
    ``source_files``, ``scan`` and ``read_group`` (see the module docstring).
    """

    name = ""
    title = ""
    download_name = ""
    version = "1"  # bump when the examples or labels change: it enters the store's cache key
    default_options: dict = {"subdir": ""}

    @classmethod
    def _opt(cls, params: PrepareParams, key: str):
        return params.option(key, cls.default_options[key])

    @classmethod
    def root(cls, data_root: Path, params: PrepareParams) -> Path:
        from benchmark.errors import DataError

        folder = Path(data_root) / str(cls._opt(params, "subdir"))
        if not folder.is_dir():
            raise DataError(
                f"{cls.title} folder '{folder}' not found: download it with "
                f"'python -m benchmark data download {cls.download_name} --to {data_root}' or set the 'subdir' option"
            )
        return folder


class SplitAccessError(RuntimeError):
    """Raised when code reads a split it was forbidden to read (e.g. test data during model selection)."""


class ECGSet:
    """A prepared dataset: memory-mapped signals plus tidy metadata. Built by ``store.prepare``.

    Indices used by every method are *positions in this set* (0..len-1); skipped records are
    already removed.
    """

    def __init__(
        self,
        name: str,
        path: Path,
        signals: np.ndarray,
        rows: np.ndarray,
        meta: pd.DataFrame,
        leads: tuple[str, ...],
        fs: int,
        tasks: dict[str, TaskSpec],
        labels: dict[str, np.ndarray],
        mean: np.ndarray,
        std: np.ndarray,
        manifest: dict,
    ):
        self.name = name
        self.path = path
        self.signals = signals  # [N_stored, L, T] float32 memmap (mV)
        self.rows = rows  # storage row of each example kept
        self.meta = meta.reset_index(drop=True)
        self.leads = tuple(leads)
        self.lead_idx = np.array([lead_index(x) for x in leads])
        self.fs = fs
        self.tasks = tasks
        self._labels = labels
        self.mean = mean.astype(np.float32)
        self.std = std.astype(np.float32)
        self.manifest = manifest
        self._forbidden: set[str] = set()
        self.reads: dict[str, int] = {s: 0 for s in SPLITS + ("none",)}  # examples read per split
        self._resident = None  # torch tensor [N, L, T] (normalised, stored leads) after to_device()

    # -- honest-evaluation guard -------------------------------------------------------------
    @contextlib.contextmanager
    def forbid(self, *splits: str):
        """Within this block any signal read touching ``splits`` raises ``SplitAccessError``.

        Protocols wrap model selection (early stopping, probe regularisation, thresholds) in
        ``with data.forbid("test"):`` so the test split cannot leak into it.
        """
        before = set(self._forbidden)
        self._forbidden |= set(splits)
        try:
            yield self
        finally:
            self._forbidden = before

    # -- shape -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    @property
    def n_samples(self) -> int:
        return int(self.signals.shape[-1])

    @property
    def lead_mask(self) -> np.ndarray:
        m = np.zeros(len(LEADS), dtype=bool)
        m[self.lead_idx] = True
        return m

    # -- splits, labels, text ------------------------------------------------------------
    def split_indices(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise unknown_name("split", split, SPLITS)
        return np.flatnonzero(self.meta["split"].to_numpy() == split)

    def task(self, name: str) -> TaskSpec:
        if name not in self.tasks:
            raise unknown_name(f"task of dataset '{self.name}'", name, self.tasks)
        return self.tasks[name]

    def labels(self, task: str) -> tuple[np.ndarray, np.ndarray]:
        """(Y [N, C] float32 multi-hot, valid [N] bool: the example has at least one label)."""
        self.task(task)
        y = self._labels[task].astype(np.float32)
        return y, y.sum(axis=1) > 0

    def texts(self, kind: str = "clean") -> list[str]:
        if kind not in TEXT_KINDS:
            raise unknown_name("report text kind", kind, TEXT_KINDS)
        cols = TEXT_KINDS[kind]
        if any(c not in self.meta.columns for c in cols):
            raise UserError(f"dataset '{self.name}' has no report text")
        parts = [self.meta[c].astype(str).tolist() for c in cols]
        if len(parts) == 1:
            return parts[0]
        return [BOTH_SEPARATOR.join(dict.fromkeys(p.strip() for p in row if p.strip())) for row in zip(*parts)]

    @property
    def examples(self) -> np.ndarray:
        """Evaluation unit per row (rows sharing it have their scores averaged)."""
        return self.meta["example"].astype(str).to_numpy()

    # -- signals -----------------------------------------------------------------------
    def _account(self, idx: np.ndarray) -> None:
        """The split guard and the per-split read counts, for every signal read."""
        split = self.meta["split"].to_numpy()[idx]
        if self._forbidden:
            hit = self._forbidden.intersection(np.unique(split).tolist())
            if hit:
                raise SplitAccessError(
                    f"read of the {sorted(hit)} split of '{self.name}' inside a block that forbids it"
                )
        for s_name, count in zip(*np.unique(split, return_counts=True)):
            self.reads[str(s_name)] = self.reads.get(str(s_name), 0) + int(count)

    def raw(self, idx) -> np.ndarray:
        """Stored signals (mV, stored leads only) for positions ``idx``, in the order given."""
        idx = np.asarray(idx, dtype=np.int64)
        self._account(idx)
        rows = self.rows[idx]
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows),) + self.signals.shape[1:], dtype=np.float32)
        out[order] = self.signals[rows[order]]  # sorted reads are sequential on disk
        if self.signals.nbytes > RELEASE_BYTES:
            self.release_pages()
        return out

    def release_pages(self) -> None:
        """Drop the memory map's pages from this process (they stay in the OS page cache).

        Without this, every page an epoch touches counts towards the process's resident memory
        until the kernel needs it back, so RSS grows to the size of the store."""
        mm = getattr(self.signals, "_mmap", None)
        if mm is None or not hasattr(mm, "madvise"):
            return
        import mmap

        with contextlib.suppress(OSError, ValueError):
            mm.madvise(mmap.MADV_DONTNEED)

    def batch(self, idx, device=None, dtype=None):
        """Normalised [B, 12, T] torch tensor for positions ``idx`` (absent leads are zero).

        float32 unless ``dtype`` is given. After :meth:`to_device` the rows come from the
        resident tensor (already on its device, in its storage dtype, returned as float32)."""
        import torch

        if self._resident is not None:
            idx = np.asarray(idx, dtype=np.int64)
            self._account(idx)
            res = self._resident
            x = res.index_select(0, torch.as_tensor(idx, device=res.device))
            out = torch.zeros((x.shape[0], len(LEADS), x.shape[-1]), dtype=dtype or torch.float32, device=res.device)
            out[:, torch.as_tensor(self.lead_idx, device=res.device)] = x.to(out.dtype)
            return out if device is None else out.to(device, non_blocking=True)
        x = torch.from_numpy(self.raw(idx))  # a fresh array: normalised in place, in two passes
        x.sub_(torch.from_numpy(self.mean)[None, :, None]).div_(torch.from_numpy(self.std)[None, :, None])
        if len(self.lead_idx) == len(LEADS) and (self.lead_idx == np.arange(len(LEADS))).all():
            out = x  # all 12 leads stored in order: nothing to scatter
        else:
            out = torch.zeros((x.shape[0], len(LEADS), x.shape[-1]), dtype=torch.float32)
            out[:, torch.as_tensor(self.lead_idx)] = x
        if dtype is not None:
            out = out.to(dtype)
        if device is not None:
            out = out.to(device, non_blocking=True)
        return out

    def resident_bytes(self, dtype=None) -> int:
        """Bytes :meth:`to_device` would hold (stored leads only)."""
        import torch

        itemsize = torch.empty((), dtype=dtype or torch.float32).element_size()
        return int(len(self) * self.signals.shape[1] * self.n_samples * itemsize)

    def to_device(self, device="cpu", dtype=None, chunk: int = 1024) -> "ECGSet":
        """Hold every example, normalised, as one tensor on ``device`` (``dtype``: float32 by
        default; float16/bfloat16 halve it). ``batch`` then indexes it instead of the memory map.
        Loading reads the store once, in chunks, without touching the split guard or read counts.
        ``to_device(None)`` drops the resident copy again."""
        import torch

        if device is None:
            self._resident = None
            return self
        dtype = dtype or torch.float32
        res = torch.empty((len(self), self.signals.shape[1], self.n_samples), dtype=dtype, device=device)
        mean, std = self.mean[None, :, None], self.std[None, :, None]
        for start in range(0, len(self), chunk):
            rows = self.rows[start : start + chunk]
            x = (np.asarray(self.signals[rows], dtype=np.float32) - mean) / std
            res[start : start + len(rows)] = torch.from_numpy(x).to(device=device, dtype=dtype)
        self.release_pages()
        self._resident = res
        return self

    def summary(self) -> dict:
        """Counts for `data info`: records per split, class counts per task and split, languages."""
        out: dict[str, Any] = {
            "records": int(len(self)),
            "fs": self.fs,
            "samples": self.n_samples,
            "leads": list(self.leads),
            "splits": {s: int(len(np.unique(self.examples[self.split_indices(s)]))) for s in SPLITS},
            "skipped": len(self.manifest.get("skipped", [])),
            "tasks": {},
        }
        # counts are per evaluation unit (a CinC record, not each of its crops)
        first = ~pd.Series(self.examples).duplicated().to_numpy()
        out["examples"] = int(first.sum())
        for name, spec in self.tasks.items():
            y, valid = self.labels(name)
            per = {}
            for s in SPLITS:
                sel = self.split_indices(s)
                sel = sel[valid[sel] & first[sel]]
                per[s] = {c: int(y[sel, j].sum()) for j, c in enumerate(spec.classes)}
            per["unlabelled"] = int((~valid & first).sum())
            out["tasks"][name] = per
        if "language" in self.meta.columns:
            out["languages"] = {k: int(v) for k, v in self.meta["language"].value_counts().items()}
        out.update(self.manifest.get("info", {}))
        return out
