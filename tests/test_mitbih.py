"""MIT-BIH loader on the real shared data: beat counts, splits, windows, bad input."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

from benchmark.data.base import PrepareParams
from benchmark.data.mitbih import DS1, DS2, MITBIH, validation_records
from benchmark.errors import DataError

# Written out again here (not imported) so the test checks the module's mapping independently.
AAMI_OF = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}


def params(**options) -> PrepareParams:
    fs = options.pop("fs", 100)
    window_s = options.pop("window_s", 10.0)
    return PrepareParams(fs=fs, window_s=window_s, options=tuple(sorted(options.items())))


@pytest.fixture(scope="module")
def atr_scan(data_root, tmp_path_factory):
    """Record 100 alone (a one-record copy of the database folder, linked, not copied)."""
    root = tmp_path_factory.mktemp("mitdb100") / "mitdb"
    root.mkdir()
    for ext in ("hea", "dat", "atr"):
        (root / f"100.{ext}").symlink_to(data_root / "mitdb" / f"100.{ext}")
    p = params(subdir=".")
    return root, p, MITBIH.scan(root, p)


def oracle_aami_counts(folder: Path) -> tuple[dict, list[str]]:
    """Independent of the loader: split -> AAMI class -> beats, from wfdb.rdheader/rdann over every
    record listed in RECORDS (paced records out, records without an MLII channel skipped)."""
    present = [r for r in (folder / "RECORDS").read_text().split() if (folder / f"{r}.hea").is_file()]
    no_mlii = [r for r in present if "MLII" not in wfdb.rdheader(str(folder / r)).sig_name]
    usable = [r for r in present if r not in no_mlii]
    val = set(validation_records(usable))
    counts: dict = {}
    for r in usable:
        if r in ("102", "104", "107", "217"):
            continue
        split = "val" if r in val else "train" if r in DS1 else "test" if r in DS2 else None
        if split is None:
            continue
        ann = wfdb.rdann(str(folder / r), "atr")
        c = counts.setdefault(split, dict.fromkeys("NSVFQ", 0))
        for sym in ann.symbol:
            if sym in AAMI_OF:
                c[AAMI_OF[sym]] += 1
    return counts, no_mlii


@pytest.fixture(scope="module")
def pvc_scan(data_root):
    p = params(subdir="mitdb-pvc", annotator="pvc")
    root = MITBIH.root(data_root, p)
    return root, p, MITBIH.scan(root, p)


def test_record_100_aami_counts_equal_rdann(atr_scan, data_root):
    root, _, scan = atr_scan
    ann = wfdb.rdann(str(data_root / "mitdb" / "100"), "atr")
    expected = collections.Counter(AAMI_OF[s] for s in ann.symbol if s in AAMI_OF)
    y = scan.labels["aami"]
    got = {c: int(y[:, j].sum()) for j, c in enumerate(scan.tasks["aami"].classes)}
    assert got == {c: expected.get(c, 0) for c in "NSVFQ"}
    assert got["N"] == 2239 and got["S"] == 33 and got["V"] == 1  # record 100 as published
    # one row per beat annotation; the rhythm annotation '+' is not a beat
    assert len(scan.meta) == sum(1 for s in ann.symbol if s in AAMI_OF) == 2273
    assert (y.sum(axis=1) == 1).all()
    assert scan.labels["pvc"][:, 1].sum() == ann.symbol.count("V")
    assert scan.meta["id"].is_unique
    assert set(scan.meta["split"]) == {"test"}  # 100 is in DS2
    assert scan.leads == ("II",)


def pvc_oracle(folder: Path) -> dict[str, tuple[int, int]]:
    """record -> (beats, V beats), read with wfdb.rdann independently of the loader."""
    out = {}
    for hea in sorted(folder.glob("*.hea")):
        ann = wfdb.rdann(str(hea.with_suffix("")), "pvc")
        sym = list(ann.symbol)
        out[hea.stem] = (sum(x in ("N", "V") for x in sym), sym.count("V"))
    return out


def test_pvc_set_counts_and_tasks(pvc_scan, data_root):
    _, _, scan = pvc_scan
    oracle = pvc_oracle(data_root / "mitdb-pvc")
    n_beats, n_v = sum(b for b, _ in oracle.values()), sum(v for _, v in oracle.values())
    assert len(scan.meta) == n_beats
    assert set(scan.tasks) == {"pvc"}  # 'N' means 'any other beat': no AAMI classes from this annotator
    y = scan.labels["pvc"]
    assert scan.tasks["pvc"].classes == ("non-V", "V")
    assert int(y[:, 1].sum()) == n_v
    assert int(y[:, 0].sum()) == n_beats - n_v
    assert (y.sum(axis=1) == 1).all()
    assert not scan.skipped


def test_de_chazal_split_of_present_records(pvc_scan):
    _, _, scan = pvc_scan
    split = scan.meta.groupby("record")["split"].agg(lambda s: set(s))
    assert all(len(v) == 1 for v in split)
    split = {r: next(iter(v)) for r, v in split.items()}
    # present: 100 102 104 105 106 108 114 116 119 121 123 200
    assert split == {
        "100": "test", "105": "test", "121": "test", "123": "test", "200": "test",  # DS2
        "106": "train", "108": "train", "114": "train", "116": "train",  # DS1
        "119": "val",  # 5th DS1 record present
        "102": "none", "104": "none",  # paced: in neither set
    }
    for r, s in split.items():
        assert (r in DS1) == (s in ("train", "val"))
        assert (r in DS2) == (s == "test")


def test_validation_rule():
    assert validation_records(list(DS1)) == ["112", "119", "205", "220"]  # 5th, 10th, 15th, 20th of 22
    assert validation_records(["101", "106"]) == ["106"]
    assert validation_records(["101"]) == []
    assert validation_records(list(DS2)) == []
    assert not set(validation_records(list(DS1))) & set(DS2)


def test_paced_records_have_no_aami_label_but_keep_pvc(tmp_path, data_root):
    # Build an 'atr'-annotated copy of paced record 102 from the pvc set's files, with AAMI symbols.
    src = data_root / "mitdb-pvc"
    for ext in ("hea", "dat"):
        shutil.copy(src / f"102.{ext}", tmp_path / f"102.{ext}")
    ann = wfdb.rdann(str(src / "102"), "pvc")
    symbols = ["/" if s == "N" else s for s in ann.symbol]
    wfdb.wrann("102", "atr", np.asarray(ann.sample), symbol=symbols, write_dir=str(tmp_path))
    p = params(subdir=".")
    scan = MITBIH.scan(MITBIH.root(tmp_path, p), p)
    assert len(scan.meta) == len(ann.sample)
    assert scan.labels["aami"].sum() == 0
    assert int(scan.labels["pvc"][:, 1].sum()) == ann.symbol.count("V")
    assert set(scan.meta["split"]) == {"none"}


def _reference_signal(data_root: Path, fs: int) -> tuple[np.ndarray, np.ndarray]:
    rec = wfdb.rdrecord(str(data_root / "mitdb" / "100"))
    x = rec.p_signal[:, rec.sig_name.index("MLII")]
    up, down = {100: (5, 18), 500: (25, 18), 250: (25, 36)}[fs]
    return resample_poly(x, up, down), np.asarray(wfdb.rdann(str(data_root / "mitdb" / "100"), "atr").sample)


@pytest.mark.parametrize("fs,window_s", [(100, 10.0), (500, 2.0), (250, 1.2)])
def test_beat_window_equals_resampled_wfdb_signal(atr_scan, data_root, fs, window_s):
    root, _, scan = atr_scan
    p = params(fs=fs, window_s=window_s)
    rows = scan.meta.iloc[[0, 1, 1000, len(scan.meta) - 1]]
    got = MITBIH.read_group(root, rows, p)
    n = p.n_samples
    assert got.shape == (4, 1, n) and got.dtype == np.float32
    ref, _ = _reference_signal(data_root, fs)
    for k, (_, row) in enumerate(rows.iterrows()):
        centre = int(round(row["sample"] * fs / 360))
        start = centre - n // 2
        expected = np.zeros(n)
        lo, hi = max(start, 0), min(start + n, len(ref))
        expected[lo - start : hi - start] = ref[lo:hi]
        np.testing.assert_allclose(got[k, 0], expected, atol=1e-5)
    # the beat sits at the window centre: an R peak is the window's largest value nearby
    mid = got[2, 0, n // 2 - int(0.05 * fs) : n // 2 + int(0.05 * fs) + 1]
    assert abs(int(np.argmax(mid)) - int(0.05 * fs)) <= max(2, int(0.02 * fs))


def test_edge_beats_are_zero_padded(atr_scan):
    root, p, scan = atr_scan
    first, last = scan.meta.iloc[[0]], scan.meta.iloc[[len(scan.meta) - 1]]
    n = p.n_samples
    w0 = MITBIH.read_group(root, first, p)[0, 0]
    c0 = int(round(first["sample"].iloc[0] * 100 / 360))  # beat at 77 -> 21
    assert (w0[: n // 2 - c0] == 0).all()
    assert np.abs(w0[n // 2 - c0 :]).max() > 0.1
    w1 = MITBIH.read_group(root, last, p)[0, 0]
    total = int(np.ceil(650000 * 100 / 360))
    c1 = int(round(last["sample"].iloc[0] * 100 / 360))
    tail = n // 2 + (total - c1)  # samples of the window inside the record
    assert (w1[tail:] == 0).all() and tail < n
    assert np.abs(w1[:tail]).max() > 0.1


# -- bad input ---------------------------------------------------------------------------
def _copy_record(data_root: Path, dst: Path, with_ann: bool = True) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for ext in ("hea", "dat") + (("atr",) if with_ann else ()):
        shutil.copy(data_root / "mitdb" / f"100.{ext}", dst / f"100.{ext}")
    return dst


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_folder(tmp_path):
    with pytest.raises(DataError) as exc:
        MITBIH.root(tmp_path, params())
    assert "mitdb" in _one_line(exc) and "download" in str(exc.value)


def test_missing_annotation_file(tmp_path, data_root):
    root = _copy_record(data_root, tmp_path / "mitdb", with_ann=False)
    with pytest.raises(DataError) as exc:
        MITBIH.scan(root, params())
    assert "100.atr" in _one_line(exc)
    # asking the wrong annotator for the shared PVC set names the expected file too
    p = params(subdir="mitdb-pvc")
    with pytest.raises(DataError) as exc:
        MITBIH.scan(MITBIH.root(data_root, p), p)
    assert ".atr" in _one_line(exc)


def test_missing_annotation_of_one_record_is_a_counted_skip(tmp_path, data_root):
    root = tmp_path / "mitdb"
    root.mkdir()
    for rec, ext in [("100", "hea"), ("100", "dat"), ("100", "pvc"), ("105", "hea"), ("105", "dat")]:
        (root / f"{rec}.{ext}").symlink_to(data_root / "mitdb-pvc" / f"{rec}.{ext}")
    p = params(annotator="pvc")
    scan = MITBIH.scan(root, p)
    assert set(scan.meta["record"]) == {"100"}
    assert [s["id"] for s in scan.skipped] == ["105"]
    assert "105.pvc" in scan.skipped[0]["reason"]


def test_unexpected_sampling_rate(tmp_path, data_root):
    root = _copy_record(data_root, tmp_path / "mitdb")
    hea = root / "100.hea"
    text = hea.read_bytes().replace(b"100 2 360 650000", b"100 2 250 650000")
    hea.write_bytes(text)
    with pytest.raises(DataError) as exc:
        MITBIH.scan(root, params())
    msg = _one_line(exc)
    assert "100.hea" in msg and "250" in msg and "360" in msg
    rows = MITBIH.scan(MITBIH.root(data_root, params()), params()).meta.iloc[:3]
    with pytest.raises(DataError) as exc:
        MITBIH.read_group(root, rows, params())
    assert "100.hea" in _one_line(exc)


def test_truncated_signal_file(tmp_path, data_root):
    root = _copy_record(data_root, tmp_path / "mitdb")
    dat = root / "100.dat"
    dat.write_bytes(dat.read_bytes()[:100_000])
    scan = MITBIH.scan(root, params())
    with pytest.raises(DataError) as exc:
        MITBIH.read_group(root, scan.meta.iloc[:3], params())
    assert "100.dat" in _one_line(exc)


# -- end to end through the prepared store ------------------------------------------------
def test_prepare_pvc_set_end_to_end(data_root, session_cache):
    from benchmark.data.store import prepare

    ds = prepare("mitbih", data_root, session_cache, subdir="mitdb-pvc", annotator="pvc", progress=False)
    oracle = pvc_oracle(data_root / "mitdb-pvc")
    assert len(ds) == sum(b for b, _ in oracle.values()) and set(ds.tasks) == {"pvc"}
    y, valid = ds.labels("pvc")
    assert valid.all() and int(y[:, 1].sum()) == sum(v for _, v in oracle.values())
    summary = ds.summary()
    val = set(validation_records(list(oracle)))
    split_of = {r: "val" if r in val else "train" if r in DS1 else "test" if r in DS2 else "none" for r in oracle}
    expected = {k: sum(oracle[r][0] for r in oracle if split_of[r] == k) for k in ("train", "val", "test")}
    assert summary["splits"] == expected
    assert sum(summary["tasks"]["pvc"]["test"].values()) == expected["test"]
    assert ds.lead_mask.tolist() == [lead == "II" for lead in ("I", "II", "III", "aVR", "aVL", "aVF",
                                                                "V1", "V2", "V3", "V4", "V5", "V6")]
    # stored windows equal the loader's windows; batches put them in lead II, other leads zero
    idx = np.flatnonzero(ds.meta["record"].to_numpy() == "106")[[0, 500, -1]]
    root = MITBIH.root(data_root, params(subdir="mitdb-pvc"))
    expected = MITBIH.read_group(root, ds.meta.iloc[idx], params(subdir="mitdb-pvc", annotator="pvc"))
    np.testing.assert_array_equal(ds.raw(idx), expected)
    b = ds.batch(idx).numpy()
    assert b.shape == (3, 12, 1000)
    assert (b[:, [0, *range(2, 12)]] == 0).all()
    np.testing.assert_allclose(b[:, 1], (expected[:, 0] - ds.mean[0]) / ds.std[0], rtol=1e-5, atol=1e-5)
    assert ds.manifest["stats_fitted_on"] == "train"


def test_prepare_record_100_aami_and_options(data_root, session_cache):
    from benchmark.data.store import prepare
    from benchmark.errors import UserError

    ds = prepare("mitbih", data_root, session_cache, progress=False)
    expected, no_mlii = oracle_aami_counts(data_root / "mitdb")
    summary = ds.summary()
    for split in ("train", "val", "test"):
        assert summary["tasks"]["aami"][split] == expected.get(split, dict.fromkeys("NSVFQ", 0)), split
    # records without MLII are skipped and counted, never read from another lead
    assert sorted(s.get("id") for s in ds.manifest["skipped"]) == sorted(no_mlii)
    assert all("MLII" in s["reason"] for s in ds.manifest["skipped"])
    assert not set(ds.meta["record"]) & set(no_mlii)
    # every record's windows come from its MLII channel, wherever that channel sits (114: swapped)
    if "114" in set(ds.meta["record"]):
        rec = wfdb.rdrecord(str(data_root / "mitdb" / "114"))
        assert rec.sig_name.index("MLII") == 1
        i = int(np.flatnonzero(ds.meta["record"].to_numpy() == "114")[5])
        p = PrepareParams(fs=100, window_s=10.0, options=())
        ref = resample_poly(rec.p_signal[:, 1], 5, 18)
        c = int(round(ds.meta["sample"].iloc[i] * 100 / 360))
        np.testing.assert_allclose(ds.raw([i])[0, 0], ref[c - 500 : c + 500], atol=1e-5)
    short = prepare("mitbih", data_root, session_cache, window_s=2.0, progress=False)
    assert short.path != ds.path and short.n_samples == 200 and len(short) == len(ds)
    np.testing.assert_allclose(short.raw([1000])[0, 0], ds.raw([1000])[0, 0, 400:600], atol=1e-6)
    with pytest.raises(UserError) as exc:
        prepare("mitbih", data_root, session_cache, annotatr="pvc", progress=False)
    assert "annotatr" in str(exc.value) and "annotator" in str(exc.value)


def test_baseline_and_record_scale_conditioning_on_real_records(data_root):
    """mitbih_baseline=median removes the wander (windows sit on ~0 mV between beats);
    mitbih_scale=record divides each window by its record's causal mean QRS amplitude, so after
    it the QRS spans about 1 in every record, whatever the record's gain; bad values are refused."""
    from benchmark.data.base import PrepareParams
    from benchmark.data.mitbih import MITBIH, causal_qrs_scale
    from benchmark.errors import UserError

    root = data_root / "mitdb"
    scan = MITBIH.scan(root, PrepareParams(fs=100, window_s=10.0, options={}))
    recs = list(scan.meta["source"].unique()[:3])  # records with an MLII channel
    spans = []
    for rec in recs:
        rows = scan.meta[scan.meta["source"] == rec]
        raw = MITBIH.read_group(root, rows, PrepareParams(100, 10.0, {}))[:, 0]
        flat = MITBIH.read_group(root, rows, PrepareParams(100, 10.0, {"baseline": "median"}))[:, 0]
        scaled = MITBIH.read_group(root, rows, PrepareParams(100, 10.0, {"baseline": "median", "scale": "record"}))[:, 0]
        inner = slice(100, 900)  # away from the zero padding of a record's first and last windows
        assert np.median(np.abs(np.median(flat[:, inner], axis=1))) < 0.05
        qrs = scaled[:, 495:511]  # -50 .. +100 ms around the beat at 100 Hz
        spans.append(np.median(np.ptp(qrs, axis=1)))
    assert all(0.5 < s < 1.5 for s in spans), spans
    # causal: a huge later beat leaves earlier scales alone
    x = np.zeros(3600)
    beats = np.array([400, 1000, 1600, 2200])
    x[beats] = [1.0, 1.0, 1.0, 50.0]
    s = causal_qrs_scale(x, beats[::-1])[::-1]
    np.testing.assert_allclose(s, [1.0, 1.0, 1.0, 13.25])
    from benchmark.config import build_config

    with pytest.raises(UserError, match="unknown value of mitbih_scale 'patient'"):
        build_config("quick", None, {"mitbih_scale": "patient"})
    # "none" is a choice, not YAML/CLI null: it survives --set and a recorded config.yaml
    cfg = build_config("quick", None, {"mitbih_baseline": "none", "beat_norm": "None", "mitbih_scale": "record"})
    assert (cfg["mitbih_baseline"], cfg["beat_norm"], cfg["mitbih_scale"]) == ("none", "none", "record")
