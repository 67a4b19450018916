"""PhysioNet/Computing in Cardiology Challenge 2017: AF classification from single-lead ECGs.

Layout read (PhysioNet ``challenge-2017/1.0.0/training``): ``<data_root>/<subdir>/REFERENCE.csv``
plus one ``<record>.hea`` / ``<record>.mat`` pair per record (WFDB format 16 inside a MATLAB v4
file, gain 1000/mV). ``REFERENCE.csv`` has rows ``record,label`` with labels N (normal sinus
rhythm), A (atrial fibrillation), O (other rhythm), ~ (too noisy to classify); the copy in
``../shared/data`` starts with a header line ``data_source,class``, the original PhysioNet file has
none: both are accepted. Every record listed there is an example; a listed record whose files are
missing or unreadable is skipped and counted by the store (``DataError`` from ``read_group``).

Signals: single lead at 300 Hz, 9-61 s long, recorded with an AliveCor device held between the
hands, i.e. lead I, stored as lead ``I``. Each record is resampled once from 300 Hz to
``params.fs`` with ``scipy.signal.resample_poly``.

Crop rule
---------
The encoders take fixed windows of ``params.n_samples`` (default 10 s at 100 Hz). Each record of
``L`` samples (after resampling) gives ``n_crops`` windows whose starts are evenly spaced from 0 to
``L - n_samples``, rounded to whole samples: the first window starts at the record's start and the
last one ends at its end (``n_crops = 1``: a single window at the start). A record shorter than the
window gives ``n_crops`` identical copies of itself zero-padded at the end. One metadata row per
crop; ``example`` is the record name, so evaluation averages the crops' scores per record.

Tasks (single-label)
--------------------
* ``rhythm``: the four challenge classes ``("N", "A", "O", "~")``.
* ``af``: atrial fibrillation against everything else (normal, other, noisy) as two classes
  ``("non-AF", "AF")``.

Split
-----
Record-level stratified train/val/test split, deterministic for a given ``split_seed``: for each
class (in the order N, A, O, ~) its records, sorted by name, are permuted with
``numpy.random.default_rng(split_seed)`` (one generator for the whole split); the first
``round(test_frac * n_class)`` go to ``test``, the next ``round(val_frac * n_class)`` to ``val``, the
rest to ``train``. Class proportions are therefore kept in every split up to rounding, and all
crops of a record share its split. The challenge's hidden test set is not public, so this split is
the suite's own; the recordings carry no patient identifiers, so ``patient`` is the record name.

Options (``default_options``)
-----------------------------
``subdir`` ("cinc2017"), ``reference`` ("REFERENCE.csv"; ``REFERENCE-original.csv`` selects the
first-release labels), ``n_crops`` (3), ``split_seed`` (0), ``val_frac`` (0.15), ``test_frac`` (0.15).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.base import PhysioNetDataset, PrepareParams, Scan, TaskSpec
from benchmark.data.mitbih import resample
from benchmark.errors import DataError
from benchmark.registry import register_dataset

FS_SOURCE = 300
CLASSES: tuple[str, ...] = ("N", "A", "O", "~")
CLASS_NAMES = {"N": "normal sinus rhythm", "A": "atrial fibrillation", "O": "other rhythm", "~": "noisy"}
AF_CLASSES: tuple[str, ...] = ("non-AF", "AF")

TASKS = {
    "rhythm": TaskSpec(
        "rhythm",
        CLASSES,
        multilabel=False,
        description="N normal sinus rhythm, A atrial fibrillation, O other rhythm, ~ too noisy",
    ),
    "af": TaskSpec("af", AF_CLASSES, multilabel=False, description="atrial fibrillation against any other class"),
}


def read_reference(path: Path) -> pd.DataFrame:
    """``REFERENCE.csv`` as a frame (record, label), with or without a header line.

    Raises a one-line ``DataError`` naming the file and line for an unknown label, a malformed or
    duplicated row.
    """
    if not path.is_file():
        raise DataError(
            f"CinC 2017 label file '{path}' is missing: download the training set with "
            f"'python -m benchmark data download cinc2017 --to DIR'"
        )
    records, labels, seen = [], [], set()
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            row = [c.strip() for c in row]
            if not row or not any(row):
                continue
            if lineno == 1 and row[-1] not in CLASSES and len(row[-1]) > 1:  # header 'data_source,class'
                continue
            if len(row) != 2 or not row[0]:
                raise DataError(f"'{path}' line {lineno}: expected 'record,label', got '{','.join(row)}'")
            rec, lab = row
            rec = rec.rsplit("/", 1)[-1]  # some copies list 'A00/A00001' (PhysioNet's sub-folders)
            if lab not in CLASSES:
                raise DataError(
                    f"'{path}' line {lineno}: unknown label '{lab}' for record {rec} (expected one of N, A, O, ~)"
                )
            if rec in seen:
                raise DataError(f"'{path}' line {lineno}: record {rec} listed twice")
            seen.add(rec)
            records.append(rec)
            labels.append(lab)
    if not records:
        raise DataError(f"CinC 2017 label file '{path}' lists no record")
    return pd.DataFrame({"record": records, "label": labels})


def stratified_split(
    records: list[str], labels: list[str], seed: int, val_frac: float, test_frac: float
) -> dict[str, str]:
    """record -> 'train'/'val'/'test' by the per-class rule of the module docstring."""
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise DataError(f"val_frac={val_frac} and test_frac={test_frac} must be in [0, 1) and sum below 1")
    rng = np.random.default_rng(int(seed))
    by_class: dict[str, list[str]] = {}
    for rec, lab in zip(records, labels):
        by_class.setdefault(lab, []).append(rec)
    out: dict[str, str] = {}
    for lab in CLASSES:
        recs = sorted(by_class.get(lab, []))
        if not recs:
            continue
        perm = [recs[i] for i in rng.permutation(len(recs))]
        n_test = int(round(test_frac * len(recs)))
        n_val = int(round(val_frac * len(recs)))
        for i, rec in enumerate(perm):
            out[rec] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def crop_starts(length: int, n: int, n_crops: int) -> np.ndarray:
    """Start samples of the ``n_crops`` windows of ``n`` samples in a record of ``length`` samples."""
    if length <= n or n_crops == 1:
        return np.zeros(n_crops, dtype=np.int64)
    return np.rint(np.linspace(0, length - n, n_crops)).astype(np.int64)


def crops(x: np.ndarray, n: int, n_crops: int) -> np.ndarray:
    """[n_crops, n] windows of the 1-D signal ``x`` by the crop rule (zero-padded if short)."""
    if len(x) < n:
        x = np.concatenate([x, np.zeros(n - len(x), dtype=x.dtype)])
    starts = crop_starts(len(x), n, n_crops)
    return np.stack([x[s : s + n] for s in starts]).astype(np.float32)


_GAIN = re.compile(r"^([-+0-9.eE]+)(?:\(([-0-9]+)\))?(?:/(\S+))?$")


def _parse_header(hea: Path) -> dict:
    """The few fields of a single-signal WFDB header that CinC needs (fast; wfdb.rdheader is ~1 ms).

    Returns fs, sig_len, file, fmt, gain, baseline, units; raises ValueError on anything unexpected.
    """
    lines = [ln.strip() for ln in hea.read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    rec = lines[0].split()
    nsig = int(rec[1])
    fs = float(rec[2].split("/")[0].split("(")[0])
    sig_len = int(rec[3])
    if nsig != 1:
        raise ValueError(f"{nsig} signals, expected 1")
    sig = lines[1].split()
    fmt = sig[1].split("x")[0].split(":")[0].split("+")[0]
    m = _GAIN.match(sig[2]) if len(sig) > 2 else None
    gain = float(m.group(1)) if m else 200.0
    gain = gain if gain != 0 else 200.0
    adc_zero = int(sig[4]) if len(sig) > 4 else 0
    baseline = int(m.group(2)) if m and m.group(2) is not None else adc_zero
    units = (m.group(3) if m else None) or "mV"
    return {"fs": fs, "sig_len": sig_len, "file": sig[0], "fmt": fmt, "gain": gain, "baseline": baseline,
            "units": units}


def read_signal(root: Path, rec: str) -> np.ndarray:
    """One CinC record in mV at 300 Hz (``DataError`` naming the file for any problem).

    The ``.mat`` file is read with ``scipy.io.loadmat`` (``val``: int16 ADC units) and scaled with the
    header's gain and baseline, ten times faster than ``wfdb.rdrecord``; headers that are not the
    usual format-16 ``.mat`` fall back to ``wfdb.rdrecord``. ``tests/test_cinc2017.py`` checks
    that both give identical values.
    """
    hea = root / f"{rec}.hea"
    if not hea.is_file():
        raise DataError(f"CinC 2017 header '{hea}' is missing (record listed in REFERENCE.csv)")
    try:
        h = _parse_header(hea)
    except Exception as exc:
        raise DataError(f"cannot parse CinC 2017 header '{hea}': {exc}") from None
    if int(round(h["fs"])) != FS_SOURCE:
        raise DataError(f"header '{hea}' says {h['fs']:g} Hz, expected {FS_SOURCE} Hz for CinC 2017")
    sig_path = root / h["file"]
    if not sig_path.is_file():
        raise DataError(f"CinC 2017 signal file '{sig_path}' is missing")
    try:
        if h["file"].endswith(".mat") and h["fmt"] == "16" and h["units"].lower() == "mv":
            from scipy.io import loadmat

            val = np.asarray(loadmat(str(sig_path))["val"], dtype=np.float64).reshape(-1)
            x = (val - h["baseline"]) / h["gain"]
        else:
            import wfdb

            x = np.asarray(wfdb.rdrecord(str(root / rec)).p_signal[:, 0], dtype=np.float64)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read CinC 2017 signal '{sig_path}' (corrupt or truncated?): {msg}") from None
    if len(x) != h["sig_len"]:
        raise DataError(f"CinC 2017 signal '{sig_path}' has {len(x)} samples, header says {h['sig_len']}")
    if not np.isfinite(x).all():
        raise DataError(f"CinC 2017 signal '{sig_path}' contains NaN values")
    if len(x) == 0 or np.ptp(x) == 0:
        raise DataError(f"CinC 2017 signal '{sig_path}' is flat (constant)")
    return x


@register_dataset("cinc2017", aliases=("challenge-2017",), description="PhysioNet/CinC Challenge 2017: single-lead AF classification")
class CinC2017(PhysioNetDataset):
    """CinC 2017 training set as fixed-length crops (see the module docstring)."""

    name = "cinc2017"
    title = "CinC 2017"
    download_name = "cinc2017"
    version = "1"  # bump when the examples or labels change: it enters the store's cache key
    leads: tuple[str, ...] = ("I",)
    default_options: dict = {
        "subdir": "cinc2017",
        "reference": "REFERENCE.csv",
        "n_crops": 3,
        "split_seed": 0,
        "val_frac": 0.15,
        "test_frac": 0.15,
    }

    @classmethod
    def source_files(cls, root: Path, params: PrepareParams) -> list[Path]:
        """The label file plus every listed record's header and signal file (missing ones too: the
        store fingerprints them as missing, so a record that appears later changes the key)."""
        ref = root / str(cls._opt(params, "reference"))
        out = [ref]
        for rec in read_reference(ref)["record"]:
            out += [root / f"{rec}.hea", root / f"{rec}.mat"]
        return out

    @classmethod
    def scan(cls, root: Path, params: PrepareParams) -> Scan:
        ref = read_reference(root / str(cls._opt(params, "reference")))
        n_crops = int(cls._opt(params, "n_crops"))
        if n_crops < 1:
            raise DataError(f"option n_crops={n_crops} must be at least 1")
        split = stratified_split(
            ref["record"].tolist(),
            ref["label"].tolist(),
            seed=int(cls._opt(params, "split_seed")),
            val_frac=float(cls._opt(params, "val_frac")),
            test_frac=float(cls._opt(params, "test_frac")),
        )
        rec = np.repeat(ref["record"].to_numpy(dtype=object), n_crops)
        lab = np.repeat(ref["label"].to_numpy(dtype=object), n_crops)
        crop = np.tile(np.arange(n_crops), len(ref))
        meta = pd.DataFrame(
            {
                "id": [f"{r}:{k}" for r, k in zip(rec, crop)],
                "example": rec,
                "patient": rec,
                "source": rec,
                "record": rec,
                "crop": crop,
                "label": lab,
                "split": [split[r] for r in rec],
            }
        )
        cls_idx = np.array([CLASSES.index(x) for x in lab], dtype=np.int64)
        rhythm = np.zeros((len(meta), len(CLASSES)), dtype=np.uint8)
        rhythm[np.arange(len(meta)), cls_idx] = 1
        af = np.zeros((len(meta), 2), dtype=np.uint8)
        is_af = lab == "A"
        af[is_af, 1] = 1
        af[~is_af, 0] = 1
        info = {
            "records_listed": int(len(ref)),
            "crops_per_record": n_crops,
            "record_classes": {c: int((ref["label"] == c).sum()) for c in CLASSES},
        }
        return Scan(
            meta=meta,
            leads=cls.leads,
            tasks=dict(TASKS),
            labels={"rhythm": rhythm, "af": af},
            info=info,
        )

    @classmethod
    def read_group(cls, root: Path, rows: pd.DataFrame, params: PrepareParams) -> np.ndarray:
        """The crops [len(rows), 1, n_samples] (mV) of the one record all ``rows`` come from."""
        records = rows["source"].unique()
        if len(records) != 1:
            raise ValueError(f"read_group expects rows of one record, got {list(records)}")
        x = resample(read_signal(root, str(records[0])), FS_SOURCE, params.fs).astype(np.float32)
        n_crops = int(cls._opt(params, "n_crops"))
        windows = crops(x, params.n_samples, n_crops)
        return windows[rows["crop"].to_numpy(np.int64)][:, None, :]
