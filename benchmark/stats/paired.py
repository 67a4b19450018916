"""Paired comparisons of two methods on the same test examples, from saved per-example scores.

Two overlapping confidence intervals say little about a difference; a paired bootstrap says much
more. For two evaluations of the *same* test examples (same dataset, task and split; the example
ids and labels must agree), each bootstrap resample draws example indices once and applies them
to both methods, so the interval of ``metric(B) - metric(A)`` reflects only how the two methods
differ on the examples, not how hard the test sample happens to be.

What is computed (:func:`paired_table`)
---------------------------------------
For every setting that a report table compares (protocol, mode, dataset, task, label fraction)
and every pair of methods evaluated on it:

* one row per pretraining seed: ``diff = metric(method_b) - metric(method_a)`` on that seed's
  evaluations, with a 95 % percentile paired-bootstrap interval;
* one row with ``seed = 'mean'``: the mean over the seeds both methods share of the per-seed
  differences and ``sd_seeds`` the SD of the per-seed differences. Its interval is **seed-aware**:
  a two-level bootstrap (:func:`benchmark.stats.bootstrap.two_level_draws`) draws the seeds with
  replacement and, under each draw, the same test units for every seed and both methods, so the
  interval carries seed variance as well as test-set variance; ``excludes_zero`` and ``p_value``
  are decided on it. With 3 seeds its power is low and it is still somewhat optimistic.

Test units (``unit``, ``n_units``): where test examples share a subject the bootstrap resamples
the subject. MIT-BIH beats are resampled by **record** (a record is one patient; each drawn record
brings all its kept beats, with their majority-cap weights); CinC 2017 crops are already averaged
per record before scoring (one example = one record); PTB-XL examples are ECGs (``example``).
``n`` is the examples kept in the test split, ``n_represented`` the examples they stand for
(the sum of the cap weights).

A second test (``delong_p``): on per-seed macro-AUROC rows with example units and no weights, the
DeLong test of the same difference (:func:`benchmark.stats.inference.delong_macro`), a cross-check
of the bootstrap interval on the same rows; ``p_value`` is the bootstrap's own two-sided p-value
(a Wald p with the bootstrap standard error, :func:`benchmark.stats.bootstrap.bootstrap_p`).

Metrics: ``auroc`` (macro) and ``f1`` (macro, from the saved validation-chosen predictions
``pred``; rows written before predictions were saved have AUROC only). Example weights saved
with the scores (majority-capped test splits) are applied to both methods alike.
``excludes_zero`` says whether the interval lies entirely on one side of zero. Each row is decided
on one basis, its p-value (``differs``: p < 0.05; families are Holm-adjusted in the report);
``interval_agrees`` flags the rows where the percentile interval tells otherwise (:func:`decide`).

Cross-mode pairs (:func:`paired_diff`) work the same way: zero-shot METS against a baseline's
linear probe on the PTB-XL test fold is a paired comparison too, since the examples are shared.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from benchmark.stats.bootstrap import (bootstrap_p, percentile_interval, resample_weights, resamples_note,
                                       two_level_draws)
from benchmark.stats.inference import delong_macro, unit_groups
from benchmark.stats.metrics import all_stats

PAIRED_COLUMNS = ("method_a", "method_b", "protocol", "mode", "dataset", "task", "label_fraction", "metric",
                  "seed", "diff", "ci_low", "ci_high", "excludes_zero", "p_value", "delong_p", "value_a", "value_b",
                  "n", "n_represented", "unit", "n_units", "n_seeds", "sd_seeds", "mode_b", "label_fraction_b",
                  "note", "differs", "interval_agrees")
# datasets whose test examples share a subject: the unit a bootstrap resamples, and how an
# example id names it (MIT-BIH beat ids are '<record>:<sample>')
CLUSTERED = {"mitbih": "record"}
SETTING = ("protocol", "mode", "dataset", "task", "label_fraction")
METRICS = ("auroc", "f1")


@dataclass
class Scored:
    """One evaluation's test examples in matrix form (see ``benchmark.results.scores_frame``)."""

    examples: np.ndarray
    classes: list[str]
    y: np.ndarray  # [N, C] 0/1
    s: np.ndarray  # [N, C]
    pred: np.ndarray | None  # [N, C] 0/1 or None
    w: np.ndarray  # [N]
    multilabel: bool


def load_scored(path: str | Path) -> Scored:
    df = pd.read_parquet(path)
    examples = pd.unique(df["example"])
    classes = list(pd.unique(df["class"]))

    def mat(col):
        return df.pivot(index="example", columns="class", values=col).loc[examples, classes].to_numpy()

    y = mat("label").astype(int)
    pred = mat("pred").astype(bool) if "pred" in df.columns else None
    w = (df.groupby("example", sort=False)["weight"].first().loc[examples].to_numpy().astype(float)
         if "weight" in df.columns else np.ones(len(examples)))
    multilabel = bool((y.sum(axis=1) != 1).any())
    return Scored(np.asarray(examples).astype(str), classes, y, mat("score").astype(float), pred, w, multilabel)


def _aligned(a: Scored, b: Scored) -> tuple[Scored, Scored] | str:
    """Both evaluations on the same examples in the same order, or a reason why not."""
    if a.classes != b.classes:
        return "different classes"
    if len(a.examples) != len(b.examples) or set(a.examples) != set(b.examples):
        return "different test examples"
    if not np.array_equal(a.examples, b.examples):
        order = pd.Index(b.examples).get_indexer(a.examples)
        b = Scored(b.examples[order], b.classes, b.y[order], b.s[order],
                   None if b.pred is None else b.pred[order], b.w[order], b.multilabel)
    if not np.array_equal(a.y, b.y):
        return "labels differ"
    if not np.allclose(a.w, b.w):
        return "example weights differ"
    return a, b


def test_units(dataset: str, examples) -> tuple[str, np.ndarray, int]:
    """(unit name, unit id per example, number of units) of a dataset's test examples."""
    unit = CLUSTERED.get(str(dataset), "example")
    labels = np.array([str(e).split(":", 1)[0] for e in examples]) if unit == "record" else np.asarray(examples)
    groups, n_units = unit_groups(labels)
    return unit, groups, n_units


def _present(ev: Scored) -> np.ndarray:
    n_pos = ev.y.sum(axis=0)
    return (n_pos > 0) & (n_pos < len(ev.y))


def _delong_p(a: Scored, b: Scored, unit: str) -> float:
    """DeLong p of macro AUROC(b) - macro AUROC(a): example units and unweighted examples only."""
    if unit != "example" or len(a.w) == 0 or not np.allclose(a.w, a.w[0]):
        return math.nan
    return delong_macro(a.y, a.s, b.s, _present(a))["p"]


def _stats(weights: np.ndarray, ev: Scored, metric: str) -> np.ndarray:
    """Macro metric under a batch of example weightings [B, N] -> [B]."""
    present = _present(ev)
    pred = ev.pred if metric != "auroc" else None
    out = all_stats(weights, ev.y.astype(bool), ev.s, pred, present, auroc=metric == "auroc")
    return out[("auroc_macro",) if metric == "auroc" else (metric + "_macro",)]


def paired_diff(pairs: list[tuple[Scored, Scored]], metric: str, *, n_boot: int = 1000, seed: int = 0,
                ci: float = 0.95, dataset: str = "") -> dict:
    """Mean over ``pairs`` of ``metric(b) - metric(a)`` with a paired bootstrap interval.

    Every pair must be evaluated on the same examples (checked); with several pairs (seeds) they
    must also share those examples across pairs, and each resample of test units (``dataset``
    decides the unit, see :data:`CLUSTERED`) is applied to all of them; the interval of the mean
    is the two-level (seeds, then units) one. Returns ``{diff, ci_low, ci_high, p_value,
    value_a, value_b, per_pair: [diff...], n, n_represented, unit, n_units, note, pairs}``.
    """
    aligned = []
    for a, b in pairs:
        r = _aligned(a, b)
        if isinstance(r, str):
            raise ValueError(r)
        aligned.append(r)
    ref = aligned[0][0]
    if metric != "auroc" and any(a.pred is None or b.pred is None for a, b in aligned):
        raise ValueError("no saved predictions (pred column): F1 cannot be recomputed")
    ordered = []  # every pair in the reference's example order
    for a, b in aligned:
        ra, rb = _aligned(ref, a), _aligned(ref, b)
        if isinstance(ra, str) or isinstance(rb, str):
            raise ValueError("seeds were evaluated on different test examples")
        ordered.append((ra[1], rb[1]))
    n = len(ref.examples)
    unit, groups, n_units = test_units(dataset, ref.examples)
    w_point = ref.w[None, :]
    va = np.array([_stats(w_point, a, metric)[0] for a, _ in ordered])
    vb = np.array([_stats(w_point, b, metric)[0] for _, b in ordered])
    per_pair = vb - va
    draws = []  # [n_pairs, b] per chunk: each pair's difference under the shared resamples
    for cw in resample_weights(n, n_boot, seed, ref.w, groups=groups):
        draws.append(np.stack([_stats(cw, b, metric) - _stats(cw, a, metric) for a, b in ordered]))
    per_boot = np.concatenate(draws, axis=1) if draws else np.zeros((len(ordered), 0))
    mean_draws = two_level_draws(per_boot, seed) if len(ordered) > 1 else per_boot[0]

    lo, hi, note = _interval(mean_draws, n_boot, ci)
    pairs_ci = [_interval(b, n_boot, ci) for b in per_boot]
    common = {"n": n, "n_represented": float(ref.w.sum()), "unit": unit, "n_units": n_units}
    diff = float(np.mean(per_pair))
    return {"diff": diff, "ci_low": lo, "ci_high": hi, "p_value": bootstrap_p(mean_draws, diff),
            "value_a": float(np.mean(va)), "value_b": float(np.mean(vb)), "per_pair": per_pair.tolist(),
            "note": note, **common,
            "pairs": [{"diff": float(d), "ci_low": c[0], "ci_high": c[1], "p_value": bootstrap_p(bt, float(d)),
                       "delong_p": _delong_p(a, b, unit) if metric == "auroc" else math.nan,
                       "value_a": float(x), "value_b": float(y), "note": c[2], **common}
                      for d, c, bt, x, y, (a, b) in zip(per_pair, pairs_ci, per_boot, va, vb, ordered)]}


def scores_index(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per evaluated job: setting, method, seed, path of its per-example scores."""
    need = ["job_id", "results_dir", "method", "seed", *SETTING]
    jobs = rows[need].drop_duplicates(["results_dir", "job_id"]).copy()
    jobs["path"] = [Path(d) / "scores" / f"{j}.parquet" for d, j in zip(jobs["results_dir"], jobs["job_id"])]
    jobs = jobs[[p.is_file() for p in jobs["path"]]]
    # the latest evaluation of a (method, seed, setting) wins, as in merge_results
    return jobs.drop_duplicates(["method", "seed", *SETTING], keep="last")


def _row(a_name, b_name, setting: dict, metric, seed, res, **extra) -> dict:
    excl = (not math.isnan(res["ci_low"])) and (res["ci_low"] > 0 or res["ci_high"] < 0)
    return {"method_a": a_name, "method_b": b_name, **setting, "metric": metric, "seed": str(seed),
            "diff": res["diff"], "ci_low": res["ci_low"], "ci_high": res["ci_high"], "excludes_zero": bool(excl),
            "value_a": res["value_a"], "value_b": res["value_b"], "n": res["n"], "note": res["note"], **extra}


def paired_table(rows: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, progress: bool = False,
                 method_key: Callable[[str], object] | None = None) -> pd.DataFrame:
    """Every pair of methods evaluated on a common setting (see the module docstring).

    ``method_key`` orders the methods of a setting (the first of a pair is ``method_a``); the
    report passes its display order, the default is the names' order.

    Within a setting every evaluation is put in one example order and scored once under the
    shared resamples (the same generator seed for all), so each pair's difference is a difference
    of cached arrays: the same numbers :func:`paired_diff` gives, at a fraction of the cost."""
    jobs = scores_index(rows)
    out: list[dict] = []
    for key, g in jobs.groupby(list(SETTING), dropna=False, sort=False):
        setting = dict(zip(SETTING, key))
        methods = sorted(g["method"].unique(), key=method_key)
        if len(methods) < 2:
            continue
        evals = {(r.method, r.seed): load_scored(r.path) for r in g.itertuples(index=False)}
        ref = next(iter(evals.values()))
        bad = {}
        for k, ev in list(evals.items()):
            al = _aligned(ref, ev)
            if isinstance(al, str):
                bad[k] = al
                del evals[k]
            else:
                evals[k] = al[1]
        cache: dict = {}
        unit, groups, n_units = test_units(setting["dataset"], ref.examples)
        common = {"n_represented": float(ref.w.sum()), "unit": unit, "n_units": n_units}

        def stats(k, metric):
            if (k, metric) not in cache:
                ev = evals[k]
                point = _stats(ref.w[None, :], ev, metric)[0]
                boot = np.concatenate([_stats(cw, ev, metric) for cw in
                                       resample_weights(len(ref.examples), n_boot, seed, ref.w, groups=groups)])
                cache[(k, metric)] = (point, boot)
            return cache[(k, metric)]

        for ma, mb in itertools.combinations(methods, 2):
            seeds = sorted({s for m, s in evals if m == ma} & {s for m, s in evals if m == mb})
            for metric in METRICS:
                if not seeds:
                    reason = next((v for (m, _), v in bad.items() if m in (ma, mb)), "no common seed")
                    out.append({"method_a": ma, "method_b": mb, **setting, "metric": metric, "seed": "mean",
                                "note": f"not paired: {reason}"})
                    continue
                if metric != "auroc" and any(evals[(m, s)].pred is None for m in (ma, mb) for s in seeds):
                    out.append({"method_a": ma, "method_b": mb, **setting, "metric": metric, "seed": "mean",
                                "note": "not paired: no saved predictions (pred column)"})
                    continue
                va = np.array([stats((ma, s), metric)[0] for s in seeds])
                vb = np.array([stats((mb, s), metric)[0] for s in seeds])
                boots = np.stack([stats((mb, s), metric)[1] - stats((ma, s), metric)[1] for s in seeds])
                n = len(ref.examples)
                for i, s in enumerate(seeds):
                    lo, hi, note = _interval(boots[i], n_boot)
                    dp = _delong_p(evals[(ma, s)], evals[(mb, s)], unit) if metric == "auroc" else math.nan
                    out.append(_row(ma, mb, setting, metric, int(s), {"diff": float(vb[i] - va[i]), "ci_low": lo,
                                    "ci_high": hi, "value_a": float(va[i]), "value_b": float(vb[i]), "n": n,
                                    "note": note}, n_seeds=1, sd_seeds=math.nan,
                                    p_value=bootstrap_p(boots[i], float(vb[i] - va[i])),
                                    delong_p=dp, **common))
                if len(seeds) > 1:
                    draws = two_level_draws(boots, seed)  # seeds and test units: the seed-aware interval
                    lo, hi, note = _interval(draws, n_boot)
                    d = vb - va
                    out.append(_row(ma, mb, setting, metric, "mean", {"diff": float(d.mean()), "ci_low": lo,
                                    "ci_high": hi, "value_a": float(va.mean()), "value_b": float(vb.mean()), "n": n,
                                    "note": note}, n_seeds=len(seeds), sd_seeds=float(np.std(d, ddof=1)),
                                    p_value=bootstrap_p(draws, float(d.mean())), delong_p=math.nan, **common))
    df = pd.DataFrame(out)
    for c in PAIRED_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    df = decide(df)
    return df[list(PAIRED_COLUMNS)]


def decide(df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Each row decided on one basis, its p-value (the Wald p of the same bootstrap draws, the basis
    Holm adjusts): ``differs`` = p < ``alpha`` (NaN where there is no p). ``interval_agrees`` says
    whether the percentile interval (printed beside) tells the same (``excludes_zero == differs``):
    with skewed draws the two can part near the boundary, and such rows are flagged, not hidden."""
    p = pd.to_numeric(df["p_value"], errors="coerce")
    has = p.notna()
    df["differs"] = pd.Series(np.where(has, p < alpha, np.nan), index=df.index, dtype=object)
    agree = df["excludes_zero"].astype(bool) == (p < alpha)
    df["interval_agrees"] = pd.Series(np.where(has, agree, np.nan), index=df.index, dtype=object)
    return df


def _interval(boot: np.ndarray, n_boot: int, ci: float = 0.95) -> tuple[float, float, str]:
    lo, hi, used = percentile_interval(boot, ci)
    return lo, hi, resamples_note(used, n_boot)


def cross_pair(rows: pd.DataFrame, a: dict, b: dict, metric: str, *, n_boot: int = 1000, seed: int = 0) -> dict | None:
    """Paired difference between two *different* settings on the same test examples, e.g.
    ``a = {method: 'simclr', mode: 'linear-probe', label_fraction: 0.01, ...}`` and
    ``b = {method: 'mets', mode: 'zero-shot', ...}``; seeds both have are paired and averaged.
    None if either side has no saved scores."""
    jobs = scores_index(rows)

    def pick(spec: dict) -> pd.Series:
        m = jobs
        for k, v in spec.items():
            if isinstance(v, float) and math.isnan(v):
                m = m[m[k].isna()]
            else:
                m = m[m[k] == v]
        return m.set_index("seed")["path"]

    pa, pb = pick(a), pick(b)
    seeds = sorted(set(pa.index) & set(pb.index))
    if not seeds:
        return None
    res = paired_diff([(load_scored(pa[s]), load_scored(pb[s])) for s in seeds], metric, n_boot=n_boot, seed=seed,
                      dataset=str(b.get("dataset", a.get("dataset", ""))))
    res["n_seeds"] = len(seeds)
    res["excludes_zero"] = (not math.isnan(res["ci_low"])) and (res["ci_low"] > 0 or res["ci_high"] < 0)
    return res
