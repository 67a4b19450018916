"""PTB-XL (Wagner et al. 2020, PhysioNet 1.0.3): 12-lead 10 s ECGs with SCP-ECG statements and reports.

Files read (PhysioNet layout under ``<data_root>/ptb-xl``): ``ptbxl_database.csv`` (one row per
ECG; ``scp_codes`` is a Python dict literal ``{statement: likelihood}``), ``scp_statements.csv``
(the 71 statements with their ``diagnostic``/``form``/``rhythm`` flags and diagnostic
class/subclass), and the WFDB records named by ``filename_lr`` (100 Hz) or ``filename_hr`` (500 Hz).

Tasks (multi-label), aggregated exactly as in the PTB-XL benchmark (Strodthoff et al. 2020, and
the authors' ``example_physionet.py``): every key of ``scp_codes`` that is a row of
``scp_statements.csv`` counts, *whatever its likelihood* (a likelihood of 0 still keeps the key,
as in the original code).

* ``all`` -- the 71 statements; ``diagnostic`` -- the 44 with ``diagnostic == 1``;
* ``subdiagnostic`` -- their ``diagnostic_subclass`` (23); ``superdiagnostic`` -- their
  ``diagnostic_class`` in the canonical order NORM, MI, STTC, CD, HYP;
* ``form`` -- the 19 with ``form == 1``; ``rhythm`` -- the 12 with ``rhythm == 1``.

Classes are the statements/classes defined in ``scp_statements.csv`` (sorted), so the class list
does not depend on which records are present. A record without any label for a task keeps an
all-zero row (``ECGSet.labels`` reports it as ``valid=False``); the counts per task are in
``Scan.info['unlabelled']``.

Splits follow the recommended ``strat_fold``: 1-8 train, 9 validation, 10 test.

Signals: the 100 Hz files when the target rate is <= 100 Hz, else the 500 Hz files; resampled
with ``scipy.signal.resample_poly`` (exact up/down factors from the gcd) when the target rate
differs, then cut or zero-padded to ``params.n_samples``. The header's rate must be 100 resp. 500
Hz and all 12 standard leads must be present, otherwise the record raises ``DataError``.

Reports: ``report_raw`` as in the CSV, ``report_clean`` / ``report_en`` / ``language`` from
``benchmark.data.reports_text``. Records with an empty report are *kept* (their labels and
signals are valid) with ``report_clean == ""``; they are counted in ``Scan.info['empty_reports']``
and a text-based method such as METS can drop them with ``meta.report_clean != ""``.

Options (``default_options``): ``limit`` -- keep only the first ``limit`` records by ``ecg_id``
(0 = all); used for quick tests and smoke runs, and part of the cache key like every option.
"""

from __future__ import annotations

import ast
from collections import Counter
from math import gcd
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.base import LEADS, PrepareParams, Scan, TaskSpec, lead_index
from benchmark.errors import DataError
from benchmark.io import read_csv_checked
from benchmark.paths import DATASET_DIRS
from benchmark.registry import register_dataset

DATABASE_CSV = "ptbxl_database.csv"
STATEMENTS_CSV = "scp_statements.csv"
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
FOLD_SPLIT = {**{f: "train" for f in range(1, 9)}, 9: "val", 10: "test"}
REQUIRED_COLUMNS = ("ecg_id", "patient_id", "report", "scp_codes", "strat_fold", "filename_lr", "filename_hr")


def file_rate(fs: int) -> tuple[str, int]:
    """Which record column and native rate PTB-XL reads for a target rate ``fs``."""
    return ("filename_lr", 100) if fs <= 100 else ("filename_hr", 500)


def read_statements(root: Path) -> pd.DataFrame:
    path = root / STATEMENTS_CSV
    if not path.is_file():
        raise DataError(f"PTB-XL statement table '{path}' is missing: download PTB-XL completely")
    return read_csv_checked(path, ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"),
                            "is it PTB-XL's scp_statements.csv?", index_col=0)


def read_database(root: Path) -> pd.DataFrame:
    path = root / DATABASE_CSV
    if not path.is_file():
        raise DataError(f"PTB-XL table '{path}' is missing: download PTB-XL completely")
    df = read_csv_checked(path, REQUIRED_COLUMNS, "is it PTB-XL's ptbxl_database.csv?")
    return df.sort_values("ecg_id").reset_index(drop=True)


def task_classes(statements: pd.DataFrame) -> dict[str, tuple[tuple[str, ...], dict[str, list[str]]]]:
    """task -> (classes, {statement code -> the classes it counts for})."""
    st = statements
    diag = st[st["diagnostic"] == 1]
    out: dict[str, tuple[tuple[str, ...], dict[str, list[str]]]] = {}
    out["all"] = (tuple(sorted(st.index)), {c: [c] for c in st.index})
    out["diagnostic"] = (tuple(sorted(diag.index)), {c: [c] for c in diag.index})
    sub = {c: [str(s)] for c, s in diag["diagnostic_subclass"].items()}
    out["subdiagnostic"] = (tuple(sorted({v[0] for v in sub.values()})), sub)
    sup = {c: [str(s)] for c, s in diag["diagnostic_class"].items()}
    found = {v[0] for v in sup.values()}
    order = tuple(c for c in SUPERCLASSES if c in found) + tuple(sorted(found - set(SUPERCLASSES)))
    out["superdiagnostic"] = (order, sup)
    form = st[st["form"] == 1]
    out["form"] = (tuple(sorted(form.index)), {c: [c] for c in form.index})
    rhy = st[st["rhythm"] == 1]
    out["rhythm"] = (tuple(sorted(rhy.index)), {c: [c] for c in rhy.index})
    return out


DESCRIPTIONS = {
    "all": "all SCP-ECG statements",
    "diagnostic": "diagnostic statements",
    "subdiagnostic": "diagnostic subclasses",
    "superdiagnostic": "diagnostic superclasses NORM, MI, STTC, CD, HYP",
    "form": "form statements",
    "rhythm": "rhythm statements",
}


@register_dataset("ptbxl", aliases=("ptb-xl",), description="PTB-XL: 12-lead 10 s ECGs, SCP statements, device reports")
class PTBXL:
    """PTB-XL loader following the data contract of ``benchmark.data.base``."""

    default_options: dict = {"limit": 0}
    version = "1"

    @classmethod
    def root(cls, data_root: Path, params: PrepareParams) -> Path:
        root = Path(data_root) / DATASET_DIRS["ptbxl"]
        if not root.is_dir():
            raise DataError(
                f"PTB-XL folder '{root}' not found: download it with "
                f"'python -m benchmark data download ptbxl --to {data_root}'"
            )
        if not (root / DATABASE_CSV).is_file():
            raise DataError(f"PTB-XL table '{root / DATABASE_CSV}' is missing: download PTB-XL completely")
        return root

    @classmethod
    def _database(cls, root: Path, params: PrepareParams) -> pd.DataFrame:
        df = read_database(root)
        limit = int(params.option("limit", 0) or 0)
        if limit > 0:
            df = df.iloc[:limit]
        return df

    @classmethod
    def source_files(cls, root: Path, params: PrepareParams) -> list[Path]:
        from benchmark.data.report_coverage import SEEN_PATH
        from benchmark.data.reports_text import GLOSSARY_PATH

        col, _ = file_rate(params.fs)
        df = cls._database(root, params)
        files = [root / DATABASE_CSV, root / STATEMENTS_CSV, GLOSSARY_PATH, SEEN_PATH]
        for name in df[col].astype(str):
            files.append(root / f"{name}.hea")
            files.append(root / f"{name}.dat")
        return files

    @classmethod
    def scan(cls, root: Path, params: PrepareParams) -> Scan:
        from benchmark.data.report_coverage import glossary_coverage, in_sample
        from benchmark.data.reports_text import (
            annotation_counts,
            clean_report,
            detect_language,
            to_english,
            untranslated_words,
        )

        statements = read_statements(root)
        df = cls._database(root, params)
        col, _ = file_rate(params.fs)

        skipped: list[dict] = []
        codes: list[dict] = []
        keep = []
        for i, (eid, text) in enumerate(zip(df["ecg_id"], df["scp_codes"])):
            try:
                d = ast.literal_eval(str(text))
                if not isinstance(d, dict):
                    raise ValueError("not a dict")
            except (ValueError, SyntaxError) as exc:
                skipped.append({"id": str(eid), "reason": f"unreadable scp_codes ({exc})"})
                continue
            keep.append(i)
            codes.append(d)
        df = df.iloc[keep].reset_index(drop=True)

        raw = df["report"].fillna("").astype(str).tolist()
        clean = [clean_report(t) for t in raw]
        lang = [detect_language(t) for t in clean]
        english = [to_english(t, lg) for t, lg in zip(clean, lang)]
        seen = in_sample(df["ecg_id"])

        def _patient(v) -> str:
            return str(int(v)) if pd.notna(v) else ""

        fold = pd.to_numeric(df["strat_fold"], errors="coerce")
        ids = df["ecg_id"].astype(int).astype(str)
        patients = [_patient(v) or f"ecg{e}" for v, e in zip(df["patient_id"], ids)]
        meta = pd.DataFrame(
            {
                "id": ids,
                "example": ids,
                "patient": patients,
                "split": [FOLD_SPLIT.get(int(f), "none") if pd.notna(f) else "none" for f in fold],
                "source": df[col].astype(str),
                "strat_fold": fold.fillna(0).astype(int),
                "age": pd.to_numeric(df.get("age"), errors="coerce").astype("float32"),
                "sex": pd.to_numeric(df.get("sex"), errors="coerce").astype("float32"),
                "report_raw": raw,
                "report_clean": clean,
                "report_en": english,
                "language": lang,
            }
        )

        tasks: dict[str, TaskSpec] = {}
        labels: dict[str, np.ndarray] = {}
        unlabelled: dict[str, int] = {}
        for name, (classes, mapping) in task_classes(statements).items():
            index = {c: j for j, c in enumerate(classes)}
            y = np.zeros((len(df), len(classes)), dtype=np.uint8)
            for i, d in enumerate(codes):
                for code in d:
                    for cls_ in mapping.get(code, ()):
                        y[i, index[cls_]] = 1
            tasks[name] = TaskSpec(name, classes, multilabel=True, description=DESCRIPTIONS[name])
            labels[name] = y
            unlabelled[name] = int((y.sum(axis=1) == 0).sum())

        info = {
            "unlabelled": unlabelled,
            "empty_reports": int(sum(1 for t in clean if not t)),
            "edit_annotations_removed": int(sum(1 for t in raw if "edit:" in t.lower())),
            "annotations_removed": annotation_counts(raw),
            "glossary_coverage": glossary_coverage(clean, lang),
            # on the reports the glossary was not written from (see docs/report_text.md)
            "glossary_coverage_out_of_sample": glossary_coverage(
                [c for c, s in zip(clean, seen) if not s], [lg for lg, s in zip(lang, seen) if not s]
            ),
            "untranslated_out_of_sample": [
                {"language": lg, "word": w, "count": n}
                for (lg, w), n in Counter(
                    (lg, w) for c, lg, s in zip(clean, lang, seen) if not s for w in untranslated_words(c, lg)
                ).most_common(10)
            ],
            "signal_files": col,
        }
        return Scan(meta=meta, leads=LEADS, tasks=tasks, labels=labels, skipped=skipped, info=info)

    @classmethod
    def read_group(cls, root: Path, rows: pd.DataFrame, params: PrepareParams) -> np.ndarray:
        out = np.empty((len(rows), len(LEADS), params.n_samples), dtype=np.float32)
        for k, source in enumerate(rows["source"].astype(str)):
            out[k] = read_record(root / source, params)
        return out


def read_record(path: Path, params: PrepareParams) -> np.ndarray:
    """One PTB-XL record as [12, n_samples] float32 mV at ``params.fs`` (LEADS order)."""
    import wfdb
    from scipy.signal import resample_poly

    _, native = file_rate(params.fs)
    for ext in (".hea", ".dat"):
        if not Path(f"{path}{ext}").is_file():
            raise DataError(f"PTB-XL record file '{path}{ext}' is missing: re-download PTB-XL")
    try:
        rec = wfdb.rdrecord(str(path))
    except Exception as exc:  # wfdb raises many types for corrupt headers/short files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read PTB-XL record '{path}': {msg}; re-download this record") from exc
    if int(round(rec.fs)) != native:
        raise DataError(f"PTB-XL record '{path}' has sampling rate {rec.fs} Hz, expected {native} Hz")
    sig = rec.p_signal
    if sig is None or sig.ndim != 2 or sig.shape[0] < rec.sig_len or sig.shape[0] == 0:
        raise DataError(f"PTB-XL record '{path}' is truncated; re-download this record")
    try:
        order = [lead_index(n) for n in rec.sig_name]
    except Exception as exc:
        raise DataError(f"PTB-XL record '{path}': {exc}") from exc
    if sorted(order) != list(range(len(LEADS))):
        raise DataError(f"PTB-XL record '{path}' does not have the 12 standard leads ({rec.sig_name})")
    x = np.empty((len(LEADS), sig.shape[0]), dtype=np.float64)
    x[order] = sig.T
    if params.fs != native:
        g = gcd(int(params.fs), native)
        x = resample_poly(x, int(params.fs) // g, native // g, axis=1)
    n = params.n_samples
    if x.shape[1] >= n:
        x = x[:, :n]
    else:
        x = np.pad(x, ((0, 0), (0, n - x.shape[1])))
    return x.astype(np.float32)
