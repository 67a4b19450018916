"""The bootstrap resampler shared by :mod:`benchmark.stats.metrics` and :mod:`benchmark.stats.paired`.

A resample is a vector of integer weights over the N test examples (how often each example was
drawn), produced in chunks so a 50k-beat MIT-BIH test split does not allocate a [1000, 50000]
matrix at once. The random stream depends only on ``(n, n_boot, seed)``: every caller with the
same arguments gets the same resamples, which is what makes paired differences paired and keeps
committed numbers reproducible.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

# Bootstrap weights are processed in chunks of about this many (resample x example) cells.
CHUNK_CELLS = 1_000_000


def resample_weights(n: int, n_boot: int, seed: int, example_weights: np.ndarray | None = None, *,
                     groups: np.ndarray | None = None, chunk_cells: int = CHUNK_CELLS) -> Iterator[np.ndarray]:
    """Yield [b, n] float weightings, ``n_boot`` rows in all, drawn with
    ``numpy.random.default_rng(seed)``: entry [r, i] = how many times example i was drawn in
    resample r, times ``example_weights[i]`` when given (capped test splits).

    ``groups`` (unit id 0..G-1 per example) resamples *units* instead: each resample draws G
    units with replacement and every example gets the count of its unit, so examples that share a
    subject (the beats of one MIT-BIH record) move together. With one unit per example in order
    (``groups = arange(n)``) the stream is exactly the example bootstrap's."""
    rng = np.random.default_rng(seed)
    n_units = n if groups is None else int(np.max(groups)) + 1 if len(groups) else 0
    chunk = max(1, min(n_boot, chunk_cells // max(n, n_units, 1)))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, n_units, size=(b, n_units))
        flat = (idx + (np.arange(b) * n_units)[:, None]).ravel()
        weights = np.bincount(flat, minlength=b * n_units).reshape(b, n_units).astype(np.float64)
        if groups is not None:
            weights = weights[:, groups]
        if example_weights is not None:
            weights *= example_weights[None, :]
        yield weights
        done += b


def two_level_draws(per_seed: np.ndarray, seed: int) -> np.ndarray:
    """Two-level bootstrap draws of a seed-averaged difference.

    ``per_seed`` is ``[k, B]``: the difference of seed ``i`` under test-unit resample ``b`` (all
    seeds and both methods scored under the same resamples). Draw ``b`` averages ``k`` seeds
    drawn with replacement (their own stream, ``default_rng([seed, 1])``) under resample ``b``,
    so the spread carries seed variance as well as test-set variance. NaN (an undefined resample
    of a drawn seed) propagates: that draw is skipped by :func:`percentile_interval`. With few
    seeds the interval is still too narrow by about ``sqrt((k-1)/k)`` (the bootstrap's
    small-sample bias)."""
    per_seed = np.asarray(per_seed, dtype=np.float64)
    k, n_boot = per_seed.shape
    rng = np.random.default_rng([seed, 1])
    pick = rng.integers(0, k, size=(n_boot, k))
    return per_seed[pick, np.arange(n_boot)[:, None]].mean(axis=1)


def bootstrap_p(draws: np.ndarray, estimate: float | None = None) -> float:
    """Two-sided p-value for 'the difference is 0' from bootstrap ``draws`` of the difference: a
    Wald test with the bootstrap standard error, ``z = estimate / sd(draws)`` (``estimate``: the
    observed difference; default the draws' mean). NaN draws (undefined resamples) are ignored.

    Why not the percentile p (twice the share of draws beyond 0): with B usable draws it cannot go
    below 2/(B+1), and Holm multiplies that floor by the family size m. Twenty comparisons at
    B = 1000 could then never reach 0.04, and a rare-class task whose resamples often lack a class
    (a few hundred usable draws) never 0.05, however large the effect: the correction would
    decide, not the data. The Wald p has no such floor. Where the draws are roughly normal it
    agrees with the percentile interval (p < 0.05 about when the 95 % interval excludes 0); the
    tables show both."""
    d = np.asarray(draws, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size < 2:
        return math.nan
    est = float(np.mean(d)) if estimate is None else float(estimate)
    if math.isnan(est):
        return math.nan
    sd = float(np.std(d, ddof=1))
    if sd == 0.0:
        return 1.0 if est == 0.0 else 0.0
    return float(math.erfc(abs(est) / sd / math.sqrt(2.0)))  # 2 * (1 - Phi(|z|))


def percentile_interval(draws: np.ndarray, ci: float = 0.95) -> tuple[float, float, int]:
    """``(low, high, used)``: the percentile interval of the non-NaN ``draws`` (NaN marks a
    resample in which the statistic is undefined) and how many draws it used."""
    ok = draws[~np.isnan(draws)]
    lo = hi = math.nan
    if ok.size:
        lo, hi = (float(v) for v in np.percentile(ok, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2]))
    return lo, hi, int(ok.size)


def resamples_note(used: int, n_boot: int) -> str:
    """The note a row carries when fewer than 90 % of the resamples could be used."""
    return f"CI from {used}/{n_boot} resamples" if used < 0.9 * n_boot else ""
