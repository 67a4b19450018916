"""Seed- and record-aware paired inference, DeLong and Holm (benchmark/stats/inference.py).

Each test builds inputs that expose a specific mistake: a vectorised two-level bootstrap that
does not equal the obvious double loop, a cluster bootstrap that is not wider than the example
bootstrap when the clusters carry the effect, a Holm adjustment that is not Holm's, a fast DeLong
that differs from the textbook double sum."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.stats.bootstrap import bootstrap_p, resample_weights, two_level_draws
from benchmark.stats.inference import delong_components, delong_macro, holm, unit_groups
from benchmark.stats.metrics import all_stats


def _macro_auc_weighted(w, y, s):
    present = np.ones(y.shape[1], bool)
    return all_stats(w, y.astype(bool), s, None, present)[("auroc_macro",)]


def test_two_level_bootstrap_equals_naive_double_loop():
    rng = np.random.default_rng(5)
    n, c, k, n_boot = 24, 2, 3, 40
    units = np.repeat(np.arange(6), 4)  # 6 records of 4 beats
    y = np.zeros((n, c), int)
    y[np.arange(n), rng.integers(0, c, n)] = 1
    sa = rng.random((k, n, c))
    sb = rng.random((k, n, c)) + 0.3 * y[None]
    groups, g = unit_groups(units)
    # vectorised: every seed of both methods under the same unit resamples, then seeds drawn
    w = np.concatenate(list(resample_weights(len(groups), n_boot, 3, groups=groups)))
    per_seed = np.stack([_macro_auc_weighted(w, y, sb[i]) - _macro_auc_weighted(w, y, sa[i]) for i in range(k)])
    fast = two_level_draws(per_seed, seed=3)

    # naive: the same random draws, then explicit index resampling and sklearn's AUROC
    unit_rng = np.random.default_rng(3)
    drawn_units = unit_rng.integers(0, g, size=(n_boot, g))
    picks = np.random.default_rng([3, 1]).integers(0, k, size=(n_boot, k))
    naive = []
    for b in range(n_boot):
        idx = np.concatenate([np.flatnonzero(groups == u) for u in drawn_units[b]])
        diffs = []
        for i in picks[b]:
            yy = y[idx]
            if any(yy[:, j].min() == yy[:, j].max() for j in range(c)):
                diffs.append(math.nan)
                continue
            auc = [(roc_auc_score(yy[:, j], sb[i][idx, j]) - roc_auc_score(yy[:, j], sa[i][idx, j])) for j in range(c)]
            diffs.append(np.mean(auc))
        naive.append(np.mean(diffs))
    np.testing.assert_allclose(fast, np.array(naive), rtol=0, atol=1e-12)


def test_two_level_interval_carries_seed_disagreement():
    # three seeds whose differences disagree in sign, each measured precisely: a test-only
    # interval (mean over seeds under shared resamples) excludes 0, the two-level one must not
    rng = np.random.default_rng(0)
    per_seed = np.array([0.04, -0.01, -0.11])[:, None] + 0.002 * rng.standard_normal((3, 2000))
    test_only = per_seed.mean(axis=0)
    assert np.percentile(test_only, 97.5) < 0
    draws = two_level_draws(per_seed, seed=0)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    assert lo < 0 < hi
    assert bootstrap_p(draws) > 0.05 > bootstrap_p(test_only)


def test_record_bootstrap_wider_than_example_bootstrap_with_planted_cluster_effect():
    # 20 records of 50 beats; whether method b beats a is a property of the record (half the
    # records favour b strongly, half favour a): the record bootstrap must be clearly wider
    rng = np.random.default_rng(1)
    n_rec, per = 20, 50
    units = np.repeat(np.arange(n_rec), per)
    n = len(units)
    y = np.zeros((n, 2), int)
    y[np.arange(n), rng.integers(0, 2, n)] = 1
    effect = np.where(np.arange(n_rec) % 2 == 0, 1.5, -1.2)[units]
    sa = rng.standard_normal((n, 2)) + y
    sb = rng.standard_normal((n, 2)) + y * (1 + effect[:, None])
    groups, g = unit_groups(units)
    assert g == n_rec

    def spread(weights):
        w = np.concatenate(list(weights))
        d = _macro_auc_weighted(w, y, sb) - _macro_auc_weighted(w, y, sa)
        lo, hi = np.nanpercentile(d, [2.5, 97.5])
        return hi - lo

    example = spread(resample_weights(len(np.arange(n)), 500, 0, groups=np.arange(n)))
    record = spread(resample_weights(len(groups), 500, 0, groups=groups))
    assert record > 1.8 * example


def test_cluster_weights_respect_units_and_stream():
    groups, g = unit_groups(np.array(["232:1", "232:1", "213:5", "100:2"]))
    assert g == 3 and list(groups) == [0, 0, 1, 2]
    w = np.concatenate(list(resample_weights(len(groups), 7, 2, groups=groups)))
    assert w.shape == (7, 4)
    assert np.all(w[:, 0] == w[:, 1])  # beats of one record move together
    assert np.all(w.sum(axis=1) == (w[:, [0, 2, 3]]).sum(axis=1) + w[:, 1])
    assert np.all(w[:, [0, 2, 3]].sum(axis=1) == g)  # g units drawn per resample
    again = np.concatenate(list(resample_weights(len(groups), 7, 2, groups=groups, chunk_cells=8)))
    np.testing.assert_array_equal(w, again)  # chunking does not change the stream


def test_holm_matches_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> max 0.06)
    np.testing.assert_allclose(holm(p)[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(holm(p)[4])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


def _naive_delong(y, s_a, s_b):
    """Textbook DeLong for one class: explicit double sums over positive-negative pairs."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m, n = len(pos), len(neg)

    def psi(a, b):
        return 1.0 if a > b else 0.5 if a == b else 0.0

    out = []
    for s in (s_a, s_b):
        v10 = np.array([np.mean([psi(s[i], s[j]) for j in neg]) for i in pos])
        v01 = np.array([np.mean([psi(s[i], s[j]) for i in pos]) for j in neg])
        out.append((v10.mean(), v10, v01))
    (ta, a10, a01), (tb, b10, b01) = out
    s10 = np.cov(np.stack([a10, b10]))
    s01 = np.cov(np.stack([a01, b01]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return ta, tb, var


def test_delong_matches_naive_double_sum_with_ties():
    rng = np.random.default_rng(7)
    y = (rng.random(60) < 0.4).astype(int)
    s_a = np.round(rng.random(60) + 0.4 * y, 1)  # rounded: many ties
    s_b = np.round(rng.random(60) + 0.8 * y, 1)
    ta, tb, var = _naive_delong(y, s_a, s_b)
    res = delong_macro(y, s_a, s_b)
    assert res["auc_a"] == pytest.approx(ta) and res["auc_b"] == pytest.approx(tb)
    assert res["auc_a"] == pytest.approx(roc_auc_score(y, s_a))
    assert res["se"] ** 2 == pytest.approx(var, rel=1e-10)
    assert res["p"] == pytest.approx(2 * (1 - __import__("scipy").stats.norm.cdf(abs(tb - ta) / math.sqrt(var))))
    auc, v10, v01 = delong_components(y, s_a)
    assert auc == pytest.approx(ta) and v01.mean() == pytest.approx(ta)


def test_delong_macro_is_mean_of_classes_and_symmetric():
    rng = np.random.default_rng(3)
    y = np.zeros((80, 3), int)
    y[np.arange(80), rng.integers(0, 3, 80)] = 1
    s_a, s_b = rng.random((80, 3)), rng.random((80, 3)) + 0.5 * y
    res = delong_macro(y, s_a, s_b)
    assert res["auc_b"] == pytest.approx(np.mean([roc_auc_score(y[:, c], s_b[:, c]) for c in range(3)]))
    back = delong_macro(y, s_b, s_a)
    assert back["diff"] == pytest.approx(-res["diff"]) and back["p"] == pytest.approx(res["p"])
    assert 0 < res["p"] < 0.05  # a planted real difference on 80 examples


def test_delong_null_p_values_not_anticonservative():
    # identical-in-distribution methods: about 5 % of tests below 0.05, not 20 %
    rng = np.random.default_rng(11)
    rejections = 0
    for _ in range(200):
        y = (rng.random(100) < 0.3).astype(int)
        base = rng.standard_normal(100) + y
        s_a, s_b = base + 0.7 * rng.standard_normal(100), base + 0.7 * rng.standard_normal(100)
        rejections += delong_macro(y, s_a, s_b)["p"] < 0.05
    assert rejections <= 20


def test_bootstrap_p_is_a_wald_p_without_a_resolution_floor():
    rng = np.random.default_rng(0)
    # agrees with the percentile interval where the draws are normal: z = 2.2 and z = 1.6
    for mean, excludes in ((0.22, True), (0.16, False)):
        d = mean + 0.1 * rng.standard_normal(20000)
        lo, hi = np.percentile(d, [2.5, 97.5])
        assert (bootstrap_p(d) < 0.05) == excludes == (lo > 0)
        assert bootstrap_p(d) == pytest.approx(math.erfc(abs(d.mean()) / d.std(ddof=1) / math.sqrt(2)))
    # the observed estimate, when given, is what is tested; NaN draws are ignored
    d = 0.3 + 0.1 * rng.standard_normal(1000)
    assert bootstrap_p(d, estimate=0.0) == 1.0
    assert bootstrap_p(np.r_[d, np.nan, np.nan]) == pytest.approx(bootstrap_p(d))
    assert math.isnan(bootstrap_p(np.array([math.nan])))
    assert bootstrap_p(np.r_[d, -d]) == pytest.approx(1.0)


def test_a_large_effect_survives_holm_even_with_few_usable_resamples():
    """The bug this p-value fixes: 20 comparisons, each a clear effect (z about 6) measured on 250
    usable resamples (a rare-class task whose other resamples lack a class). The percentile p cannot
    go below 2/251, so Holm over 20 could never go below 0.16; the Wald p lets the data decide."""
    rng = np.random.default_rng(1)
    draws = [0.06 + 0.01 * rng.standard_normal(250) for _ in range(20)]
    percentile_floor = 2 / 251
    assert 20 * percentile_floor > 0.15
    adjusted = holm(np.array([bootstrap_p(d) for d in draws]))
    assert (adjusted < 0.05).all()


@pytest.mark.parametrize("k", [2, 3])
def test_two_level_draws_only_use_given_seeds(k):
    per_seed = np.arange(k, dtype=float)[:, None] * np.ones((k, 50))
    draws = two_level_draws(per_seed, seed=1)
    possible = {np.mean(c) for c in itertools.product(range(k), repeat=k)}
    assert set(np.round(draws, 12)) <= {round(x, 12) for x in possible}


def test_one_unit_per_example_is_the_example_bootstrap():
    # the record bootstrap must not change any number where examples are their own units
    a = np.concatenate(list(resample_weights(50, 30, 4)))
    b = np.concatenate(list(resample_weights(50, 30, 4, groups=np.arange(50))))
    np.testing.assert_array_equal(a, b)
