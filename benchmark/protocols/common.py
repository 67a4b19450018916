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


def task_indices(data: ECGSet, task: str, split: str, limit: int = 0, seed: int = 0) -> np.ndarray:
    """Positions of labelled examples of ``split`` (optionally a stratified, seeded cap)."""
    y, valid = data.labels(task)
    idx = data.split_indices(split)
    idx = idx[valid[idx]]
    if limit and len(idx) > limit:
        idx = stratified_cap(idx, y[idx], limit, seed)
    return idx


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
) -> Evaluation:
    """Validation scores -> thresholds; test scores -> metric rows with bootstrap CIs.

    Rows that share an ``example`` (crops of one CinC record) are averaged first.
    """
    from benchmark.metrics import aggregate_by_example, choose_thresholds, evaluate

    spec = data.task(task)
    y, _ = data.labels(task)
    ex = data.examples
    if len(test_idx) == 0:
        raise UserError(f"task '{task}' of '{data.name}' has no labelled test examples")
    ev_val, yv, sv = aggregate_by_example(ex[val_idx], y[val_idx], s_val)
    ev_test, yt, st = aggregate_by_example(ex[test_idx], y[test_idx], s_test)
    thresholds = choose_thresholds(yv, sv) if (spec.multilabel and len(yv)) else None
    rows = evaluate(
        yt, st, list(spec.classes), multilabel=spec.multilabel, thresholds=thresholds, n_boot=n_boot, seed=seed
    )
    n_ex, n_cls = st.shape
    scores = pd.DataFrame(
        {
            "example": np.repeat(ev_test.astype(str), n_cls),
            "class": np.tile(np.asarray(spec.classes, dtype=object), n_ex),
            "label": yt.reshape(-1).astype(np.int8),
            "score": st.reshape(-1).astype(np.float64),
        }
    )
    info = {"n_val": int(len(yv)), "n_test": int(len(yt))}
    if thresholds is not None:
        info["thresholds"] = [float(t) for t in thresholds]
    return Evaluation(rows=rows, scores=scores, info=info)
