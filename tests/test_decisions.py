"""Single-label decision rules chosen on validation, majority caps with weights, and weighted metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from benchmark.stats.metrics import choose_offsets, evaluate, predict_single_label
from benchmark.protocols.common import majority_cap


def _imbalanced(n: int, seed: int, shift: float = 1.5):
    """Three classes, 90/7/3 %, scores that rank well but whose argmax never picks the rare ones."""
    rng = np.random.default_rng(seed)
    cls = rng.choice(3, size=n, p=[0.9, 0.07, 0.03])
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), cls] += shift
    logits[:, 0] += 3.0  # a prior that swamps the evidence
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return np.eye(3, dtype=int)[cls], p


def _macro_f1(y, pred):
    return f1_score(y.argmax(1), pred.argmax(1), average="macro", labels=[0, 1, 2], zero_division=0)


def test_offsets_chosen_on_validation_lift_macro_f1_on_held_out_data():
    yv, sv = _imbalanced(3000, 0)
    yt, st = _imbalanced(3000, 1)
    plain = predict_single_label(st)
    assert plain[:, 1:].sum() < 0.25 * yt[:, 1:].sum()  # argmax seldom predicts the rare classes
    b = choose_offsets(yv, sv)
    assert b[0] == 0 and np.isfinite(b).all()
    tuned = predict_single_label(st, b)
    assert _macro_f1(yt, tuned) > _macro_f1(yt, plain) + 0.15
    # offsets never change AUROC (the scores are untouched)
    rows = evaluate(yt, st, ["a", "b", "c"], multilabel=False, thresholds=None, offsets=b, n_boot=0)
    auc = {r["class"]: r["value"] for r in rows if r["metric"] == "auroc"}
    assert auc["b"] == pytest.approx(roc_auc_score(yt[:, 1], st[:, 1]))
    f1 = {r["class"]: r["value"] for r in rows if r["metric"] == "f1"}
    assert f1[""] == pytest.approx(_macro_f1(yt, tuned))


def test_class_without_validation_positives_is_never_predicted():
    yv, sv = _imbalanced(2000, 2)
    keep = yv[:, 2] == 0
    b = choose_offsets(yv[keep], sv[keep])
    assert b[2] == -np.inf
    assert predict_single_label(sv, b)[:, 2].sum() == 0


def test_majority_cap_keeps_every_minority_example_and_weights_restore_counts():
    rng = np.random.default_rng(0)
    cls = rng.choice(4, size=20000, p=[0.88, 0.06, 0.05, 0.01])
    y = np.eye(4, dtype=int)[cls]
    idx = np.arange(100, 20100)  # positions need not start at 0
    y_full = np.zeros((20100, 4), dtype=int)
    y_full[idx] = y
    kept, w = majority_cap(idx, y_full, 5000, seed=3)
    assert len(kept) <= 5000 and len(kept) == len(w) and np.all(np.diff(kept) > 0)
    kept_cls = y_full[kept].argmax(1)
    for c in (1, 2, 3):  # minority classes: all kept, weight 1
        assert set(kept[kept_cls == c]) == set(idx[cls == c])
        assert np.all(w[kept_cls == c] == 1)
    for c in range(4):  # weighted counts equal the full split's counts
        assert w[kept_cls == c].sum() == pytest.approx((cls == c).sum())
    kept2, _ = majority_cap(idx, y_full, 5000, seed=4)
    assert not np.array_equal(kept, kept2)  # the subsample varies with the seed
    same, w1 = majority_cap(idx, y_full, 0, seed=3)
    assert np.array_equal(same, idx) and np.all(w1 == 1)


def test_integer_weights_equal_duplicated_examples():
    y, s = _imbalanced(400, 5, shift=2.0)
    rng = np.random.default_rng(1)
    k = rng.integers(1, 4, size=len(y))
    b = choose_offsets(y, s)
    weighted = evaluate(y, s, list("abc"), multilabel=False, thresholds=None, offsets=b, weights=k, n_boot=0)
    dup = evaluate(np.repeat(y, k, 0), np.repeat(s, k, 0), list("abc"), multilabel=False, thresholds=None,
                   offsets=b, n_boot=0)
    key = lambda rows: {(r["metric"], r["class"]): r["value"] for r in rows if r["metric"] != "confusion"}
    a, d = key(weighted), key(dup)
    assert a.keys() == d.keys()
    for k_ in a:
        assert a[k_] == pytest.approx(d[k_], abs=1e-12), k_
    # and against scikit-learn with sample weights
    pred = predict_single_label(s, b).argmax(1)
    assert a[("recall", "b")] == pytest.approx(recall_score(y.argmax(1), pred, labels=[1], average="macro",
                                                            sample_weight=k))
    assert a[("precision", "c")] == pytest.approx(precision_score(y.argmax(1), pred, labels=[2], average="macro",
                                                                  sample_weight=k, zero_division=0))
    assert a[("auroc", "a")] == pytest.approx(roc_auc_score(y[:, 0], s[:, 0], sample_weight=k))


def test_weights_are_checked():
    y, s = _imbalanced(50, 6)
    with pytest.raises(ValueError, match="weights"):
        evaluate(y, s, list("abc"), multilabel=False, thresholds=None, weights=np.zeros(50), n_boot=0)
