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
                     chunk_cells: int = CHUNK_CELLS) -> Iterator[np.ndarray]:
    """Yield [b, n] float weightings, ``n_boot`` rows in all, drawn with
    ``numpy.random.default_rng(seed)``: entry [r, i] = how many times example i was drawn in
    resample r, times ``example_weights[i]`` when given (capped test splits)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, chunk_cells // max(n, 1)))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(b, n))
        flat = (idx + (np.arange(b) * n)[:, None]).ravel()
        weights = np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
        if example_weights is not None:
            weights *= example_weights[None, :]
        yield weights
        done += b


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
