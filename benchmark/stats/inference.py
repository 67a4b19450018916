"""Inference for comparisons that a referee would accept: test units, seeds, a second test, and
multiplicity.

Four pieces, each a pure function of arrays (no I/O, no display order):

* **Cluster resampling** (:func:`benchmark.stats.bootstrap.resample_weights` with ``groups``;
  :func:`unit_groups` numbers the units). Where test examples share a subject
  (MIT-BIH beats share a record, i.e. a patient), resampling examples as if independent
  understates the variance. A resample draws *units* (records) with replacement; every example
  of a drawn unit enters with the unit's count, times its own weight (the majority-cap weights
  stay as they are, so each resample still represents the full test split by record). The same
  ``[B, N]`` weighting is applied to both methods: the comparison stays paired.
* **Seeds** (:func:`benchmark.stats.bootstrap.two_level_draws`). A difference averaged over pretraining seeds generalises
  over seeds only if its interval carries their variance. The two-level bootstrap draws, for each
  resample, ``k`` seeds with replacement from the ``k`` seeds both methods share, and averages
  their differences under that resample's test units (level two, the same units for every seed
  and both methods). With few seeds its interval is still too narrow by about ``sqrt((k-1)/k)``
  (the bootstrap's small-sample bias): with 3 seeds, power is low and the intervals are optimistic.
* **DeLong** (:func:`delong_macro`). A second, analytic test for the difference of two correlated
  (same examples) macro AUROCs: DeLong, DeLong & Clarke-Pearson (1988) in the fast midrank form of
  Sun & Xu (2014), generalised to the macro average through per-example influence terms; for one
  class it is exactly DeLong's test. It treats examples as independent units (one seed, no
  clustering), so it is a cross-check of the example-level bootstrap, not a replacement for the
  seed- and record-aware interval.
* **Multiplicity** (:func:`holm`): Holm's step-down adjustment of a family of p-values (controls
  the family-wise error rate under any dependence between the tests).

P-values from bootstrap draws (:func:`benchmark.stats.bootstrap.bootstrap_p`) are two-sided Wald
p-values with the bootstrap standard error: unlike the percentile p they have no floor of 2/(B+1)
for Holm to multiply, and they agree with the percentile interval where the draws are near-normal.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

__all__ = ["unit_groups", "holm", "midranks", "delong_components", "delong_macro"]


def unit_groups(units) -> tuple[np.ndarray, int]:
    """Unit labels per example -> (integer group id per example, number of units), ids in order
    of first appearance."""
    units = np.asarray(units)
    _, first, inverse = np.unique(units, return_index=True, return_inverse=True)
    # renumber by first appearance so ids do not depend on the labels' sort order
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.ravel()], len(first)


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values (same order as given; NaN stays NaN and is not counted in the
    family)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their mean rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = len(x)
    ranks = np.empty(n, dtype=np.float64)
    i = 0
    while i < n:
        j = i
        while j < n and xs[j] == xs[i]:
            j += 1
        ranks[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(n, dtype=np.float64)
    out[order] = ranks
    return out


def delong_components(y: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """DeLong's structural components of one binary ROC: ``(auc, v10, v01)`` where ``v10[i]`` is
    the share of negatives that positive ``i`` outranks (ties 1/2) and ``v01[j]`` the share of
    positives that outrank negative ``j``. Midrank form (Sun & Xu 2014), O(N log N)."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=np.float64)
    x_pos, x_neg = s[y], s[~y]
    m, n = len(x_pos), len(x_neg)
    tz = midranks(np.concatenate([x_pos, x_neg]))
    v10 = (tz[:m] - midranks(x_pos)) / n
    v01 = 1.0 - (tz[m:] - midranks(x_neg)) / m
    return float(v10.mean()), v10, v01


def delong_macro(y: np.ndarray, s_a: np.ndarray, s_b: np.ndarray, present: np.ndarray | None = None) -> dict:
    """DeLong test of ``macro AUROC(b) - macro AUROC(a)`` on the same examples.

    ``y`` is ``[N, C]`` 0/1, ``s_a``/``s_b`` ``[N, C]`` scores; the macro is over ``present``
    classes (both positives and negatives; default: all such classes). Each example's influence
    on the difference is summed over the classes it is a positive or a negative of, with DeLong's
    ``1/(m(m-1))`` and ``1/(n(n-1))`` scaling, so for one class this is exactly DeLong's variance
    ``S10/m + S01/n`` of the paired difference. Returns ``{diff, auc_a, auc_b, se, z, p}``."""
    y = np.asarray(y).astype(bool)
    s_a = np.asarray(s_a, dtype=np.float64)
    s_b = np.asarray(s_b, dtype=np.float64)
    if y.ndim == 1:
        y, s_a, s_b = y[:, None], s_a[:, None], s_b[:, None]
    n_ex, n_cls = y.shape
    npos = y.sum(axis=0)
    if present is None:
        present = (npos > 0) & (npos < n_ex)
    classes = np.flatnonzero(present)
    if len(classes) == 0:
        return {"diff": math.nan, "auc_a": math.nan, "auc_b": math.nan, "se": math.nan, "z": math.nan,
                "p": math.nan}
    psi = np.zeros(n_ex)
    auc_a, auc_b = [], []
    for c in classes:
        ta, a10, a01 = delong_components(y[:, c], s_a[:, c])
        tb, b10, b01 = delong_components(y[:, c], s_b[:, c])
        auc_a.append(ta)
        auc_b.append(tb)
        d = tb - ta
        m, n = int(npos[c]), int(n_ex - npos[c])
        pos, neg = y[:, c], ~y[:, c]
        # a lone positive (negative) has no spread of its own: its deviation is exactly 0
        if m > 1:
            psi[pos] += ((b10 - a10) - d) / math.sqrt(m * (m - 1))
        if n > 1:
            psi[neg] += ((b01 - a01) - d) / math.sqrt(n * (n - 1))
    k = len(classes)
    diff = float(np.mean(auc_b) - np.mean(auc_a))
    se = float(math.sqrt(np.sum(psi**2)) / k)
    if se == 0:
        z, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    else:
        z = diff / se
        p = float(2 * norm.sf(abs(z)))
    return {"diff": diff, "auc_a": float(np.mean(auc_a)), "auc_b": float(np.mean(auc_b)), "se": se, "z": float(z),
            "p": p}
