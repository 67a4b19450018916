"""Metrics against scikit-learn, validation-only thresholds, bootstrap CIs, absent classes."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from benchmark.stats.metrics import ABSENT_NOTE, aggregate_by_example, choose_thresholds, evaluate

CLASSES = ["NORM", "MI", "STTC", "CD", "HYP"]


def _by_key(rows):
    return {(r["metric"], r["class"]): r for r in rows}


def _multilabel(n, prevalence, seed=0, signal=1.0, rounding=1):
    """Labels with the given prevalences and scores that rank positives higher, with ties."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(prevalence))) < prevalence).astype(int)
    s = np.round(signal * y + rng.normal(0, 1, y.shape), rounding)
    return y, s


@pytest.fixture(scope="module")
def ptbxl_super(data_root):
    """Real PTB-XL superdiagnostic labels of the 500-record slice (multi-label, likelihood>0)."""
    import ast

    db = pd.read_csv(data_root / "ptb-xl" / "ptbxl_database.csv")
    scp = pd.read_csv(data_root / "ptb-xl" / "scp_statements.csv", index_col=0)
    diag = scp[scp["diagnostic"] == 1]["diagnostic_class"].to_dict()
    y = np.zeros((len(db), len(CLASSES)), dtype=int)
    for i, codes in enumerate(db["scp_codes"]):
        for code in ast.literal_eval(codes):
            if code in diag and diag[code] in CLASSES:
                y[i, CLASSES.index(diag[code])] = 1
    keep = y.sum(axis=1) > 0
    return y[keep], db["strat_fold"].to_numpy()[keep]


def test_multilabel_matches_sklearn(ptbxl_super):
    y, fold = ptbxl_super
    rng = np.random.default_rng(3)
    s = np.round(y * 0.8 + rng.normal(0, 1, y.shape), 2)  # ties on purpose
    val, test = fold == 9, fold != 9
    thr = choose_thresholds(y[val], s[val])
    rows = evaluate(y[test], s[test], CLASSES, multilabel=True, thresholds=thr, n_boot=50)
    got = _by_key(rows)
    yt, st = y[test], s[test]
    pred = st >= thr
    for c, name in enumerate(CLASSES):
        assert got[("auroc", name)]["value"] == pytest.approx(roc_auc_score(yt[:, c], st[:, c]), abs=1e-12)
        assert got[("f1", name)]["value"] == pytest.approx(f1_score(yt[:, c], pred[:, c]), abs=1e-12)
        assert got[("precision", name)]["value"] == pytest.approx(
            precision_score(yt[:, c], pred[:, c], zero_division=0), abs=1e-12)
        assert got[("recall", name)]["value"] == pytest.approx(recall_score(yt[:, c], pred[:, c]), abs=1e-12)
        assert got[("auroc", name)]["n_pos"] == yt[:, c].sum()
    assert got[("auroc", "")]["value"] == pytest.approx(roc_auc_score(yt, st, average="macro"), abs=1e-12)
    assert got[("f1", "")]["value"] == pytest.approx(f1_score(yt, pred, average="macro"), abs=1e-12)
    assert got[("precision", "")]["value"] == pytest.approx(
        precision_score(yt, pred, average="macro", zero_division=0), abs=1e-12)
    assert got[("recall", "")]["value"] == pytest.approx(recall_score(yt, pred, average="macro"), abs=1e-12)
    assert got[("auroc", "")]["n_classes"] == 5 and got[("auroc", "")]["n"] == len(yt)
    assert ("accuracy", "") not in got and not any(r["metric"] == "confusion" for r in rows)


def test_multilabel_without_thresholds_reports_auroc_only():
    y, s = _multilabel(300, [0.3, 0.5])
    rows = evaluate(y, s, ["a", "b"], multilabel=True, thresholds=None, n_boot=20)
    assert {r["metric"] for r in rows} == {"auroc"}


def test_single_label_argmax_matches_sklearn():
    rng = np.random.default_rng(0)
    n, k = 400, 4
    t = rng.choice(k, size=n, p=[0.6, 0.2, 0.15, 0.05])
    y = np.eye(k, dtype=int)[t]
    s = rng.normal(0, 1, (n, k)) + 1.2 * y
    names = ["N", "A", "O", "~"]
    rows = evaluate(y, s, names, multilabel=False, thresholds=np.full(k, 99.0), n_boot=50)
    got = _by_key(rows)
    pred = s.argmax(axis=1)
    assert got[("accuracy", "")]["value"] == pytest.approx(accuracy_score(t, pred))
    assert got[("f1", "")]["value"] == pytest.approx(f1_score(t, pred, average="macro"))
    assert got[("precision", "")]["value"] == pytest.approx(precision_score(t, pred, average="macro", zero_division=0))
    assert got[("recall", "")]["value"] == pytest.approx(recall_score(t, pred, average="macro"))
    for c, name in enumerate(names):
        assert got[("auroc", name)]["value"] == pytest.approx(roc_auc_score(y[:, c], s[:, c]))
        assert got[("f1", name)]["value"] == pytest.approx(f1_score(t == c, pred == c))
    cm = confusion_matrix(t, pred, labels=range(k))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            r = got[("confusion", f"{a}|{b}")]
            assert r["value"] == cm[i, j] and math.isnan(r["ci_low"])
    assert sum(got[("confusion", f"{a}|{b}")]["value"] for a in names for b in names) == n
    with pytest.raises(ValueError, match="positives"):
        evaluate(np.ones((3, 2), int), np.zeros((3, 2)), ["a", "b"], multilabel=False, thresholds=None)


def test_thresholds_come_from_validation_only():
    """Val and test are built so their F1-optimal thresholds differ; choose_thresholds only
    sees val, so the chosen threshold is val's optimum and not test's."""
    # val: positives score 0.6..0.7, negatives below 0.5 -> any cut in (0.45, 0.6] is optimal
    y_val = np.array([1, 1, 1, 0, 0, 0, 0])
    s_val = np.array([0.7, 0.65, 0.6, 0.45, 0.3, 0.2, 0.1])
    # test: positives score 0.2..0.3 (shifted), so the test-optimal cut is ~0.2
    y_test = np.array([1, 1, 1, 0, 0, 0])
    s_test = np.array([0.3, 0.25, 0.2, 0.15, 0.1, 0.05])
    thr = choose_thresholds(y_val[:, None], s_val[:, None])
    assert thr[0] == pytest.approx((0.6 + 0.45) / 2)
    test_opt = choose_thresholds(y_test[:, None], s_test[:, None])
    assert test_opt[0] != pytest.approx(thr[0])
    rows = _by_key(evaluate(y_test[:, None], s_test[:, None], ["x"], multilabel=True, thresholds=thr, n_boot=0))
    assert rows[("recall", "x")]["value"] == 0.0  # honest: val threshold misses the shifted test
    assert rows[("auroc", "x")]["value"] == 1.0


def test_choose_thresholds_maximises_f1_and_fallbacks():
    y, s = _multilabel(500, [0.2, 0.0, 1.0], seed=4, rounding=2)
    thr = choose_thresholds(y, s)
    assert thr[1] == math.inf  # no positives: never predict
    assert (s[:, 2] >= thr[2]).all()  # no negatives: predicting all is optimal
    cands = np.unique(s[:, 0])
    best = max(f1_score(y[:, 0], s[:, 0] >= c) for c in cands)
    assert f1_score(y[:, 0], s[:, 0] >= thr[0]) == pytest.approx(best)
    with pytest.raises(ValueError):
        choose_thresholds(np.zeros((0, 2)), np.zeros((0, 2)))


def test_bootstrap_ci_contains_estimate_and_narrows_with_n():
    widths = []
    for n in (200, 3200):
        y, s = _multilabel(n, [0.3, 0.5], seed=n, signal=1.0, rounding=3)
        rows = evaluate(y, s, ["a", "b"], multilabel=True, thresholds=choose_thresholds(y, s), n_boot=300, seed=1)
        for r in rows:
            assert r["ci_low"] <= r["value"] <= r["ci_high"], r
        macro = _by_key(rows)[("auroc", "")]
        widths.append(macro["ci_high"] - macro["ci_low"])
    assert widths[1] < widths[0] / 2.5  # ~ 1/sqrt(16) = 1/4 expected
    # same seed -> same CI; different seed -> different CI
    y, s = _multilabel(300, [0.3], seed=9)
    a = evaluate(y, s, ["a"], multilabel=True, thresholds=None, n_boot=100, seed=5)
    b = evaluate(y, s, ["a"], multilabel=True, thresholds=None, n_boot=100, seed=5)
    c = evaluate(y, s, ["a"], multilabel=True, thresholds=None, n_boot=100, seed=6)
    assert a == b and a[0]["ci_low"] != c[0]["ci_low"]


def test_bootstrap_matches_naive_resampling():
    """The vectorised weighted-rank bootstrap equals re-running sklearn on each resample."""
    y, s = _multilabel(120, [0.25, 0.5], seed=2, rounding=1)
    rows = _by_key(evaluate(y, s, ["a", "b"], multilabel=True, thresholds=None, n_boot=200, seed=7, ci=0.9))
    rng = np.random.default_rng(7)
    draws = {0: [], 1: [], "macro": []}
    for _ in range(200):
        idx = rng.integers(0, len(y), size=len(y))
        per = []
        for c in (0, 1):
            yy = y[idx, c]
            per.append(roc_auc_score(yy, s[idx, c]) if 0 < yy.sum() < len(yy) else np.nan)
            draws[c].append(per[-1])
        draws["macro"].append(np.mean(per))
    for key, name in ((0, "a"), (1, "b"), ("macro", "")):
        d = np.asarray(draws[key])
        d = d[~np.isnan(d)]
        lo, hi = np.percentile(d, [5, 95])
        assert rows[("auroc", name)]["ci_low"] == pytest.approx(lo, abs=1e-12)
        assert rows[("auroc", name)]["ci_high"] == pytest.approx(hi, abs=1e-12)


def test_absent_class_reported_not_averaged():
    y, s = _multilabel(200, [0.3, 0.4, 0.0, 1.0], seed=1)
    names = ["a", "b", "never", "always"]
    thr = np.zeros(4)
    got = _by_key(evaluate(y, s, names, multilabel=True, thresholds=thr, n_boot=50))
    for name in ("never", "always"):
        for m in ("auroc", "f1", "precision", "recall"):
            r = got[(m, name)]
            assert math.isnan(r["value"]) and r["note"] == ABSENT_NOTE
    macro = got[("auroc", "")]
    assert macro["n_classes"] == 2 and "never" in macro["note"] and "always" in macro["note"]
    assert macro["value"] == pytest.approx(roc_auc_score(y[:, :2], s[:, :2], average="macro"))
    assert got[("f1", "")]["value"] == pytest.approx(f1_score(y[:, :2], s[:, :2] >= 0, average="macro"))
    assert macro["n_pos"] == y[:, :2].sum(axis=0).min()


def test_degenerate_resamples_are_skipped():
    """A class with 2 positives in 40 examples vanishes from ~13 % of resamples."""
    y = np.zeros((40, 1), int)
    y[:2] = 1
    s = np.linspace(1, 0, 40)[:, None]
    r = evaluate(y, s, ["rare"], multilabel=True, thresholds=None, n_boot=400, seed=0)[0]
    assert r["value"] == 1.0 and r["ci_low"] == 1.0 and r["ci_high"] == 1.0
    assert "resamples" in r["note"]  # < 90 % of resamples usable: said so


def test_bootstrap_speed():
    """1000 resamples on 2000 examples x 5 classes, AUROC + F1/P/R, in well under a few seconds."""
    y, s = _multilabel(2000, [0.05, 0.1, 0.2, 0.3, 0.5], seed=0, rounding=2)
    thr = choose_thresholds(y, s)
    t0 = time.perf_counter()
    evaluate(y, s, CLASSES, multilabel=True, thresholds=thr, n_boot=1000, seed=0)
    elapsed = time.perf_counter() - t0
    print(f"bootstrap 1000 x 2000 x 5: {elapsed:.2f} s")
    assert elapsed < 5.0


def test_aggregate_by_example():
    ex = np.array(["r2", "r1", "r2", "r3", "r1", "r2"])
    y = np.array([[0, 1], [1, 0], [0, 1], [1, 0], [1, 0], [0, 1]])
    s = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.5, 0.5], [0.6, 0.4], [0.2, 0.8]])
    ex_u, y_u, s_u = aggregate_by_example(ex, y, s)
    assert list(ex_u) == ["r2", "r1", "r3"]
    np.testing.assert_array_equal(y_u, [[0, 1], [1, 0], [1, 0]])
    np.testing.assert_allclose(s_u, [[0.2, 0.8], [0.7, 0.3], [0.5, 0.5]])
    bad = y.copy()
    bad[2] = [1, 0]
    with pytest.raises(ValueError, match="r2"):
        aggregate_by_example(ex, bad, s)
    # 1-D labels/scores stay 1-D
    e1, y1, s1 = aggregate_by_example([1, 1, 2], np.array([0, 0, 1]), np.array([0.2, 0.4, 0.9]))
    assert y1.shape == (2,) and s1.shape == (2,) and s1[0] == pytest.approx(0.3)
