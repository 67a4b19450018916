"""CinC 2017 loader on the complete shared training set: labels, split, crops, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

from benchmark.data.base import PrepareParams
from benchmark.data.cinc2017 import CinC2017, read_signal
from benchmark.errors import DataError

SHORT, LONG = "A05493", "A01261"  # 2,714 samples (9.0 s) and 18,260 samples (60.9 s) at 300 Hz


def params(**options) -> PrepareParams:
    fs = options.pop("fs", 100)
    window_s = options.pop("window_s", 10.0)
    return PrepareParams(fs=fs, window_s=window_s, options=tuple(sorted(options.items())))


@pytest.fixture(scope="module")
def root(data_root) -> Path:
    return CinC2017.root(data_root, params())


@pytest.fixture(scope="module")
def scan(root):
    return CinC2017.scan(root, params())


def per_record(scan) -> "pd.DataFrame":  # noqa: F821
    return scan.meta.drop_duplicates("record").set_index("record")


def test_records_and_class_counts(scan, root):
    rec = per_record(scan)
    assert len(rec) == 8_528
    assert len(scan.meta) == 3 * 8_528 and scan.meta["id"].is_unique
    assert rec["label"].value_counts().to_dict() == {"N": 5_050, "A": 738, "O": 2_456, "~": 284}
    y = scan.labels["rhythm"]
    assert scan.tasks["rhythm"].classes == ("N", "A", "O", "~")
    assert (y.sum(axis=0) == 3 * np.array([5_050, 738, 2_456, 284])).all()
    assert (y.sum(axis=1) == 1).all()
    af = scan.labels["af"]
    assert scan.tasks["af"].classes == ("non-AF", "AF")
    assert int(af[:, 1].sum()) == 3 * 738 and (af.sum(axis=1) == 1).all()
    # labels agree with REFERENCE.csv read independently
    lines = (root / "REFERENCE.csv").read_text().split()
    assert lines[0] == "data_source,class"
    ref = dict(line.split(",") for line in lines[1:])
    assert rec["label"].to_dict() == ref
    assert (scan.meta["example"] == scan.meta["record"]).all()
    assert (scan.meta["source"] == scan.meta["record"]).all()
    assert scan.leads == ("I",)


def test_split_is_deterministic_stratified_and_record_level(root, scan):
    again = CinC2017.scan(root, params())
    assert (again.meta["split"] == scan.meta["split"]).all()
    other = CinC2017.scan(root, params(split_seed=1))
    assert (other.meta["split"] != scan.meta["split"]).mean() > 0.2
    # every crop of a record in the same split
    assert (scan.meta.groupby("record")["split"].nunique() == 1).all()
    rec = per_record(scan)
    assert set(rec["split"]) == {"train", "val", "test"}
    for cls, n in rec["label"].value_counts().items():
        counts = rec.loc[rec["label"] == cls, "split"].value_counts()
        assert abs(counts["test"] - 0.15 * n) <= 1 and abs(counts["val"] - 0.15 * n) <= 1
        assert counts.sum() == n
    # other fractions are honoured too
    custom = per_record(CinC2017.scan(root, params(val_frac=0.1, test_frac=0.2)))
    frac = custom["split"].value_counts(normalize=True)
    assert abs(frac["test"] - 0.2) < 0.002 and abs(frac["val"] - 0.1) < 0.002


def _reference_crops(root: Path, rec: str, fs: int, n: int, n_crops: int) -> np.ndarray:
    x = wfdb.rdrecord(str(root / rec)).p_signal[:, 0]
    up, down = {100: (1, 3), 500: (5, 3)}[fs]
    y = resample_poly(x, up, down)
    if len(y) < n:
        return np.stack([np.concatenate([y, np.zeros(n - len(y))])] * n_crops)
    last = len(y) - n
    starts = [0, round(last / 2), last] if n_crops == 3 else [0]
    return np.stack([y[s : s + n] for s in starts])


@pytest.mark.parametrize("fs", [100, 500])
@pytest.mark.parametrize("rec", [LONG, SHORT, "A00001"])
def test_crops_equal_resampled_wfdb_signal(root, scan, rec, fs):
    p = params(fs=fs)
    rows = scan.meta[scan.meta["record"] == rec]
    got = CinC2017.read_group(root, rows, p)
    assert got.shape == (3, 1, 10 * fs) and got.dtype == np.float32
    np.testing.assert_allclose(got[:, 0], _reference_crops(root, rec, fs, 10 * fs, 3), atol=1e-5)
    if rec == LONG:
        assert not np.allclose(got[0], got[2])  # first and last crops differ
    if rec == SHORT:
        assert (got[:, 0, -50:] == 0).all()  # 9 s record zero-padded to 10 s
    # rows in any order and subset come back in that order
    sub = rows.iloc[[2, 0]]
    np.testing.assert_array_equal(CinC2017.read_group(root, sub, p), got[[2, 0]])


def test_loadmat_reader_equals_wfdb(root, scan):
    recs = per_record(scan).index[::400]  # 22 records spread over the set
    for rec in recs:
        np.testing.assert_array_equal(read_signal(root, rec), wfdb.rdrecord(str(root / rec)).p_signal[:, 0])


# -- bad input ---------------------------------------------------------------------------
def _mini_copy(data_root: Path, dst: Path, records: list[str], reference: str) -> Path:
    dst.mkdir(parents=True)
    for rec in records:
        for ext in ("hea", "mat"):
            (dst / f"{rec}.{ext}").symlink_to(data_root / "cinc2017" / f"{rec}.{ext}")
    (dst / "REFERENCE.csv").write_text(reference)
    return dst


def _one_line(exc) -> str:
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_reference_without_header_line(tmp_path, data_root):
    root = _mini_copy(data_root, tmp_path / "cinc2017", ["A00001", "A00004"], "A00001,N\nA00004,A\n")
    s = CinC2017.scan(root, params(n_crops=1))
    assert s.meta["record"].tolist() == ["A00001", "A00004"]
    assert s.meta["label"].tolist() == ["N", "A"]
    assert s.labels["af"].tolist() == [[1, 0], [0, 1]]


def test_missing_reference(tmp_path):
    (tmp_path / "cinc2017").mkdir()
    with pytest.raises(DataError) as exc:
        CinC2017.scan(CinC2017.root(tmp_path, params()), params())
    assert "REFERENCE.csv" in _one_line(exc)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError) as exc:
        CinC2017.root(tmp_path, params())
    assert "cinc2017" in _one_line(exc)


def test_unknown_label_names_the_row(tmp_path, data_root):
    root = _mini_copy(data_root, tmp_path / "cinc2017", ["A00001"], "data_source,class\nA00001,N\nA00002,X\n")
    with pytest.raises(DataError) as exc:
        CinC2017.scan(root, params())
    msg = _one_line(exc)
    assert "line 3" in msg and "A00002" in msg and "'X'" in msg


def test_listed_record_without_files_fails_in_read_group(tmp_path, data_root):
    root = _mini_copy(data_root, tmp_path / "cinc2017", ["A00001"], "A00001,N\nA00002,O\n")
    s = CinC2017.scan(root, params())
    assert len(s.meta) == 6  # scanning does not touch signal files
    CinC2017.read_group(root, s.meta[s.meta["record"] == "A00001"], params())
    with pytest.raises(DataError) as exc:
        CinC2017.read_group(root, s.meta[s.meta["record"] == "A00002"], params())
    assert "A00002.hea" in _one_line(exc)


def test_unexpected_sampling_rate_and_truncated_signal(tmp_path, data_root):
    root = tmp_path / "cinc2017"
    root.mkdir()
    (root / "A00001.hea").write_text((data_root / "cinc2017" / "A00001.hea").read_text().replace(" 300 ", " 250 "))
    (root / "A00001.mat").symlink_to(data_root / "cinc2017" / "A00001.mat")
    (root / "REFERENCE.csv").write_text("A00001,N\nA00002,N\n")
    shutil.copy(data_root / "cinc2017" / "A00002.hea", root / "A00002.hea")
    mat = (data_root / "cinc2017" / "A00002.mat").read_bytes()
    (root / "A00002.mat").write_bytes(mat[: len(mat) // 2])
    s = CinC2017.scan(root, params())
    with pytest.raises(DataError) as exc:
        CinC2017.read_group(root, s.meta[s.meta["record"] == "A00001"], params())
    msg = _one_line(exc)
    assert "A00001.hea" in msg and "250" in msg
    with pytest.raises(DataError) as exc:
        CinC2017.read_group(root, s.meta[s.meta["record"] == "A00002"], params())
    assert "A00002.mat" in _one_line(exc)


# -- end to end through the prepared store ------------------------------------------------
def test_prepare_subset_end_to_end(tmp_path, data_root, root, scan):
    """A 41-record copy (10 per class + one listed without files) through ``store.prepare``."""
    from benchmark.data.store import prepare

    rec = per_record(scan)
    chosen = [r for c in ("N", "A", "O", "~") for r in rec.index[rec["label"] == c][:10]] + [SHORT]
    reference = "data_source,class\n" + "".join(f"{r},{rec.at[r, 'label']}\n" for r in chosen) + "A99999,N\n"
    _mini_copy(data_root, tmp_path / "data" / "cinc2017", chosen, reference)
    ds = prepare("cinc2017", tmp_path / "data", tmp_path / "cache", progress=False)
    assert len(ds) == 3 * len(chosen)
    assert [s["source"] for s in ds.manifest["skipped"]] == ["A99999"]  # counted skip, not a crash
    listed = [rec.at[r, "label"] for r in chosen] + ["N"]  # A99999 is listed as N
    assert ds.manifest["info"]["record_classes"] == {c: listed.count(c) for c in ("N", "A", "O", "~")}
    # every record's crops are stored as the loader reads them (checked on three records)
    for r in (SHORT, chosen[10], chosen[-2]):
        idx = np.flatnonzero(ds.meta["record"].to_numpy() == r)
        assert len(idx) == 3 and (ds.examples[idx] == r).all()
        np.testing.assert_array_equal(ds.raw(idx), CinC2017.read_group(root, ds.meta.iloc[idx], params()))
    y, valid = ds.labels("rhythm")
    assert valid.all() and int(y[:, 1].sum()) == 3 * [rec.at[r, "label"] for r in chosen].count("A")
    assert ds.batch([0, 1]).shape == (2, 12, 1000) and ds.lead_mask[0] and ds.lead_mask.sum() == 1
    with pytest.raises(DataError) as exc:
        prepare("cinc2017", tmp_path / "data", tmp_path / "cache", strict=True, progress=False)
    assert "A99999" in str(exc.value)


@pytest.mark.slow
def test_prepare_full_training_set(data_root, session_cache):
    """All 8,528 records through the store (about 30 s on one core)."""
    from benchmark.data.store import prepare

    ds = prepare("cinc2017", data_root, session_cache, progress=False)
    assert len(ds) == 3 * 8_528 and not ds.manifest["skipped"]
    summary = ds.summary()
    assert summary["examples"] == 8_528  # counts are per record, not per crop
    s = summary["tasks"]["rhythm"]
    totals = {c: sum(s[split][c] for split in ("train", "val", "test")) for c in ("N", "A", "O", "~")}
    assert totals == {"N": 5_050, "A": 738, "O": 2_456, "~": 284}
    assert ds.manifest["stats_fitted_on"] == "train"
