"""Evaluation metrics with bootstrap confidence intervals, checked against scikit-learn.

What is computed
----------------
For every evaluation (one method, one task, one test split) :func:`evaluate` returns tidy rows
``{metric, class, value, ci_low, ci_high, n_pos, n, n_classes, note}``:

* ``auroc`` per class (one-vs-rest) and macro (``class == ''``) -- the primary metric. It needs
  no threshold, so it is comparable across methods whose scores live on different scales.
* Multi-label tasks: ``f1``, ``precision``, ``recall`` per class and macro, at per-class
  thresholds that the caller chose on the **validation** split with :func:`choose_thresholds`.
  A class is predicted when ``score >= threshold``. Without thresholds these rows are omitted:
  the test split must never be used to pick them.
* Single-label tasks (exactly one positive per row): the prediction is the ``argmax`` of the
  decision scores plus per-class offsets that the caller chose on the **validation** split with
  :func:`choose_offsets` (no offsets: plain argmax); ``accuracy``, plus ``f1``/``precision``/
  ``recall`` (= sensitivity, positive predictive value) per class and macro, and the confusion
  matrix as rows ``metric='confusion'``, ``class='<true>|<predicted>'``, ``value=count`` (no CI).

Example weights
---------------
``weights`` (optional, one per test example) make a capped test split stand for the whole one:
when the majority class of a large split (MIT-BIH DS2's normal beats) is subsampled at rate r
and every minority example is kept, weighting the kept majority examples by 1/r gives unbiased
counts for precision/F1/accuracy (which depend on prevalence) and leaves AUROC's expectation
unchanged. The bootstrap resamples the kept examples and multiplies the resample counts by the
weights.

Precision of a class that is never predicted is 0 (scikit-learn's ``zero_division=0``).

Absent classes
--------------
A class with no positives or no negatives in the test split has no AUROC (and its F1 is
meaningless). It gets a row with ``value = NaN`` and ``note = 'absent in test'`` and is left out
of every macro average; each macro row says in ``n_classes`` how many classes it averaged and
its ``note`` names the classes it excluded. ``n_pos`` of a macro row is the positive count of
its *smallest* averaged class -- the number that limits how far the estimate can be trusted.

Confidence intervals
--------------------
Percentile bootstrap over test examples: ``n_boot`` resamples of the example indices drawn with
``numpy.random.default_rng(seed)``, shared by all metrics of the call (paired). A resample in
which a class has no positives or no negatives is skipped for that class and for the macro
averages that include it; if fewer than 90 % of resamples remain, the row's note says how many
were used. The bootstrap is vectorised: a resample is a vector of integer weights (how often
each example was drawn); AUROC comes from weighted rank statistics over the examples sorted
once by score (ties count one half), and counts for F1 & co. come from one matrix product.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from benchmark.stats.bootstrap import percentile_interval, resample_weights, resamples_note

ABSENT_NOTE = "absent in test"
ROW_KEYS = ("metric", "class", "value", "ci_low", "ci_high", "n_pos", "n", "n_classes", "note")


# --------------------------------------------------------------------------------------------
# thresholds (validation split only)
# --------------------------------------------------------------------------------------------
def choose_thresholds(y_val: np.ndarray, s_val: np.ndarray) -> np.ndarray:
    """Per-class decision thresholds that maximise F1 on the *validation* split.

    For each class the candidate rules are "predict the top-k validation scores" for every k at
    which the score changes; the k with the highest F1 wins (ties: the higher threshold, i.e.
    fewer positive predictions). The threshold is placed midway between the k-th score and the
    next lower distinct score, so a test score equal to neither is still classified the way the
    validation data suggest. Prediction rule everywhere: ``score >= threshold``.

    Fallbacks: a class with no validation positives gets ``+inf`` (never predicted -- nothing
    supports predicting it); an empty validation split gets the 0.5-quantile of nothing, which
    is undefined, so it raises.

    Args:
        y_val: [N, C] 0/1 validation labels.
        s_val: [N, C] validation scores (any monotone scale).
    Returns:
        [C] float64 thresholds.
    """
    y, s = _validation_arrays(y_val, s_val, "choose_thresholds")
    out = np.empty(y.shape[1])
    for c in range(y.shape[1]):
        out[c] = _best_f1_threshold(y[:, c], s[:, c])
    return out


def _validation_arrays(y_val, s_val, caller: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked [N, C] bool labels and float scores of a validation split."""
    y = _as_2d(y_val, "y_val").astype(bool)
    s = _as_2d(s_val, "s_val").astype(np.float64)
    if y.shape != s.shape:
        raise ValueError(f"y_val {y.shape} and s_val {s.shape} differ in shape")
    if y.shape[0] == 0:
        raise ValueError(f"{caller} needs at least one validation example")
    if not np.isfinite(s).all():
        raise ValueError("validation scores contain NaN or inf")
    return y, s


def _best_f1_threshold(y: np.ndarray, s: np.ndarray) -> float:
    n_pos = int(y.sum())
    if n_pos == 0:
        return math.inf
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    # Only cut after the last element of a run of equal scores (a threshold cannot split ties).
    last_of_run = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    k = np.flatnonzero(last_of_run)  # predict positions 0..k as positive
    f1 = 2 * tp[k] / (tp[k] + fp[k] + n_pos)
    best = k[int(np.argmax(f1))]  # argmax: first maximum = highest threshold
    if best + 1 < len(s_sorted):
        return float((s_sorted[best] + s_sorted[best + 1]) / 2)
    return float(s_sorted[best])


def decision_scores(s: np.ndarray) -> np.ndarray:
    """Scores on the scale class offsets are added to: log-probabilities when every score is in
    [0, 1] (softmax/probe outputs), the scores themselves otherwise (logits, cosines)."""
    s = np.asarray(s, dtype=np.float64)
    if s.size and s.min() >= 0 and s.max() <= 1:
        return np.log(np.clip(s, 1e-12, 1.0))
    return s


def predict_single_label(s: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """[N, C] one-hot predictions: argmax of ``decision_scores(s) + offsets`` (plain argmax of
    ``s`` without offsets). A class with offset ``-inf`` is never predicted."""
    s = np.asarray(s, dtype=np.float64)
    d = s if offsets is None else decision_scores(s) + np.asarray(offsets, dtype=np.float64)[None, :]
    pred = np.zeros(s.shape, dtype=bool)
    pred[np.arange(len(s)), d.argmax(axis=1)] = True
    return pred


def choose_offsets(y_val: np.ndarray, s_val: np.ndarray, weights: np.ndarray | None = None,
                   rounds: int = 3, n_candidates: int = 64) -> np.ndarray:
    """Per-class additive offsets on the decision scores of a single-label task, chosen to
    maximise macro F1 on the *validation* split (coordinate ascent; the first class present in
    validation is the reference and keeps offset 0).

    An argmax over scores that were never calibrated to the class mix (zero-shot cosines, a probe
    trained on a capped, re-balanced subset) predicts minority classes too often or never; these
    offsets are the decision rule fitted on held-out patients, the single-label counterpart of
    :func:`choose_thresholds`. A class without validation positives gets ``-inf`` (never
    predicted: nothing supports predicting it), as it does there.

    For each class, candidate offsets are quantiles of the margins at which validation examples
    would switch to that class; ties keep the current (smaller-change) offset.
    """
    y, s = _validation_arrays(y_val, s_val, "choose_offsets")
    n, n_cls = y.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    d = decision_scores(s)
    present = y.any(axis=0)
    b = np.where(present, 0.0, -np.inf)
    if present.sum() < 2:
        return b
    yf = y.astype(np.float64)
    wpos = w @ yf

    def macro_f1(bias: np.ndarray) -> float:
        pred = np.zeros((n, n_cls))
        pred[np.arange(n), (d + bias[None, :]).argmax(axis=1)] = 1.0
        tp = w @ (yf * pred)
        fp = w @ ((1 - yf) * pred)
        f1 = 2 * tp / np.maximum(2 * tp + fp + (wpos - tp), 1e-12)
        return float(f1[present].mean())

    ref = int(np.flatnonzero(present)[0])
    best = macro_f1(b)
    for _ in range(rounds):
        improved = False
        for c in np.flatnonzero(present):
            if c == ref:
                continue
            others = d + b[None, :]
            others[:, c] = -np.inf
            margin = others.max(axis=1) - d[:, c]  # offset at which example i switches to class c
            qs = np.unique(np.quantile(margin, np.linspace(0, 1, n_candidates)))
            for cand in qs + 1e-9:
                trial = b.copy()
                trial[c] = cand
                f = macro_f1(trial)
                if f > best + 1e-12:
                    best, b, improved = f, trial, True
        if not improved:
            break
    return b


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def evaluate(
    y_true: np.ndarray,
    scores: np.ndarray,
    classes: Sequence[str],
    *,
    multilabel: bool,
    thresholds: np.ndarray | None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    offsets: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    pred: np.ndarray | None = None,
) -> list[dict]:
    """All metrics of one evaluation as tidy rows (see the module docstring).

    Args:
        y_true: [N, C] 0/1 labels of the test examples (single-label: one-hot).
        scores: [N, C] scores, higher = more likely (logits, probabilities, cosine similarities).
        classes: C class names, in column order.
        multilabel: True for multi-label tasks (thresholded), False for single-label (argmax).
        thresholds: [C] validation-chosen thresholds (multi-label); ignored for single-label.
            ``None`` for a multi-label task means: AUROC only.
        offsets: [C] validation-chosen class offsets (single-label, :func:`choose_offsets`):
            prediction = argmax(decision_scores(scores) + offsets). ``None``: plain argmax.
        weights: [N] positive example weights (see "Example weights"); ``None``: all ones.
        pred: [N, C] one-hot predictions of a decision rule the caller made (single-label: e.g. a
            second stage that decides between two classes on other features); overrides ``offsets``.
        n_boot: bootstrap resamples (0 disables the CIs: ci_low/ci_high are NaN).
        seed: seed of the bootstrap's ``numpy.random.Generator``.
        ci: coverage of the percentile interval.
    Returns:
        list of row dicts with keys ``ROW_KEYS``.
    """
    y = _as_2d(y_true, "y_true")
    s = _as_2d(scores, "scores").astype(np.float64)
    classes = [str(c) for c in classes]
    n, n_cls = y.shape
    if s.shape != y.shape:
        raise ValueError(f"y_true {y.shape} and scores {s.shape} differ in shape")
    if len(classes) != n_cls:
        raise ValueError(f"{len(classes)} class names for {n_cls} score columns")
    if n == 0:
        raise ValueError("evaluate needs at least one test example")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    y = y.astype(bool)

    if multilabel:
        pred = None
        if thresholds is not None:
            thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
            if thr.shape[0] != n_cls:
                raise ValueError(f"{thr.shape[0]} thresholds for {n_cls} classes")
            pred = s >= thr[None, :]
    else:
        if not (y.sum(axis=1) == 1).all():
            bad = int(np.flatnonzero(y.sum(axis=1) != 1)[0])
            raise ValueError(f"single-label task, but test row {bad} has {int(y[bad].sum())} positives")
        if pred is None:
            pred = predict_single_label(s, offsets)
        else:
            pred = np.asarray(pred).astype(bool)
            if pred.shape != y.shape or not (pred.sum(axis=1) == 1).all():
                raise ValueError(f"pred must be one-hot of shape {y.shape}")

    if weights is None:
        wvec = np.ones(n)
    else:
        wvec = np.asarray(weights, dtype=np.float64).reshape(-1)
        if wvec.shape[0] != n or not (np.isfinite(wvec).all() and (wvec > 0).all()):
            raise ValueError(f"weights must be {n} positive finite numbers")
    n_pos = y.sum(axis=0).astype(int)
    present = (n_pos > 0) & (n_pos < n)
    point = all_stats(wvec[None, :], y, s, pred, present)
    boot = _bootstrap(n, n_boot, seed, y, s, pred, present, wvec)

    rows: list[dict] = []
    absent_names = [c for c, p in zip(classes, present) if not p]
    macro_note = f"excludes absent: {','.join(absent_names)}" if absent_names else ""
    min_pos = int(n_pos[present].min()) if present.any() else 0
    n_present = int(present.sum())

    def add(metric: str, cls: str, key: tuple, npos: int, ncl: int, note: str = "", c: int | None = None):
        if c is not None and not present[c]:
            rows.append(_row(metric, cls, math.nan, math.nan, math.nan, npos, n, ncl, ABSENT_NOTE))
            return
        value = float(point[key][0])
        lo = hi = math.nan
        if boot is not None and not math.isnan(value):
            lo, hi, used = percentile_interval(boot[key], ci)
            note = "; ".join(x for x in (note, resamples_note(used, n_boot)) if x)
        rows.append(_row(metric, cls, value, lo, hi, npos, n, ncl, note))

    add("auroc", "", ("auroc_macro",), min_pos, n_present, macro_note)
    for c, name in enumerate(classes):
        add("auroc", name, ("auroc", c), int(n_pos[c]), 1, c=c)
    if pred is not None:
        if not multilabel:
            add("accuracy", "", ("accuracy",), min_pos, n_cls)
        for metric in ("f1", "precision", "recall"):
            add(metric, "", (metric + "_macro",), min_pos, n_present, macro_note)
            for c, name in enumerate(classes):
                add(metric, name, (metric, c), int(n_pos[c]), 1, c=c)
    if not multilabel:
        true_idx, pred_idx = y.argmax(axis=1), pred.argmax(axis=1)
        cm = np.zeros((n_cls, n_cls), dtype=int)
        np.add.at(cm, (true_idx, pred_idx), 1)
        for i, ti in enumerate(classes):
            for j, pj in enumerate(classes):
                rows.append(_row("confusion", f"{ti}|{pj}", float(cm[i, j]), math.nan, math.nan,
                                 int(n_pos[i]), n, 1, ""))
    return rows


def _row(metric, cls, value, lo, hi, n_pos, n, n_classes, note) -> dict:
    return {"metric": metric, "class": cls, "value": value, "ci_low": lo, "ci_high": hi,
            "n_pos": int(n_pos), "n": int(n), "n_classes": int(n_classes), "note": note}


def _bootstrap(n, n_boot, seed, y, s, pred, present, wvec) -> dict | None:
    """Statistics of every resample (:func:`benchmark.stats.bootstrap.resample_weights`),
    concatenated over chunks: key -> [n_boot] arrays."""
    if n_boot <= 0:
        return None
    parts = [all_stats(w, y, s, pred, present) for w in resample_weights(n, n_boot, seed, wvec)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def all_stats(w: np.ndarray, y: np.ndarray, s: np.ndarray, pred: np.ndarray | None,
               present: np.ndarray, auroc: bool = True) -> dict:
    """Every metric for a batch of example weightings ``w`` [B, N] (all-ones row = the point
    estimate). Returns key -> [B] arrays; keys are ('auroc', c), ('auroc_macro',), etc.
    NaN marks a resample in which the statistic is undefined (class degenerate)."""
    out: dict = {}
    n_cls = y.shape[1]
    wpos = w @ y.astype(np.float64)  # [B, C]
    wneg = w.sum(axis=1, keepdims=True) - wpos
    degenerate = (wpos == 0) | (wneg == 0)  # [B, C]
    auc = np.full((w.shape[0], n_cls), np.nan)
    for c in range(n_cls):
        if present[c] and auroc:  # auroc=False: the threshold metrics alone (paired F1, recall)
            auc[:, c] = _weighted_auroc(w, y[:, c], s[:, c])
    auc[degenerate] = np.nan
    for c in range(n_cls):
        out[("auroc", c)] = auc[:, c]
    out[("auroc_macro",)] = _macro(auc, present)
    if pred is None:
        return out
    yf, pf = y.astype(np.float64), pred.astype(np.float64)
    tp = w @ (yf * pf)
    fp = w @ ((1 - yf) * pf)
    fn = wpos - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(wpos > 0, tp / wpos, np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    for name, m in (("precision", precision), ("recall", recall), ("f1", f1)):
        m = np.where(degenerate, np.nan, m)
        for c in range(n_cls):
            out[(name, c)] = m[:, c]
        out[(name + "_macro",)] = _macro(m, present)
    correct = (pred & y).any(axis=1).astype(np.float64)  # single-label: argmax hits the true class
    out[("accuracy",)] = (w @ correct) / w.sum(axis=1)
    return out


def _macro(per_class: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Mean over present classes; NaN for resamples where any present class is undefined."""
    if not present.any():
        return np.full(per_class.shape[0], np.nan)
    return per_class[:, present].mean(axis=1)  # NaN propagates = resample skipped


def _weighted_auroc(w: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUROC of one class under example weights ``w`` [B, N] (Mann-Whitney with tie = 1/2).

    AUROC = sum over positive i of w_i * (weight of negatives scored below s_i
    + half the weight of negatives tied with s_i), divided by W_pos * W_neg. Examples are
    sorted once by score; ties are grouped, so each resample costs O(N).
    """
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    pos = y[order].astype(np.float64)
    ws = w[:, order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    group = np.cumsum(np.r_[True, s_sorted[1:] != s_sorted[:-1]]) - 1  # group id per position
    neg_w = ws * (1.0 - pos)
    neg_in_group = np.add.reduceat(neg_w, starts, axis=1)  # [B, G]
    neg_below = np.cumsum(neg_in_group, axis=1) - neg_in_group
    credit = neg_below + 0.5 * neg_in_group  # per group
    pos_w = ws * pos
    num = (pos_w * credit[:, group]).sum(axis=1)
    wp = pos_w.sum(axis=1)
    wn = neg_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / (wp * wn)


def macro_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Mean one-vs-rest AUROC (scikit-learn's ``roc_auc_score``) over the classes that have both
    positives and negatives in ``y`` [N, C]; NaN when no class has. No CI: for choosing on the
    validation split (the probe's regularisation, the tuning objective)."""
    # local: scikit-learn takes about a second to import, and every CLI start-up imports this module
    from sklearn.metrics import roc_auc_score

    vals = [roc_auc_score(y[:, c], s[:, c]) for c in range(y.shape[1]) if 0 < y[:, c].sum() < len(y)]
    return float(np.mean(vals)) if vals else float("nan")


# --------------------------------------------------------------------------------------------
# several rows per example (CinC crops)
# --------------------------------------------------------------------------------------------
def aggregate_by_example(
    examples: Sequence, y: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average the scores of rows that share an example id (e.g. several crops of one CinC
    record), so that metrics and bootstrap resample *examples*, not crops.

    Labels of rows sharing an id must agree (raises ``ValueError`` naming the example).
    Returns ``(examples_u, y_u, scores_u)`` with examples in order of first appearance.
    """
    ex = np.asarray(examples)
    y = np.asarray(y)
    s = np.asarray(scores, dtype=np.float64)
    if not (len(ex) == len(y) == len(s)):
        raise ValueError(f"examples ({len(ex)}), y ({len(y)}) and scores ({len(s)}) differ in length")
    codes, uniques = pd.factorize(pd.Series(ex), sort=False)
    k = len(uniques)
    y2 = y.reshape(len(y), -1)
    s2 = s.reshape(len(s), -1)
    first = np.full(k, -1)
    first[codes[::-1]] = np.arange(len(codes))[::-1]  # first row of each example
    y_u = y2[first]
    if not (y2 == y_u[codes]).all():
        bad = int(np.flatnonzero((y2 != y_u[codes]).any(axis=1))[0])
        raise ValueError(f"rows of example '{ex[bad]}' carry different labels; cannot average their scores")
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    s_u = np.zeros((k, s2.shape[1]))
    np.add.at(s_u, codes, s2)
    s_u /= counts[:, None]
    return (np.asarray(uniques), y_u.reshape((k,) + y.shape[1:]), s_u.reshape((k,) + s.shape[1:]))


def _as_2d(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be [N, C], got shape {a.shape}")
    return a
