"""Paired bootstrap differences from saved per-example scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.stats.metrics import choose_thresholds, evaluate
from benchmark.stats.paired import Scored, paired_diff, paired_table
from benchmark.results import ResultStore, merge_results


def _labels(n=300, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, c)) < [0.3, 0.2, 0.1][:c]).astype(int)


def _scored(y, s, pred=None, w=None):
    return Scored(np.array([f"e{i}" for i in range(len(y))]), [f"c{j}" for j in range(y.shape[1])], y, s,
                  pred, np.ones(len(y)) if w is None else w, True)


def test_identical_methods_differ_by_exactly_zero():
    y = _labels()
    s = np.random.default_rng(1).normal(size=y.shape)
    r = paired_diff([(_scored(y, s), _scored(y, s.copy()))], "auroc", n_boot=200)
    assert r["diff"] == 0 and r["ci_low"] == 0 and r["ci_high"] == 0


def test_paired_interval_equals_a_naive_loop_and_is_narrower_than_unpaired():
    y = _labels(400)
    rng = np.random.default_rng(2)
    common = rng.normal(size=y.shape)  # what makes an example hard, shared by both methods
    sa = common + 0.8 * y
    sb = common + 1.1 * y + 0.2 * rng.normal(size=y.shape)
    r = paired_diff([(_scored(y, sa), _scored(y, sb))], "auroc", n_boot=300, seed=7)
    # naive oracle: the same resampled indices (same generator and draw order), sklearn AUROC
    gen = np.random.default_rng(7)
    idx_all = gen.integers(0, len(y), size=(300, len(y)))
    diffs = []
    for idx in idx_all:
        yy = y[idx]
        if (yy.sum(0) == 0).any() or (yy.sum(0) == len(yy)).any():
            continue
        auc = lambda s: np.mean([roc_auc_score(yy[:, c], s[idx][:, c]) for c in range(y.shape[1])])
        diffs.append(auc(sb) - auc(sa))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    assert r["ci_low"] == pytest.approx(lo, abs=1e-9) and r["ci_high"] == pytest.approx(hi, abs=1e-9)
    point = np.mean([roc_auc_score(y[:, c], sb[:, c]) - roc_auc_score(y[:, c], sa[:, c]) for c in range(3)])
    assert r["diff"] == pytest.approx(point)
    assert r["ci_low"] > 0  # B is better and the paired interval sees it
    # the unpaired view: two separate intervals overlap although the paired one excludes zero
    ra = evaluate(y, sa, ["a", "b", "c"], multilabel=True, thresholds=None, n_boot=300, seed=7)[0]
    rb = evaluate(y, sb, ["a", "b", "c"], multilabel=True, thresholds=None, n_boot=300, seed=8)[0]
    assert (rb["ci_high"] - rb["ci_low"]) + (ra["ci_high"] - ra["ci_low"]) > 2 * (r["ci_high"] - r["ci_low"])


def test_f1_uses_saved_predictions_and_mismatched_examples_are_refused():
    y = _labels(200)
    rng = np.random.default_rng(3)
    s = y + rng.normal(size=y.shape)
    thr = choose_thresholds(y, s)
    pred = s >= thr
    a = _scored(y, s, pred)
    b = _scored(y, s, np.zeros_like(pred))  # predicts nothing: F1 0
    r = paired_diff([(a, b)], "f1", n_boot=100)
    f1 = {r_["class"]: r_["value"] for r_ in evaluate(y, s, ["a", "b", "c"], multilabel=True, thresholds=thr,
                                                       n_boot=0) if r_["metric"] == "f1"}
    assert r["diff"] == pytest.approx(-f1[""])
    other = _scored(y[:-1], s[:-1], pred[:-1])
    with pytest.raises(ValueError, match="different test examples"):
        paired_diff([(a, other)], "auroc", n_boot=10)
    with pytest.raises(ValueError, match="pred"):
        paired_diff([(_scored(y, s), _scored(y, s))], "f1", n_boot=10)


def test_paired_table_from_a_results_folder(tmp_path):
    """Two methods x two seeds written like the harness writes them -> per-seed and mean rows."""
    from benchmark.results import scores_frame

    y = _labels(250)
    rng = np.random.default_rng(4)
    store = ResultStore(tmp_path / "res")
    common = rng.normal(size=y.shape)
    for method, strength in (("mets", 1.5), ("simclr", 0.5)):
        for seed in (0, 1):
            s = common + strength * y + 0.1 * rng.normal(size=y.shape)
            thr = choose_thresholds(y, s)
            rows = evaluate(y, s, ["a", "b", "c"], multilabel=True, thresholds=thr, n_boot=20)
            base = {"method": method, "method_name": method, "seed": seed, "protocol": "zero-shot",
                    "mode": "zero-shot", "dataset": "ptbxl", "task": "superdiagnostic", "label_fraction": np.nan}
            sc = scores_frame([f"e{i}" for i in range(len(y))], ["a", "b", "c"], y, s)
            sc["pred"] = (s >= thr).reshape(-1).astype(np.int8)
            sc["weight"] = 1.0
            store.write_job(f"{method}-{seed}", [{**base, **r} for r in rows], sc, {})
    rows = merge_results([store.root])
    t = paired_table(rows, n_boot=100)
    assert set(t["seed"]) == {"0", "1", "mean"} and set(t["metric"]) == {"auroc", "f1"}
    m = t[(t["seed"] == "mean") & (t["metric"] == "auroc")].iloc[0]
    assert m["method_a"] == "mets" and m["method_b"] == "simclr"
    assert m["diff"] < 0 and m["excludes_zero"] and m["n_seeds"] == 2
    per_seed = t[(t["seed"] != "mean") & (t["metric"] == "auroc")]["diff"]
    assert m["diff"] == pytest.approx(per_seed.mean())
    # the reported per-seed value_a equals the macro AUROC row of that job
    r0 = rows[(rows["method"] == "mets") & (rows["seed"] == 0) & (rows["metric"] == "auroc") & (rows["class"] == "")]
    s0 = t[(t["seed"] == "0") & (t["metric"] == "auroc")].iloc[0]
    assert s0["value_a"] == pytest.approx(float(r0["value"].iloc[0]))


def test_cached_table_equals_direct_paired_diff(tmp_path):
    """paired_table scores each evaluation once and differences cached arrays: same numbers as
    paired_diff on the pair."""
    from benchmark.stats.paired import scores_index, load_scored
    from benchmark.results import scores_frame

    y = _labels(180, seed=9)
    rng = np.random.default_rng(9)
    store = ResultStore(tmp_path / "res")
    for method, strength in (("mets", 1.2), ("clocs", 0.9), ("simclr", 0.6)):
        for seed in (0, 1, 2):
            s = strength * y + rng.normal(size=y.shape)
            thr = choose_thresholds(y, s)
            rows = evaluate(y, s, ["a", "b", "c"], multilabel=True, thresholds=thr, n_boot=10)
            base = {"method": method, "method_name": method, "seed": seed, "protocol": "few-label",
                    "mode": "linear-probe", "dataset": "ptbxl", "task": "superdiagnostic", "label_fraction": 0.1}
            sc = scores_frame([f"e{i}" for i in range(len(y))], ["a", "b", "c"], y, s)
            sc["pred"] = (s >= thr).reshape(-1).astype(np.int8)
            store.write_job(f"{method}-{seed}", [{**base, **r} for r in rows], sc, {})
    rows = merge_results([store.root])
    t = paired_table(rows, n_boot=150, seed=3)
    idx = scores_index(rows).set_index(["method", "seed"])["path"]
    pair = t[t["method_a"].isin(["clocs", "simclr"]) & t["method_b"].isin(["clocs", "simclr"])]
    a, b = pair["method_a"].iloc[0], pair["method_b"].iloc[0]
    for metric in ("auroc", "f1"):
        direct = paired_diff([(load_scored(idx[(a, s)]), load_scored(idx[(b, s)])) for s in (0, 1, 2)],
                             metric, n_boot=150, seed=3)
        row = pair[(pair["metric"] == metric) & (pair["seed"] == "mean")].iloc[0]
        assert row["diff"] == pytest.approx(direct["diff"])
        assert row["ci_low"] == pytest.approx(direct["ci_low"]) and row["ci_high"] == pytest.approx(direct["ci_high"])
        one = pair[(pair["metric"] == metric) & (pair["seed"] == "1")].iloc[0]
        assert one["ci_low"] == pytest.approx(direct["pairs"][1]["ci_low"])


def test_real_mitbih_rows_resample_records_and_carry_seed_variance():
    """On the committed MIT-BIH results: DS2 beats are resampled by record (units derived from
    the beat ids), and no seed-mean row claims a difference its seeds disagree on."""
    from pathlib import Path

    from benchmark.stats.paired import load_scored, scores_index

    folder = Path(__file__).resolve().parents[1] / "results" / "shared"
    rows = merge_results([folder])
    rows = rows[(rows["dataset"] == "mitbih") & (rows["mode"] == "fine-tune")]
    if rows.empty:
        pytest.skip("results/shared holds no MIT-BIH fine-tune rows")
    t = paired_table(rows, n_boot=100)
    ev = load_scored(scores_index(rows)["path"].iloc[0])
    records = {e.split(":", 1)[0] for e in ev.examples}
    assert set(t["unit"]) == {"record"} and set(t["n_units"]) == {len(records)}
    assert (t["n"] == len(ev.examples)).all() and np.allclose(t["n_represented"], ev.w.sum())
    for _, m in t[t["seed"] == "mean"].iterrows():
        per = t[(t["method_a"] == m["method_a"]) & (t["method_b"] == m["method_b"]) & (t["metric"] == m["metric"])
                & (t["seed"] != "mean")]["diff"].dropna()
        if (per > 0).any() and (per < 0).any():
            assert not m["excludes_zero"], (m["method_a"], m["method_b"], m["metric"], list(per))


def test_an_evaluation_without_test_examples_pairs_to_nan_not_a_crash():
    # a diagnostic task can end with no test example (a text-ceiling proxy on a small split)
    from benchmark.stats.paired import _delong_p

    empty = Scored(np.array([], dtype=str), ["a"], np.zeros((0, 1), int), np.zeros((0, 1)), None, np.ones(0), True)
    assert np.isnan(_delong_p(empty, empty, "example"))


def test_each_row_is_decided_on_its_p_and_a_disagreeing_interval_is_flagged():
    """Skewed draws: an interval that excludes 0 while the Wald p is 0.07 is decided on p and flagged."""
    import pandas as pd

    from benchmark.report.claims import headline_markdown
    from benchmark.stats.paired import decide

    df = pd.DataFrame({"p_value": [0.07, 0.01, 0.5, float("nan")], "excludes_zero": [True, True, False, False]})
    out = decide(df)
    assert [bool(v) for v in out["differs"][:3]] == [False, True, False] and pd.isna(out["differs"].iloc[3])
    assert list(out["interval_agrees"][:3]) == [False, True, True] and pd.isna(out["interval_agrees"].iloc[3])
    h = pd.DataFrame({"protocol": "cross-dataset", "mode": "linear-probe", "dataset": "mitbih", "task": "aami",
                      "label_fraction": float("nan"), "metric": "f1", "other": ["simclr", "clocs"],
                      "ref_value": [0.5, 0.6], "other_value": [0.45, 0.5], "diff": [0.05, 0.1],
                      "ci_low": [0.001, 0.02], "ci_high": [0.09, 0.18], "p_value": [0.07, 0.01],
                      "excludes_zero": [True, True], "n_seeds": 5})
    md = headline_markdown(h)
    assert "| no (interval excludes 0) |" in md and "| yes: better |" in md
    assert "in 1 row(s) the percentile interval disagrees" in md
