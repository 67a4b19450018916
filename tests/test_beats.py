"""Beat features (benchmark/data/beats.py) on built inputs with known answers, and on real MIT-BIH."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import wfdb

from benchmark.data.beats import (MORPHOLOGY_NAMES, RR_NAMES, beat_features, feature_names, morphology_features,
                                  remove_baseline, rr_features)
from benchmark.errors import DataError

FS = 360
COL = {n: i for i, n in enumerate(RR_NAMES)}


def beats(record: str, samples) -> pd.DataFrame:
    return pd.DataFrame({"record": record, "sample": np.asarray(samples, dtype=np.int64)})


def test_known_intervals_by_hand():
    # intervals (s): 1.0, 0.5, 1.5, 1.0 between five beats
    s = np.cumsum([100, 360, 180, 540, 360])
    X, names = rr_features(beats("a", s), FS, local_beats=2)
    assert names == RR_NAMES and X.dtype == np.float32 and X.shape == (5, len(RR_NAMES))
    pre = [1.0, 1.0, 0.5, 1.5, 1.0]  # beat 0 borrows the next interval
    post = [1.0, 0.5, 1.5, 1.0, 1.0]  # the last beat reuses its own pre-RR
    np.testing.assert_allclose(X[:, COL["pre_rr"]], pre, rtol=1e-6)
    np.testing.assert_allclose(X[:, COL["post_rr"]], post, rtol=1e-6)
    np.testing.assert_allclose(X[:, COL["rr_ratio"]], np.divide(pre, post), rtol=1e-6)
    avg = np.cumsum(pre) / np.arange(1, 6)
    np.testing.assert_allclose(X[:, COL["avg_rr"]], avg, rtol=1e-6)
    local = [1.0, 1.0, 0.75, 1.0, 1.25]  # mean of the last two pre-RRs
    np.testing.assert_allclose(X[:, COL["local_rr"]], local, rtol=1e-6)
    np.testing.assert_allclose(X[:, COL["pre_rr_norm"]], np.divide(pre, avg), rtol=1e-6)
    np.testing.assert_allclose(X[:, COL["post_rr_norm"]], np.divide(post, avg), rtol=1e-6)
    np.testing.assert_allclose(X[:, COL["local_rr_norm"]], np.divide(local, avg), rtol=1e-6)
    np.testing.assert_allclose(X[:, COL["pre_rr_local"]], np.divide(pre, local), rtol=1e-6)
    np.testing.assert_allclose(X[:, COL["post_rr_local"]], np.divide(post, local), rtol=1e-6)


def test_row_order_and_interleaved_records():
    rng = np.random.default_rng(0)
    a = np.cumsum(rng.integers(200, 500, 30))
    b = np.cumsum(rng.integers(250, 300, 20)) + 7
    Xa, _ = rr_features(beats("a", a), FS)
    Xb, _ = rr_features(beats("b", b), FS)
    both = pd.concat([beats("a", a), beats("b", b)], ignore_index=True)
    perm = rng.permutation(len(both))  # shuffled rows, the two records interleaved
    X, _ = rr_features(both.iloc[perm].reset_index(drop=True), FS)
    expected = np.concatenate([Xa, Xb])[perm]
    np.testing.assert_array_equal(X, expected)


def test_same_samples_in_two_records_do_not_mix():
    s = np.array([100, 460, 820])
    X, _ = rr_features(pd.concat([beats("x", s), beats("y", s * 2)], ignore_index=True), FS)
    np.testing.assert_allclose(X[:3, COL["pre_rr"]], 1.0, rtol=1e-6)
    np.testing.assert_allclose(X[3:, COL["pre_rr"]], 2.0, rtol=1e-6)


def test_causal_normalisation():
    rng = np.random.default_rng(1)
    s = np.cumsum(rng.integers(200, 500, 40))
    X, _ = rr_features(beats("r", s), FS)
    k = 25
    moved = s.copy()
    moved[k:] += 90  # beat k comes later: interval k-1 -> k grows, every later beat shifts
    Y, _ = rr_features(beats("r", moved), FS)
    np.testing.assert_array_equal(X[: k - 1], Y[: k - 1])  # beats before k - 1: untouched
    post_dependent = [COL[n] for n in ("post_rr", "rr_ratio", "post_rr_norm", "post_rr_local")]
    rest = [c for c in range(len(RR_NAMES)) if c not in post_dependent]
    np.testing.assert_array_equal(X[k - 1, rest], Y[k - 1, rest])  # beat k - 1: only its post-RR reads beat k
    assert not np.allclose(X[k - 1, post_dependent], Y[k - 1, post_dependent])
    assert not np.allclose(X[k:, COL["avg_rr"]], Y[k:, COL["avg_rr"]])  # later beats do see it


def test_edges_single_beat_duplicates_and_empty():
    X, _ = rr_features(beats("one", [500]), FS)
    np.testing.assert_allclose(X[0, COL["pre_rr"]], 0.8, rtol=1e-6)
    np.testing.assert_allclose(X[0, COL["rr_ratio"]], 1.0, rtol=1e-6)
    X, _ = rr_features(beats("dup", [100, 100, 460]), FS)  # two annotations on one sample
    assert np.isfinite(X).all() and X[:, COL["pre_rr"]].min() > 0
    X, _ = rr_features(beats("two", [0, 180]), FS)
    np.testing.assert_allclose(X[:, COL["pre_rr"]], 0.5, rtol=1e-6)
    np.testing.assert_allclose(X[:, COL["post_rr"]], 0.5, rtol=1e-6)
    X, names = rr_features(beats("none", []), FS)
    assert X.shape == (0, len(names))


@pytest.mark.parametrize("bad", [
    pd.DataFrame({"record": ["a"]}),
    pd.DataFrame({"record": ["a", "a"], "sample": [1.5, 3]}),
    pd.DataFrame({"record": ["a", "a"], "sample": [-1, 3]}),
    pd.DataFrame({"record": ["a", "a"], "sample": [np.nan, 3]}),
])
def test_bad_metadata_is_one_line_data_error(bad):
    with pytest.raises(DataError) as err:
        rr_features(bad, FS)
    assert "\n" not in str(err.value)


def test_baseline_removal_and_sampling_on_a_built_signal():
    n = FS * 20
    t = np.arange(n) / FS
    wander = 0.8 * np.sin(2 * np.pi * 0.2 * t) + 0.3
    peaks = np.arange(FS, n - FS, FS)  # one beat a second
    x = wander.copy()
    for p in peaks:
        x[p - 9 : p + 10] += np.r_[np.linspace(0, 1.5, 10), np.linspace(1.5, 0, 10)[1:]]  # 50 ms triangle QRS
    y = remove_baseline(x, FS, lowpass_hz=None)
    between = np.ones(n, dtype=bool)
    for p in peaks:
        between[p - 40 : p + 40] = False
    assert np.abs(y[between]).max() < 0.05  # the 0.8 mV wander is gone
    M, names = morphology_features(x, peaks, FS, lowpass_hz=None)
    assert names == MORPHOLOGY_NAMES and M.shape == (len(peaks), len(MORPHOLOGY_NAMES))
    col = {nm: i for i, nm in enumerate(names)}
    assert np.allclose(M[:, col["qrs_+0ms"]], 1.5, atol=0.05)  # R peak height
    assert np.allclose(M[:, col["qrs_+100ms"]], 0.0, atol=0.05)
    assert np.allclose(M[:, col["qrs_width"]], 10 / FS, atol=2 / FS)  # half-maximum width of the triangle
    assert np.allclose(M[:, col["qrs_max"]], 1.5, atol=0.05)
    # beats at the very ends of the record read the edge samples, never out of range
    E, _ = morphology_features(x, [0, n - 1], FS)
    assert np.isfinite(E).all()


def test_beat_features_reads_each_record_once_and_keeps_row_order():
    rng = np.random.default_rng(2)
    sig = {"a": rng.normal(size=FS * 30), "b": rng.normal(size=FS * 30)}
    meta = pd.concat([beats("a", np.arange(200, FS * 29, 300)), beats("b", np.arange(250, FS * 29, 333))])
    meta = meta.sample(frac=1.0, random_state=0).reset_index(drop=True)
    calls = []

    def read(rec):
        calls.append(rec)
        return sig[rec]

    X, names = beat_features(meta, read, FS)
    assert sorted(calls) == ["a", "b"] and names == feature_names(True)
    assert X.shape == (len(meta), len(names)) and np.isfinite(X).all()
    row = 5
    rec = meta["record"][row]
    own = meta[meta["record"] == rec]
    M, _ = morphology_features(sig[rec], own["sample"].to_numpy(), FS)
    np.testing.assert_array_equal(X[row, len(RR_NAMES):], M[list(own.index).index(row)])


def test_real_mitbih_record_intervals_match_the_annotation_file(data_root):
    """Record 201 (atrial fibrillation, ectopic beats): expectations come from the .atr file."""
    from benchmark.data.mitbih import MITBIH, SYMBOL_TO_AAMI

    rec = "201"
    ann = wfdb.rdann(str(data_root / "mitdb" / rec), "atr")
    s = np.array([a for a, sym in zip(ann.sample, ann.symbol) if sym in SYMBOL_TO_AAMI])
    fs = wfdb.rdheader(str(data_root / "mitdb" / rec)).fs
    meta = beats(rec, s[::-1])  # reversed rows: the function sorts by sample itself
    X, names = beat_features(meta, lambda r: MITBIH.read_mlii(data_root / "mitdb", r), fs)
    X = X[::-1]
    assert X.shape == (len(s), len(names)) and np.isfinite(X).all()
    d = np.diff(s) / fs
    np.testing.assert_allclose(X[1:, COL["pre_rr"]], d, rtol=1e-5)
    np.testing.assert_allclose(X[:-1, COL["post_rr"]], d, rtol=1e-5)
    np.testing.assert_allclose(X[-1, COL["avg_rr"]], np.r_[d[0], d].mean(), rtol=1e-5)
    # premature ventricular beats are early and followed by a pause: their ratio sits below the rest
    sym = np.array([sym for sym in ann.symbol if sym in SYMBOL_TO_AAMI])
    ratio = X[:, COL["rr_ratio"]]
    assert np.median(ratio[sym == "V"]) < np.median(ratio[sym == "N"])
    # and their QRS is wider (half-maximum width)
    width = X[:, len(RR_NAMES) + MORPHOLOGY_NAMES.index("qrs_width")]
    assert np.median(width[sym == "V"]) > np.median(width[sym == "N"])
