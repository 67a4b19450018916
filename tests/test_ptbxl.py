"""PTB-XL loader on the real shared slice: labels as the PTB-XL authors aggregate them, signals
equal to what wfdb reads, splits and metadata."""

from __future__ import annotations

import ast
from math import gcd

import numpy as np
import pandas as pd
import pytest
import wfdb
from scipy.signal import resample_poly

from benchmark.data.base import LEADS
from benchmark.data.store import prepare

SPLIT_OF_FOLD = {**{f: "train" for f in range(1, 9)}, 9: "val", 10: "test"}


@pytest.fixture(scope="module")
def tables(data_root):
    """The authors' published recipe (example_physionet.py), written out independently."""
    root = data_root / "ptb-xl"
    Y = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    Y.scp_codes = Y.scp_codes.apply(lambda x: ast.literal_eval(x))
    agg_df = pd.read_csv(root / "scp_statements.csv", index_col=0)
    return Y, agg_df


def _counts_per_split(Y: pd.DataFrame, col: str) -> dict:
    out = {}
    for split in ("train", "val", "test"):
        sel = Y[Y.strat_fold.map(SPLIT_OF_FOLD) == split]
        c: dict = {}
        for labels in sel[col]:
            for lab in labels:
                c[lab] = c.get(lab, 0) + 1
        out[split] = c
    return out


def _nonzero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


def test_superdiagnostic_counts_equal_authors_aggregation(ptbxl_set, tables):
    Y, agg_df = tables
    agg_df = agg_df[agg_df.diagnostic == 1]

    def aggregate_diagnostic(y_dic):
        tmp = []
        for key in y_dic.keys():
            if key in agg_df.index:
                tmp.append(agg_df.loc[key].diagnostic_class)
        return list(set(tmp))

    Y = Y.copy()
    Y["diagnostic_superclass"] = Y.scp_codes.apply(aggregate_diagnostic)
    expected = _counts_per_split(Y, "diagnostic_superclass")
    got = ptbxl_set.summary()["tasks"]["superdiagnostic"]
    assert ptbxl_set.tasks["superdiagnostic"].classes == ("NORM", "MI", "STTC", "CD", "HYP")
    for split in ("train", "val", "test"):
        assert _nonzero(got[split]) == expected[split], split
    # records with no diagnostic statement are unlabelled for the task, not dropped
    n_empty = int((Y["diagnostic_superclass"].apply(len) == 0).sum())
    assert got["unlabelled"] == n_empty > 0
    y, valid = ptbxl_set.labels("superdiagnostic")
    assert (~valid).sum() == n_empty and y[~valid].sum() == 0


@pytest.mark.parametrize("task,flag", [("rhythm", "rhythm"), ("form", "form")])
def test_rhythm_and_form_counts_follow_scp_statements(ptbxl_set, tables, task, flag):
    Y, agg_df = tables
    codes = set(agg_df.index[agg_df[flag] == 1])
    assert set(ptbxl_set.tasks[task].classes) == codes
    assert len(codes) == {"rhythm": 12, "form": 19}[task]
    Y = Y.copy()
    Y["lab"] = Y.scp_codes.apply(lambda d: [k for k in d if k in codes])
    expected = _counts_per_split(Y, "lab")
    got = ptbxl_set.summary()["tasks"][task]
    for split in ("train", "val", "test"):
        assert _nonzero(got[split]) == expected[split]


def test_class_lists_of_all_tasks(ptbxl_set):
    n = {t: len(s.classes) for t, s in ptbxl_set.tasks.items()}
    assert n == {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5, "form": 19, "rhythm": 12}


def test_splits_and_metadata(ptbxl_set, data_root):
    df = pd.read_csv(data_root / "ptb-xl" / "ptbxl_database.csv").sort_values("ecg_id")
    meta = ptbxl_set.meta
    assert len(ptbxl_set) == len(df)
    assert meta["id"].tolist() == df["ecg_id"].astype(str).tolist()
    assert meta["split"].tolist() == df["strat_fold"].map(SPLIT_OF_FOLD).tolist()
    folds = df["strat_fold"].to_numpy()
    expected = [int((folds <= 8).sum()), int((folds == 9).sum()), int((folds == 10).sum())]
    assert [len(ptbxl_set.split_indices(s)) for s in ("train", "val", "test")] == expected
    assert meta["patient"].iloc[0] == "15709" and meta["source"].iloc[0] == "records100/00000/00001_lr"
    for col in ("report_raw", "report_clean", "report_en", "language", "age", "sex", "strat_fold", "example"):
        assert col in meta.columns
    assert not meta["report_clean"].str.contains("edit:").any()
    n_edit = int(df["report"].fillna("").str.contains("Edit:").sum())
    assert n_edit > 0 and meta["report_raw"].str.contains("Edit:").sum() == ptbxl_set.manifest["info"]["edit_annotations_removed"] == n_edit
    assert ptbxl_set.manifest["info"]["annotations_removed"]["edit"] == n_edit
    # empty reports are kept and counted
    n_empty = int((df["report"].fillna("").str.strip() == "").sum())
    assert n_empty > 0 and (meta["report_clean"] == "").sum() == ptbxl_set.manifest["info"]["empty_reports"] == n_empty
    assert ptbxl_set.lead_mask.all() and ptbxl_set.leads == LEADS


def _wfdb_12(path) -> tuple[np.ndarray, int]:
    rec = wfdb.rdrecord(str(path))
    order = [[lead.lower() for lead in LEADS].index(n.lower()) for n in rec.sig_name]
    x = np.empty((12, rec.p_signal.shape[0]))
    x[order] = rec.p_signal.T
    return x, int(rec.fs)


def test_prepared_record_equals_wfdb_at_100hz(ptbxl_set, data_root):
    for pos in (0, 123, 499):
        src = data_root / "ptb-xl" / ptbxl_set.meta["source"].iloc[pos]
        x, fs = _wfdb_12(src)
        assert fs == 100
        np.testing.assert_allclose(ptbxl_set.raw([pos])[0], x[:, :1000], rtol=0, atol=1e-6)


@pytest.mark.parametrize("fs", [500, 250])
def test_prepared_record_from_500hz_files(data_root, tmp_path, fs):
    ds = prepare("ptbxl", data_root, tmp_path, fs=fs, progress=False, limit=3)
    assert ds.raw([0]).shape == (1, 12, 10 * fs)
    for pos in range(3):
        src = data_root / "ptb-xl" / ds.meta["source"].iloc[pos]
        assert str(src).endswith("_hr")
        x, native = _wfdb_12(src)
        assert native == 500
        if fs != native:
            g = gcd(fs, native)
            x = resample_poly(x, fs // g, native // g, axis=1)
        np.testing.assert_allclose(ds.raw([pos])[0], x[:, : 10 * fs], rtol=0, atol=1e-5)



def test_report_text_both_joins_the_cleaned_report_and_its_translation(ptbxl_set):
    """``report_text=both``: "<clean> / <english>" for German/Swedish reports, the text once where
    the two are the same (English reports), and an empty report stays empty."""
    from benchmark.data.base import BOTH_SEPARATOR

    clean, en, both = (ptbxl_set.texts(k) for k in ("clean", "en", "both"))
    lang = ptbxl_set.meta["language"].tolist()
    assert len(both) == len(clean)
    foreign = [i for i, lg in enumerate(lang) if lg in ("de", "sv") and clean[i].strip() != en[i].strip()]
    assert foreign  # the shared slice has translated reports
    for i in foreign:
        assert both[i] == clean[i].strip() + BOTH_SEPARATOR + en[i].strip()
    same = [i for i in range(len(clean)) if clean[i].strip() == en[i].strip()]
    assert same and all(both[i] == clean[i].strip() for i in same)
    with pytest.raises(Exception, match="report text kind"):
        ptbxl_set.texts("bothh")
