"""What every protocol shares: turning val/test scores into metric rows and per-example scores.

The rule that keeps evaluation honest lives here: thresholds are chosen on the validation
scores only, and the test scores are used once, to compute the reported numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark.data.base import ECGSet
from benchmark.errors import UserError


@dataclass
class Evaluation:
    rows: list[dict]
    scores: pd.DataFrame
    info: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # per-epoch rows of a fine-tune (for --log)


def validation_indices(data: ECGSet, task: str) -> np.ndarray:
    """The labelled validation examples of ``task`` a tuning objective scores on (a one-line
    error when there are none)."""
    val_idx = task_indices(data, task, "val")
    if len(val_idx) == 0:
        raise UserError(f"task '{task}' has no labelled validation examples: cannot tune on it")
    return val_idx


def scorable(y: np.ndarray) -> bool:
    """Whether some class of ``y`` has both positives and negatives (a macro AUROC exists)."""
    return any(0 < y[:, c].sum() < len(y) for c in range(y.shape[1]))


def task_indices(data: ECGSet, task: str, split: str, limit: int = 0, seed: int = 0) -> np.ndarray:
    """Positions of labelled examples of ``split`` (optionally a stratified, seeded cap)."""
    y, valid = data.labels(task)
    idx = data.split_indices(split)
    idx = idx[valid[idx]]
    if limit and len(idx) > limit:
        idx = stratified_cap(idx, y[idx], limit, seed)
    return idx


def capped_indices(data: ECGSet, task: str, split: str, limit: int = 0, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Labelled positions of ``split`` under an optional cap of ``limit`` *examples*, and their
    weights (``None`` when nothing was capped or the task is multi-label).

    Single-label tasks are capped with :func:`majority_cap` (only the largest classes are
    subsampled, every minority example is kept, kept examples weigh 1/rate); multi-label tasks
    with :func:`stratified_cap` (unweighted). Rows of one example (CinC crops) stay together."""
    y, valid = data.labels(task)
    idx = data.split_indices(split)
    idx = idx[valid[idx]]
    ex = np.asarray(data.examples)[idx]
    codes, uniq = pd.factorize(pd.Series(ex), sort=False)
    if not limit or len(uniq) <= limit:
        return idx, None
    if data.task(task).multilabel:
        return task_indices(data, task, split, limit, seed), None
    first = np.full(len(uniq), -1)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    kept_u, w_u = majority_cap(np.arange(len(uniq)), y[idx][first], limit, seed)
    keep_row = np.isin(codes, kept_u)
    w_of = dict(zip(kept_u.tolist(), w_u.tolist()))
    return idx[keep_row], np.asarray([w_of[c] for c in codes[keep_row]], dtype=np.float64)


def stratified_cap(idx: np.ndarray, y: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Keep ``limit`` of ``idx``, drawn per most-specific class so rare classes survive."""
    rng = np.random.default_rng(seed)
    # group by the rarest positive class of each row (single-label: its class)
    freq = y.sum(axis=0)
    key = np.where(y.any(axis=1), np.argmin(np.where(y > 0, freq[None, :], np.inf), axis=1), -1)
    keep = []
    groups = np.unique(key)
    for g in groups:
        members = idx[key == g]
        share = max(1, int(round(limit * len(members) / len(idx))))
        keep.append(rng.permutation(members)[:share])
    out = np.sort(np.concatenate(keep))
    return out


def score_rows(
    data: ECGSet,
    task: str,
    val_idx: np.ndarray,
    s_val: np.ndarray,
    test_idx: np.ndarray,
    s_test: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    w_val: np.ndarray | None = None,
    w_test: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
    pred_test: np.ndarray | None = None,
) -> Evaluation:
    """Validation scores -> decision rule; test scores -> metric rows with bootstrap CIs.
    ``offsets`` (single-label): a decision rule fixed in advance (0: argmax, -inf: never predicted)
    instead of one fitted on the validation scores. ``pred_test`` (single-label): the test rows'
    predicted class indices, made by a rule of the caller's (the beat-level probe's S-vs-N stage);
    it overrides ``offsets`` for the test predictions (rows of one example: the most frequent).

    The decision rule is chosen on the validation split only: per-class F1-optimal thresholds for
    multi-label tasks, per-class argmax offsets (macro-F1-optimal) for single-label tasks.
    Rows that share an ``example`` (crops of one CinC record) are averaged first. ``w_val`` /
    ``w_test``: example weights of majority-capped splits (:func:`majority_cap`).
    The per-example scores keep the prediction (``pred``) and weight of every test example, so
    paired comparisons (F1 as well as AUROC) can be recomputed from them alone.
    """
    from benchmark.stats.metrics import (aggregate_by_example, choose_offsets, choose_thresholds, evaluate,
                                         predict_single_label)

    spec = data.task(task)
    y, _ = data.labels(task)
    ex = data.examples
    if len(test_idx) == 0:
        raise UserError(f"task '{task}' of '{data.name}' has no labelled test examples")
    ev_val, yv, sv = aggregate_by_example(ex[val_idx], y[val_idx], s_val)
    ev_test, yt, st = aggregate_by_example(ex[test_idx], y[test_idx], s_test)
    wv = _example_weights(ex[val_idx], ev_val, w_val)
    wt = _example_weights(ex[test_idx], ev_test, w_test)
    thresholds = None
    if offsets is not None:
        offsets = np.asarray(offsets, dtype=np.float64)
    elif len(yv):
        if spec.multilabel:
            thresholds = choose_thresholds(yv, sv)
        else:
            offsets = choose_offsets(yv, sv, weights=wv)
    fixed = None
    if pred_test is not None:
        if spec.multilabel:
            raise UserError(f"pred_test is for single-label tasks; '{task}' is multi-label")
        votes = np.eye(st.shape[1])[np.asarray(pred_test, dtype=np.int64)]
        _, _, votes = aggregate_by_example(ex[test_idx], y[test_idx], votes)
        fixed = np.eye(st.shape[1], dtype=bool)[votes.argmax(axis=1)]
    rows = evaluate(
        yt, st, list(spec.classes), multilabel=spec.multilabel, thresholds=thresholds, offsets=offsets,
        weights=wt, n_boot=n_boot, seed=seed, pred=fixed,
    )
    if spec.multilabel:
        pred = (st >= np.asarray(thresholds)[None, :]) if thresholds is not None else np.zeros_like(st, dtype=bool)
    else:
        pred = predict_single_label(st, offsets) if fixed is None else fixed
    n_ex, n_cls = st.shape
    scores = pd.DataFrame(
        {
            "example": np.repeat(ev_test.astype(str), n_cls),
            "class": np.tile(np.asarray(spec.classes, dtype=object), n_ex),
            "label": yt.reshape(-1).astype(np.int8),
            "score": st.reshape(-1).astype(np.float64),
            "pred": pred.reshape(-1).astype(np.int8),
            "weight": np.repeat(np.ones(n_ex) if wt is None else wt, n_cls).astype(np.float64),
        }
    )
    info = {"n_val": int(len(yv)), "n_test": int(len(yt))}
    if thresholds is not None:
        info["thresholds"] = [float(t) for t in thresholds]
    if offsets is not None:
        info["offsets"] = [float(t) for t in offsets]
    if wt is not None:
        info["weighted_test"] = {"n_kept": int(len(wt)), "n_represented": float(wt.sum())}
    return Evaluation(rows=rows, scores=scores, info=info)


def _example_weights(row_examples: np.ndarray, examples_u: np.ndarray, w: np.ndarray | None) -> np.ndarray | None:
    """Row weights -> one weight per aggregated example (rows of one example share a weight)."""
    if w is None:
        return None
    first = pd.Series(np.asarray(w, dtype=np.float64), index=pd.Index(np.asarray(row_examples))).groupby(level=0).first()
    return first.loc[list(examples_u)].to_numpy()


def majority_cap(idx: np.ndarray, y: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cap a single-label split at ``limit`` examples by subsampling only its largest class(es):
    every example of a class smaller than the cut is kept (no minority example is ever dropped).
    Returns ``(kept positions, weights)``: a kept example of a class subsampled at rate r weighs
    1/r, so weighted counts stand for the whole split (metrics.evaluate's ``weights``).
    With ``limit`` 0 or a split already small enough: all of ``idx``, weights all 1."""
    idx = np.asarray(idx)
    if not limit or len(idx) <= limit:
        return idx, np.ones(len(idx))
    cls = np.asarray(y)[idx].argmax(axis=1)
    counts = np.bincount(cls, minlength=np.asarray(y).shape[1])
    # water-filling: the largest per-class quota q with sum(min(count, q)) <= limit
    order = np.sort(counts[counts > 0])
    q, left, k = 0, limit, len(order)
    for i, c in enumerate(order):
        if c * (k - i) <= left:
            left -= c
            q = c
        else:
            q = max(left // (k - i), 1)
            break
    rng = np.random.default_rng([seed, 1729])
    keep, weights = [], []
    for c in np.flatnonzero(counts):
        members = idx[cls == c]
        if len(members) <= q:
            keep.append(members)
            weights.append(np.ones(len(members)))
        else:
            pick = np.sort(rng.choice(members, size=q, replace=False))
            keep.append(pick)
            weights.append(np.full(q, len(members) / q))
    kept = np.concatenate(keep)
    w = np.concatenate(weights)
    order_ = np.argsort(kept, kind="stable")
    return kept[order_], w[order_]


def fit_logreg(x: np.ndarray, labels: np.ndarray, C: float, n_cls: int, *, seed: int, max_iter: int,
               class_weight=None):
    """One single-label logistic regression on (standardised) ``x``; returns ``predict(z) -> [n,
    n_cls]`` probabilities, 0 for classes absent from ``labels`` (a single class present: a
    constant score). ``class_weight``: scikit-learn's (``"balanced"``: de Chazal's equal priors)."""
    from sklearn.linear_model import LogisticRegression  # local: start-up time (scikit-learn takes seconds)

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        const = np.zeros(n_cls)
        const[int(labels[0])] = 1.0
        return lambda z: np.repeat(const[None, :], len(z), axis=0)
    m = LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight, random_state=seed).fit(x, labels)

    def predict(z):
        out = np.zeros((len(z), n_cls))
        out[:, m.classes_] = m.predict_proba(z)
        return out

    return predict
