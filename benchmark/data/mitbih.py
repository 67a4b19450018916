"""MIT-BIH Arrhythmia Database: one example per annotated heart beat.

Layout read (PhysioNet ``mitdb`` 1.0.0): ``<data_root>/<subdir>/{RECORDS, NNN.hea, NNN.dat,
NNN.<annotator>}``. The records used are those listed in ``RECORDS`` (if the file exists) or else
every ``*.hea`` in the folder, restricted to the 48 record names of the database; so a partial
download (e.g. the single record in ``../shared/data/mitdb``) works.

Examples
--------
Every beat annotation (an annotation whose symbol is one of the beat symbols in ``AAMI`` below;
rhythm changes ``+``, noise ``~``, comments ``"`` and other non-beat symbols are ignored) becomes
one example: a window of ``params.n_samples`` samples at ``params.fs`` (default 10 s at 100 Hz, the
duration the ECG encoders take; ``window_s`` selects shorter windows) centred on the beat. The whole
MLII channel is resampled once from 360 Hz to ``params.fs`` with ``scipy.signal.resample_poly``;
a beat at 360 Hz sample ``s`` sits at ``c = round(s * fs / 360)`` and its window is
``[c - n // 2, c - n // 2 + n)``; parts of the window outside the record are zeros. Only the MLII
channel is used (found by name in the header), stored as lead ``II``; a record without an MLII
channel (in the full database: 102 and 104, whose upper channel is V5) is skipped and counted.

Tasks (single-label; every row has exactly one class or none)
-------------------------------------------------------------
* ``aami`` -- the five AAMI EC57 beat classes, N = {N, L, R, e, j}, S = {A, a, J, S}, V = {V, E},
  F = {F}, Q = {/, f, Q}. The paced records 102, 104, 107 and 217 are excluded (their rows carry no
  label), as is standard since de Chazal et al. (2004).
* ``pvc`` -- premature ventricular contraction (symbol ``V``) against every other beat, as two
  classes ``("non-V", "V")`` so that binary and multi-class tasks are scored the same way. Paced
  records keep their ``pvc`` labels (a PVC in a paced record is still a PVC); they belong to neither
  DS1 nor DS2, so their split is ``none`` and protocols only see them if they ask for all rows.

With ``annotator="pvc"`` (the 12-record ``mitdb-pvc`` set, whose ``N`` means *any beat that is not
a PVC*), only the ``pvc`` task exists: the AAMI classes cannot be recovered from such labels.

Split (de Chazal et al. 2004, inter-patient)
--------------------------------------------
DS1 -> ``train``, DS2 -> ``test``, applied to the records present. Validation is a patient-wise
hold-out of DS1: of the DS1 records present, in numeric order, every ``val_every``-th (the 5th,
10th, ...) goes to ``val``; if that picks none but two or more DS1 records are present, the last one
does. Records in neither set (the paced ones) get split ``none``. Note that records 201 and 202
come from the same patient yet sit in DS1 and DS2; ``patient`` is the record name, as in the
literature that uses this split.

Options (``default_options``)
-----------------------------
``subdir`` ("mitdb"): folder under the data root. ``annotator`` ("atr"): annotation file extension
(``pvc`` for the shared PVC set). ``val_every`` (5): validation hold-out rule above.

Signal conditioning (run settings ``mitbih_baseline``, ``mitbih_scale``; both off by default, as
the protocol's default was chosen on DS1 -- see ``benchmark/protocols/beat_level.py``):

* ``baseline`` -- ``none`` | ``median``: before resampling, the MLII channel loses its baseline
  wander as de Chazal et al. removed it (200 ms then 600 ms median filters at 360 Hz,
  :func:`benchmark.data.beats.remove_baseline`, no low-pass). The filters look 300 ms ahead.
* ``scale`` -- ``none`` | ``record``: per-record amplitude normalisation. Each beat's window is
  divided by the mean QRS peak-to-peak amplitude (-50 .. +100 ms around the R peak, after the
  baseline step if on) of the record's beats *up to and including this one*, so a window never
  depends on later beats' amplitudes. Gains differ between patients and electrode placements;
  after this a record's typical QRS spans about 1 (unit-free: "QRS amplitudes").

Every option enters the prepared store's cache key, so each conditioning is its own store.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.base import PhysioNetDataset, PrepareParams, Scan, TaskSpec
from benchmark.errors import DataError
from benchmark.registry import register_dataset

FS_SOURCE = 360

# The 48 records of the MIT-BIH Arrhythmia Database.
ALL_RECORDS: tuple[str, ...] = tuple(
    str(r)
    for r in [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 111, 112, 113, 114, 115, 116, 117, 118, 119]
    + [121, 122, 123, 124, 200, 201, 202, 203, 205, 207, 208, 209, 210, 212, 213, 214, 215, 217, 219]
    + [220, 221, 222, 223, 228, 230, 231, 232, 233, 234]
)

# de Chazal, O'Dwyer & Reilly (2004), IEEE TBME 51(7): inter-patient split.
DS1: tuple[str, ...] = tuple(
    "101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230".split()
)
DS2: tuple[str, ...] = tuple(
    "100 103 105 111 113 117 121 123 200 202 210 212 213 214 219 221 222 228 231 232 233 234".split()
)
PACED: tuple[str, ...] = ("102", "104", "107", "217")

# AAMI EC57 beat classes -> MIT-BIH beat symbols.
AAMI: dict[str, tuple[str, ...]] = {
    "N": ("N", "L", "R", "e", "j"),
    "S": ("A", "a", "J", "S"),
    "V": ("V", "E"),
    "F": ("F",),
    "Q": ("/", "f", "Q"),
}
SYMBOL_TO_AAMI: dict[str, str] = {s: c for c, syms in AAMI.items() for s in syms}
AAMI_CLASSES: tuple[str, ...] = tuple(AAMI)
PVC_CLASSES: tuple[str, ...] = ("non-V", "V")

TASKS = {
    "aami": TaskSpec(
        "aami",
        AAMI_CLASSES,
        multilabel=False,
        description="AAMI EC57 beat class: N normal/bundle-branch/escape, S supraventricular ectopic, "
        "V ventricular ectopic, F fusion, Q paced/unclassifiable (paced records excluded)",
    ),
    "pvc": TaskSpec(
        "pvc",
        PVC_CLASSES,
        multilabel=False,
        description="premature ventricular contraction (symbol V) against any other beat",
    ),
}


def _split_of(record: str, val_records: set[str]) -> str:
    if record in val_records:
        return "val"
    if record in DS1:
        return "train"
    if record in DS2:
        return "test"
    return "none"


def validation_records(present: list[str], every: int = 5) -> list[str]:
    """The DS1 records held out for validation (see the module docstring for the rule)."""
    ds1 = sorted((r for r in present if r in DS1), key=int)
    every = max(1, int(every))
    val = [r for i, r in enumerate(ds1) if (i + 1) % every == 0]
    if not val and len(ds1) >= 2:
        val = [ds1[-1]]
    return val


def resample(x: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    """Polyphase resampling along the last axis (identity when the rates are equal)."""
    if fs_in == fs_out:
        return np.asarray(x, dtype=np.float64)
    from scipy.signal import resample_poly

    ratio = Fraction(int(fs_out), int(fs_in))
    return resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)


def cut_windows(x: np.ndarray, centres: np.ndarray, n: int) -> np.ndarray:
    """Windows of ``n`` samples of the 1-D signal ``x`` centred on ``centres``, zero outside ``x``."""
    starts = np.asarray(centres, dtype=np.int64) - n // 2
    pad = n  # enough zeros on both sides for any centre inside the record
    padded = np.zeros(len(x) + 2 * pad, dtype=np.float32)
    padded[pad : pad + len(x)] = x
    starts = np.clip(starts + pad, 0, len(padded) - n)  # centres outside the record clamp to zeros
    idx = starts[:, None] + np.arange(n)[None, :]
    return padded[idx]


def causal_qrs_scale(x: np.ndarray, samples: np.ndarray, fs: float = FS_SOURCE) -> np.ndarray:
    """Per beat at ``samples`` (R peaks of the 1-D signal ``x`` at ``fs`` Hz, any order): the mean
    QRS peak-to-peak amplitude (-50 .. +100 ms) of the beats at or before it, at least 1e-3 (a
    flat stretch never divides by zero). Ties in ``samples`` count together."""
    samples = np.asarray(samples, dtype=np.int64)
    if len(samples) == 0:
        return np.zeros(0, dtype=np.float32)
    off = np.arange(int(round(-0.05 * fs)), int(round(0.1 * fs)) + 1)
    seg = np.asarray(x, dtype=np.float64)[np.clip(samples[:, None] + off[None, :], 0, len(x) - 1)]
    amp = np.ptp(seg, axis=1)
    order = np.argsort(samples, kind="stable")
    run = np.cumsum(amp[order]) / np.arange(1, len(samples) + 1)
    ends = np.searchsorted(samples[order], samples[order], side="right") - 1  # last beat at the same sample
    out = np.empty(len(samples))
    out[order] = run[ends]
    return np.maximum(out, 1e-3).astype(np.float32)


@register_dataset("mitbih", aliases=("mitdb",), description="MIT-BIH Arrhythmia: beat windows, AAMI and PVC tasks")
class MITBIH(PhysioNetDataset):
    """MIT-BIH Arrhythmia Database as beat-centred windows (see the module docstring)."""

    name = "mitbih"
    title = "MIT-BIH"
    download_name = "mitbih"
    version = "1"  # bump when the examples or labels change: it enters the store's cache key
    leads: tuple[str, ...] = ("II",)
    beat_centred = True  # one example per beat, its window centred on it: beat-level heads apply
    default_options: dict = {"subdir": "mitdb", "annotator": "atr", "val_every": 5, "baseline": "none", "scale": "none"}
    option_choices: dict = {"baseline": ("none", "median"), "scale": ("none", "record")}

    # -- contract ------------------------------------------------------------------------
    @classmethod
    def records(cls, root: Path) -> list[str]:
        """Record names present: from ``RECORDS`` if it exists, else from the ``*.hea`` files."""
        listing = root / "RECORDS"
        if listing.is_file():
            names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
        else:
            names = [p.stem for p in root.glob("*.hea")]
        names = sorted({n for n in names if n in ALL_RECORDS}, key=int)
        if not names:
            raise DataError(
                f"no MIT-BIH record found in '{root}' (expected RECORDS or NNN.hea files of the 48 records)"
            )
        return names

    @classmethod
    def source_files(cls, root: Path, params: PrepareParams) -> list[Path]:
        ann = str(cls._opt(params, "annotator"))
        out = [root / "RECORDS"] if (root / "RECORDS").is_file() else []
        for rec in cls.records(root):
            out += [root / f"{rec}.hea", root / f"{rec}.dat", root / f"{rec}.{ann}"]
        return out  # missing files are fingerprinted as missing by the store

    @classmethod
    def scan(cls, root: Path, params: PrepareParams) -> Scan:
        import wfdb

        ann_ext = str(cls._opt(params, "annotator"))
        pvc_only = ann_ext == "pvc"
        present = cls.records(root)
        frames, skipped, usable = [], [], []
        for rec in present:
            reason = cls._check_record(root, rec, ann_ext)
            if reason:
                skipped.append({"id": rec, "reason": reason})
                continue
            try:
                ann = wfdb.rdann(str(root / rec), ann_ext)
            except Exception as exc:  # corrupt annotation file
                skipped.append({"id": rec, "reason": f"cannot read '{root / f'{rec}.{ann_ext}'}': {exc}"})
                continue
            symbols = np.asarray(ann.symbol, dtype=object)
            samples = np.asarray(ann.sample, dtype=np.int64)
            keep = np.array([s in SYMBOL_TO_AAMI for s in symbols], dtype=bool)
            if pvc_only:
                keep = np.isin(symbols, ["N", "V"])
            usable.append(rec)
            frames.append(
                pd.DataFrame(
                    {"record": rec, "sample": samples[keep], "symbol": symbols[keep].astype(str)}
                )
            )
        if not frames:
            first = skipped[0]["reason"] if skipped else "no beats"
            raise DataError(f"no usable MIT-BIH record in '{root}': {first}")

        val = set(validation_records(usable, int(cls._opt(params, "val_every"))))
        meta = pd.concat(frames, ignore_index=True)
        meta["id"] = meta["record"] + ":" + meta["sample"].astype(str)
        meta["example"] = meta["id"]
        meta["patient"] = meta["record"]
        meta["source"] = meta["record"]
        meta["split"] = [_split_of(r, val) for r in meta["record"]]
        meta = meta[["id", "example", "patient", "source", "record", "sample", "symbol", "split"]]

        sym = meta["symbol"].to_numpy()
        labels: dict[str, np.ndarray] = {}
        pvc = np.zeros((len(meta), 2), dtype=np.uint8)
        is_v = sym == "V"
        pvc[is_v, 1] = 1
        pvc[~is_v, 0] = 1
        labels["pvc"] = pvc
        tasks = {"pvc": TASKS["pvc"]}
        if not pvc_only:
            aami = np.zeros((len(meta), len(AAMI_CLASSES)), dtype=np.uint8)
            cls_idx = np.array([AAMI_CLASSES.index(SYMBOL_TO_AAMI[s]) for s in sym], dtype=np.int64)
            paced = meta["record"].isin(PACED).to_numpy()
            rows = np.flatnonzero(~paced)
            aami[rows, cls_idx[rows]] = 1
            labels["aami"] = aami
            tasks = {"aami": TASKS["aami"], "pvc": TASKS["pvc"]}
        info = {
            "annotator": ann_ext,
            "records_present": len(present),
            "records_used": len(usable),
            "validation_records": sorted(val, key=int),
        }
        return Scan(meta=meta, leads=cls.leads, tasks=tasks, labels=labels, skipped=skipped, info=info)

    @classmethod
    def read_group(cls, root: Path, rows: pd.DataFrame, params: PrepareParams) -> np.ndarray:
        """Beat windows [len(rows), 1, n_samples] (mV) of the one record all ``rows`` come from."""
        records = rows["source"].unique()
        if len(records) != 1:
            raise ValueError(f"read_group expects rows of one record, got {list(records)}")
        rec = str(records[0])
        baseline, scale = cls._choice(params, "baseline"), cls._choice(params, "scale")
        x = cls.read_mlii(root, rec)
        if baseline == "median":
            from benchmark.data.beats import remove_baseline

            x = remove_baseline(x, FS_SOURCE, lowpass_hz=None)
        y = resample(x, FS_SOURCE, params.fs).astype(np.float32)
        samples = rows["sample"].to_numpy(np.int64)
        centres = np.rint(samples * params.fs / FS_SOURCE).astype(np.int64)
        windows = cut_windows(y, centres, params.n_samples)
        if scale == "record":
            windows /= causal_qrs_scale(x, samples)[:, None]
        return windows[:, None, :]

    @classmethod
    def _choice(cls, params: PrepareParams, key: str) -> str:
        value = str(cls._opt(params, key))
        if value not in cls.option_choices[key]:
            from benchmark.errors import unknown_name

            raise unknown_name(f"MIT-BIH option '{key}'", value, cls.option_choices[key])
        return value

    # -- helpers -------------------------------------------------------------------------
    @staticmethod
    def _check_record(root: Path, rec: str, ann_ext: str) -> str | None:
        """Why a record cannot be used (missing annotation, wrong rate, no MLII), or None."""
        import wfdb

        ann_path = root / f"{rec}.{ann_ext}"
        if not ann_path.is_file():
            return f"annotation file '{ann_path}' is missing (annotator '{ann_ext}')"
        hea = root / f"{rec}.hea"
        try:
            header = wfdb.rdheader(str(root / rec))
        except Exception as exc:
            return f"cannot read header '{hea}': {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        if int(round(float(header.fs))) != FS_SOURCE:
            return f"header '{hea}' says {header.fs:g} Hz, expected {FS_SOURCE} Hz for MIT-BIH"
        if "MLII" not in (header.sig_name or []):
            return f"header '{hea}' has no MLII channel (channels: {', '.join(header.sig_name or [])})"
        return None

    @staticmethod
    def read_mlii(root: Path, rec: str) -> np.ndarray:
        """The MLII channel of one record in mV at 360 Hz (``DataError`` naming the file if unusable)."""
        import wfdb

        hea = root / f"{rec}.hea"
        try:
            header = wfdb.rdheader(str(root / rec))
        except FileNotFoundError:
            raise DataError(f"MIT-BIH header '{hea}' is missing") from None
        except Exception as exc:
            raise DataError(f"cannot read MIT-BIH header '{hea}': {exc}") from None
        if int(round(float(header.fs))) != FS_SOURCE:
            raise DataError(f"header '{hea}' says {header.fs:g} Hz, expected {FS_SOURCE} Hz for MIT-BIH")
        names = list(header.sig_name or [])
        if "MLII" not in names:
            raise DataError(f"header '{hea}' has no MLII channel (channels: {', '.join(names)})")
        dat = root / header.file_name[names.index("MLII")]
        try:
            record = wfdb.rdrecord(str(root / rec), channels=[names.index("MLII")])
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"cannot read MIT-BIH signal '{dat}' (missing or truncated?): {msg}") from None
        x = np.asarray(record.p_signal[:, 0], dtype=np.float64)
        if len(x) < header.sig_len:
            raise DataError(f"MIT-BIH signal '{dat}' is truncated: {len(x)} of {header.sig_len} samples")
        if not np.isfinite(x).all():
            raise DataError(f"MIT-BIH signal '{dat}' contains NaN values")
        if np.ptp(x) == 0:
            raise DataError(f"MIT-BIH signal '{dat}' is flat (constant)")
        return x
