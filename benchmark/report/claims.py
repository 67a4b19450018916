"""Report sections that compare and judge: MIT-BIH AAMI per-class metrics as that literature
reports them, paired differences between methods, and the METS paper's claims beside what a run
measured. Results only (no torch), like the rest of :mod:`benchmark.report`.

Sections written (each also as ``tables/<name>.{md,tex,csv}`` where it is a table):

* **MIT-BIH AAMI (DS1 -> DS2)**: per class and method/mode, sensitivity (Se = recall), positive
  predictive value (+P = precision) and F1, with their macro means and macro AUROC, mean ± SD over
  seeds [mean 95 % CI]; and the beat counts per class and split (train/validation are DS1 patients,
  test is DS2; capped test splits show kept and represented counts); and the probe's decision rule
  per job (chosen on DS1) beside its DS2 S/V results (``mitbih_decision_rules.csv``).
* **Paired differences** (``tables/paired.csv``, columns in :data:`benchmark.stats.paired.PAIRED_COLUMNS`):
  every pair of methods on every setting of the tables, per seed and averaged over seeds, with
  paired-bootstrap 95 % intervals; the index shows the headline pairs (METS against each other
  method on the main table's settings), each decided on its p-value with the interval beside it
  and any disagreement between the two said in the row; and the variant
  comparisons (:func:`comparison_pairs`: each variant against its method's reference variant,
  merl against mets).
* **Paper comparison**: each claim of Li et al. (2023) beside the measured paired difference, the
  scale of the run and whether the interval supports the claim.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.report.order import (DATASET_LABEL, FEW_LABEL, MODE_ABBR, ZERO_SHOT, col_sort_key, column_label,
                                    method_sort_key)
from benchmark.report.table import Table, fmt, fmt_p
from benchmark.report.tables import macro
from benchmark.results import ResultStore
from benchmark.stats.inference import holm
from benchmark.stats.bootstrap import percentile_interval, resample_weights
from benchmark.stats.metrics import all_stats
from benchmark.stats.paired import cross_pair, load_scored, scores_index, test_units

AAMI = ("N", "S", "V", "F", "Q")
MLIT = {"recall": "Se", "precision": "+P", "f1": "F1", "auroc": "AUROC"}


# --------------------------------------------------------------------------------------------
# MIT-BIH AAMI
# --------------------------------------------------------------------------------------------
NSVF = ("N", "S", "V", "F")  # the AAMI classes the inter-patient literature averages over (Q is ~0.01 % of DS2)
# Published inter-patient DS1 -> DS2 results, Se and +P in % (other papers' numbers on the full DS2,
# not measured here): the bar a MIT-BIH beat classifier is read against
PUBLISHED_SV = (
    ("de Chazal et al. 2004", {"S": (76.0, 38.0), "V": (77.0, 82.0)}),
    ("Llamedo & Martinez 2011", {"S": (77.0, 39.0), "V": (81.0, 87.0)}),
    ("Zhang et al. 2014", {"S": (79.1, 36.0), "V": (85.5, 92.7)}),
)


def mitbih_nsvf(rows: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Macro Se/+P/F1 over N, S, V, F (without Q) of every MIT-BIH AAMI job with saved scores,
    summarised over seeds like :func:`benchmark.report.tables.summarise` (class ``N/S/V/F``).
    The interval of each job resamples DS2 records (its patients), with the cap weights."""
    jobs = scores_index(rows)
    jobs = jobs[(jobs["dataset"] == "mitbih") & (jobs["task"] == "aami")]
    out = []
    for r in jobs.itertuples(index=False):
        ev = load_scored(r.path)
        if ev.pred is None or not set(NSVF) <= set(ev.classes):
            continue
        keep = np.array([c in NSVF for c in ev.classes])
        present = keep & (ev.y.sum(axis=0) > 0)
        _, groups, _ = test_units("mitbih", ev.examples)
        y, pred = ev.y.astype(bool), ev.pred.astype(bool)
        point = all_stats(ev.w[None, :], y, ev.s, pred, present, auroc=False)
        boot = [all_stats(cw, y, ev.s, pred, present, auroc=False)
                for cw in resample_weights(len(ev.examples), n_boot, seed, ev.w, groups=groups)]
        for metric in ("recall", "precision", "f1"):
            draws = np.concatenate([b[(metric + "_macro",)] for b in boot])
            lo, hi, _ = percentile_interval(draws)
            out.append({"method": r.method, "mode": r.mode, "seed": r.seed, "metric": metric, "class": "N/S/V/F",
                        "value": float(point[(metric + "_macro",)][0]), "ci_low": lo, "ci_high": hi})
    if not out:
        return pd.DataFrame()
    df = pd.DataFrame(out)
    g = df.groupby(["method", "mode", "metric", "class"], sort=False)
    return g.agg(mean=("value", "mean"), sd=("value", "std"), ci_low=("ci_low", "mean"), ci_high=("ci_high", "mean"),
                 n_seeds=("seed", "nunique")).reset_index().assign(note="")


def mitbih_scale(rows: pd.DataFrame) -> str:
    """'n: 22 records (the bootstrap's units), 8,000 kept beats standing for 49,712' from the saved
    scores of one MIT-BIH AAMI job ('' without any)."""
    jobs = scores_index(rows)
    jobs = jobs[(jobs["dataset"] == "mitbih") & (jobs["task"] == "aami")]
    if jobs.empty:
        return ""
    ev = load_scored(jobs["path"].iloc[0])
    _, _, n_units = test_units("mitbih", ev.examples)
    return (f"Test n: {n_units} DS2 records (patients: the bootstrap's units), {len(ev.examples):,} kept beats "
            f"standing for {ev.w.sum():,.0f} (majority-capped, weighted).")


def _mitbih_rows(summary: pd.DataFrame) -> pd.DataFrame:
    s = summary[(summary["dataset"] == "mitbih") & (summary["task"] == "aami")]
    s = s[s["metric"].isin(["recall", "precision", "f1"]) | ((s["metric"] == "auroc") & (s["class"] == ""))].copy()
    s["row"] = [f"{m} ({MODE_ABBR.get(md, md)})" for m, md in zip(s["method"], s["mode"])]
    return s


def _mitbih_order(s: pd.DataFrame) -> list[str]:
    modes = {"zero-shot": 0, "linear-probe": 1, "fine-tune": 2}
    return (s[["row", "method", "mode"]].drop_duplicates()
            .assign(k=lambda d: [(modes.get(m, 9), method_sort_key(x)) for x, m in zip(d["method"], d["mode"])])
            .sort_values("k")["row"].tolist())


def mitbih_tables(summary: pd.DataFrame, nsvf: pd.DataFrame | None = None, scale: str = "") -> list[Table]:
    s = _mitbih_rows(summary)
    if s.empty:
        return []
    if nsvf is not None and not nsvf.empty:
        extra = nsvf.copy()
        extra["row"] = [f"{m} ({MODE_ABBR.get(md, md)})" for m, md in zip(extra["method"], extra["mode"])]
        s = pd.concat([s, extra[extra["row"].isin(set(s["row"]))]], ignore_index=True)
    s["col"] = [f"{c or 'macro'} {MLIT[m]}" for c, m in zip(s["class"], s["metric"])]
    classes = [c for c in AAMI if c in set(s["class"])]
    cols = [f"{c} {MLIT[m]}" for c in classes for m in ("recall", "precision", "f1")]
    cols += [f"N/S/V/F {MLIT[m]}" for m in ("recall", "precision", "f1")]
    cols += [f"macro {MLIT[m]}" for m in ("recall", "precision", "f1", "auroc")]
    tables = [Table("mitbih_aami", "MIT-BIH AAMI beat classes, inter-patient DS1 -> DS2 (de Chazal 2004; paced "
                    "records excluded): sensitivity Se (recall), positive predictive value +P (precision) and F1 "
                    "per class; their macro means over N/S/V/F (the literature's classes; its interval resamples "
                    "DS2 records) and over all classes present (Q included: 7 test beats, never predicted, so it "
                    "enters Se/+P/F1 as 0); and macro AUROC; decision rule (argmax with class offsets) chosen on "
                    "held-out DS1 patients, never on DS2. Mean ± SD over seeds [mean 95 % CI]. "
                    + (f"{scale} " if scale else "") + "Best per column in bold.",
                    s, "method (mode)", _mitbih_order(s), [c for c in cols if c in set(s["col"])])]
    ref = mitbih_reference_table(s)
    if ref is not None:
        tables.append(ref)
    return tables


def mitbih_reference_table(s: pd.DataFrame) -> Table | None:
    """S and V Se/+P/F1 of this run beside the published inter-patient results (reference rows)."""
    sv = s[s["class"].isin(["S", "V"]) & s["metric"].isin(["recall", "precision", "f1"])].copy()
    if sv.empty:
        return None
    published = []
    for name, vals in PUBLISHED_SV:
        for cls, (se, pp) in vals.items():
            f1 = 2 * se * pp / (se + pp) / 100
            for metric, v in (("recall", se / 100), ("precision", pp / 100), ("f1", f1)):
                published.append({"row": f"{name} [published, full DS2]", "class": cls, "metric": metric, "mean": v,
                                  "sd": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_seeds": 1, "note": ""})
    cells = pd.concat([sv, pd.DataFrame(published)], ignore_index=True)
    cells["col"] = [f"{c} {MLIT[m]}" for c, m in zip(cells["class"], cells["metric"])]
    cols = [f"{c} {MLIT[m]}" for c in ("S", "V") for m in ("recall", "precision", "f1")]
    rows = _mitbih_order(sv) + [f"{name} [published, full DS2]" for name, _ in PUBLISHED_SV]
    return Table("mitbih_sv_reference", "MIT-BIH DS2, supraventricular (S) and ventricular (V) beats: this run's "
                 "Se, +P and F1 beside published inter-patient results. Rows marked [published] are other papers' "
                 "numbers on the full DS2 (their F1 derived from their Se and +P), not measured here; this run's "
                 "rows are mean ± SD over seeds [mean 95 % CI].", cells, "method (mode) / source", rows,
                 [c for c in cols if c in set(cells["col"])], best_axis="none")


def job_info(results_dir, job_id: str) -> dict:
    """The ``info`` a job saved in its meta (``ResultStore.load_meta``); {} when it saved none."""
    return ResultStore(results_dir).load_meta(job_id).get("info", {})


def mitbih_counts(dirs: list[Path], rows: pd.DataFrame) -> pd.DataFrame | None:
    """Beats per AAMI class and split, from the meta of one MIT-BIH AAMI job."""
    r = rows[(rows["dataset"] == "mitbih") & (rows["task"] == "aami")]
    for d, j in r[["results_dir", "job_id"]].drop_duplicates().itertuples(index=False):
        counts = job_info(d, j).get("class_counts")
        if counts:
            df = pd.DataFrame(counts).reindex(list(AAMI)).fillna(0)
            df.index.name = "class"
            return df
    return None


def mitbih_rules(dirs: list[Path], rows: pd.DataFrame) -> pd.DataFrame | None:
    """Per MIT-BIH AAMI probe job: the decision rule ``beat_rule`` chose on DS1 (its meta's
    ``info.decision_rule``: the nested out-of-fold macro F1 of argmax and of offsets), the fitted
    per-class offsets, whether the S-vs-N stage (``beat_sn_stage``) was used and at which threshold
    (``info.sn_stage``: its nested out-of-fold macro F1 without and with it; absent in jobs run
    before the stage existed, which had none), and the job's DS2 N Se and S/V Se/+P/F1 beside them
    -- how much of a seed's S result is the rule. None when no job recorded a rule."""
    r = rows[(rows["dataset"] == "mitbih") & (rows["task"] == "aami") & (rows["mode"] == "linear-probe")]
    out = []
    for (d, j, method, seed), g in r.groupby(["results_dir", "job_id", "method", "seed"], sort=False):
        info = job_info(d, j)
        rule = info.get("decision_rule")
        if not rule:
            continue
        row = {"method": method, "seed": seed, "rule": rule.get("chosen"),
               "ds1_nested_f1_argmax": rule.get("cv_macro_f1_argmax"),
               "ds1_nested_f1_offsets": rule.get("cv_macro_f1_offsets")}
        offsets = info.get("offsets") or [0.0] * len(AAMI)
        row.update({f"offset_{c}": float(o) for c, o in zip(AAMI, offsets) if c != "Q"})
        stage = info.get("sn_stage") or {}
        used = bool(stage.get("chosen", stage.get("stage") == "rr"))
        row.update({"sn_stage": "rr" if used else "none",
                    "sn_threshold": stage.get("threshold", np.nan) if used else np.nan,
                    "ds1_nested_f1_without_stage": stage.get("cv_macro_f1_without", np.nan),
                    "ds1_nested_f1_with_stage": stage.get("cv_macro_f1_with", np.nan)})
        v = g[(g["class"] == "N") & (g["metric"] == "recall")]["value"]
        row["ds2_N_Se"] = float(v.iloc[0]) if len(v) else np.nan
        for cls in ("S", "V"):
            for metric in ("recall", "precision", "f1"):
                v = g[(g["class"] == cls) & (g["metric"] == metric)]["value"]
                row[f"ds2_{cls}_{MLIT[metric]}"] = float(v.iloc[0]) if len(v) else np.nan
        out.append(row)
    if not out:
        return None
    df = pd.DataFrame(out)
    order = sorted(range(len(df)), key=lambda i: (method_sort_key(df["method"][i]), str(df["seed"][i])))
    return df.iloc[order].reset_index(drop=True)


def mitbih_rules_markdown(df: pd.DataFrame) -> str:
    """Per method: how often each rule (and S-vs-N stage) was chosen and the DS2 N Se and S/V
    results under it (means)."""
    md = ["| method | rule chosen on DS1 | S-vs-N stage | jobs | mean S offset | DS2 N Se | DS2 S Se | DS2 S F1 | "
          "DS2 V F1 |", "|:--|:--|:--|--:|--:|--:|--:|--:|--:|"]
    for (m, rule, stage), g in df.groupby(["method", "rule", "sn_stage"], sort=False):
        md.append(f"| {m} | {rule} | {stage} | {len(g)} | {g['offset_S'].mean():+.2f} | {fmt(g['ds2_N_Se'].mean())} | "
                  f"{fmt(g['ds2_S_Se'].mean())} | {fmt(g['ds2_S_F1'].mean())} | {fmt(g['ds2_V_F1'].mean())} |")
    return "\n".join(md)


# --------------------------------------------------------------------------------------------
# paired differences
# --------------------------------------------------------------------------------------------
def headline_pairs(paired: pd.DataFrame, summary: pd.DataFrame, reference: str = "mets") -> pd.DataFrame:
    """The reference method against every other method on the main table's settings (seed-mean
    rows, macro AUROC; macro F1 for MIT-BIH)."""
    if paired.empty:
        return paired
    # seed-mean rows where several seeds were paired, the single seed's row otherwise
    p = paired[paired["seed"] == "mean"] if (paired["seed"] == "mean").any() else paired
    p = p[((p["method_a"] == reference) | (p["method_b"] == reference)) & p["diff"].notna()].copy()
    # orient as reference minus other (paired rows are method_b - method_a)
    ref_is_a = p["method_a"] == reference
    sign = np.where(ref_is_a, -1.0, 1.0)
    lo, hi = p["ci_low"] * sign, p["ci_high"] * sign
    p["diff"] = p["diff"] * sign
    p["ci_low"], p["ci_high"] = np.minimum(lo, hi), np.maximum(lo, hi)
    p["ref_value"] = np.where(ref_is_a, p["value_a"], p["value_b"])
    p["other_value"] = np.where(ref_is_a, p["value_b"], p["value_a"])
    p["other"] = np.where(ref_is_a, p["method_b"], p["method_a"])
    m = macro(summary)
    fl = m[m["protocol"] == FEW_LABEL]
    top = fl.groupby(["mode", "dataset", "task"])["label_fraction"].transform("max") if not fl.empty else None
    keep_fl = set(map(tuple, fl[fl["label_fraction"] == top][["mode", "dataset", "task", "label_fraction"]]
                      .drop_duplicates().to_numpy().tolist())) if top is not None else set()
    ok = []
    for _, r in p.iterrows():
        if r["protocol"] == FEW_LABEL:
            ok.append((r["mode"], r["dataset"], r["task"], r["label_fraction"]) in keep_fl)
        else:
            ok.append(True)
    p = p[pd.Series(ok, index=p.index, dtype=bool)]  # (a plain empty list would select no columns)
    p = p[(p["metric"] == "auroc") | ((p["dataset"] == "mitbih") & (p["metric"] == "f1"))]
    return p


def default_variant(variants: list[str]) -> str | None:
    """The variant whose every setting equals its method's default (``mets[report_text=en]`` is the
    plain ``mets`` written out), or None: the reference an ablation's variants are compared with."""
    import inspect

    from benchmark.registry import METHODS, load_builtin_plugins, parse_spec

    load_builtin_plugins()
    for v in variants:
        name, params = parse_spec(v)
        if not params or name not in METHODS:
            continue
        defaults = inspect.signature(METHODS.entry(name).factory).parameters
        if all(k in defaults and defaults[k].default == val for k, val in params.items()):
            return v
    return None


def headline_reference(paired: pd.DataFrame) -> str:
    """METS when it was run, else the variant run with the defaults (an ablation's reference), else
    the method most often compared."""
    names = pd.concat([paired["method_a"], paired["method_b"]]).dropna()
    if names.empty or "mets" in set(names):
        return "mets"
    return default_variant(sorted(set(names))) or str(names.value_counts().index[0])


def headline_markdown(h: pd.DataFrame, reference: str = "mets") -> str:
    """The headline pairs, each decided on one basis: its seed-aware bootstrap p (a Wald p with the
    bootstrap SE, the basis Holm adjusts in the paper comparison), p < 0.05. The percentile interval
    is printed beside it; where the two disagree (the draws are skewed: the interval excludes 0 at
    p >= 0.05, or includes it at p < 0.05) the row says so instead of letting either decide silently."""
    if h.empty:
        return f"*absent:* no pair with {reference} shares a setting with saved per-example scores"
    lines = [f"| setting | metric | {reference} vs other | other | {reference} − other [95 % seed-aware paired CI] | p "
             "| differs (p < 0.05) | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    split = 0
    for _, r in h.sort_values(["protocol", "dataset", "task", "mode", "metric", "other"]).iterrows():
        lf = "" if pd.isna(r["label_fraction"]) or r["protocol"] != FEW_LABEL else f" {100 * r['label_fraction']:g}%"
        setting = f"{MODE_ABBR.get(r['mode'], r['mode'])}{lf} {DATASET_LABEL.get(r['dataset'], r['dataset'])} {r['task']}"
        pv = r.get("p_value", np.nan)
        sig = bool(pd.notna(pv) and pv < ALPHA)
        verdict = ("yes: better" if r["diff"] > 0 else "yes: worse") if sig else "no"
        if pd.notna(pv) and sig != bool(r["excludes_zero"]):
            split += 1
            verdict += " (interval " + ("excludes" if r["excludes_zero"] else "includes") + " 0)"
        lines.append(f"| {setting} | {r['metric']} | {fmt(r['ref_value'])} vs {fmt(r['other_value'])} | {r['other']} | "
                     f"{r['diff']:+.3f} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}] | {fmt_p(pv)} | {verdict} | "
                     f"{int(r['n_seeds']) if not pd.isna(r['n_seeds']) else 1} |")
    if split:
        lines += ["", f"Decided on p; in {split} row(s) the percentile interval disagrees with it (said in the row)."]
    return "\n".join(lines)


def comparison_pairs(methods: list[str]) -> list[tuple[str, str]]:
    """(variant, reference) pairs the paired-difference table compares: within each method run in
    several variants, every variant against the reference one (the variant that writes out the
    method's defaults, e.g. ``lm_train=frozen`` or ``report_text=en``, else the plain method, else
    the first); across methods, merl against mets."""
    pairs = []
    groups: dict[str, list[str]] = {}
    for m in methods:
        groups.setdefault(m.split("[", 1)[0], []).append(m)
    for base, variants in groups.items():
        if len(variants) < 2:
            continue
        ref = default_variant(variants) or (base if base in variants else variants[0])
        pairs += [(v, ref) for v in variants if v != ref]
    if "merl" in methods and "mets" in methods:
        pairs.append(("merl", "mets"))
    return pairs


def variant_markdown(paired: pd.DataFrame, methods: list[str]) -> str:
    """Markdown list of :func:`comparison_pairs` (variant − reference, merl − mets) picked out of
    the paired table (``benchmark.stats.paired``: diff = method_b − method_a), macro AUROC, seed mean
    where several seeds ran; '' when there is no such pair. The comparisons are one family: their
    p-values (seed-aware where several seeds ran) are Holm-adjusted together, and the verdict is
    read off the adjusted p, so a report with many variants does not read its luckiest one as a
    finding."""
    pairs = comparison_pairs(methods)
    if not pairs or paired.empty:
        return ""
    p = paired[(paired["metric"] == "auroc") & paired["diff"].notna()]
    found = []
    for v, ref in pairs:
        sel = p[((p["method_a"] == ref) & (p["method_b"] == v)) | ((p["method_a"] == v) & (p["method_b"] == ref))]
        for key, g in sel.groupby(["protocol", "mode", "dataset", "task", "label_fraction"], dropna=False, sort=False):
            r = g[g["seed"].astype(str) == "mean"]
            r = (r if len(r) else g).iloc[0]
            sign = 1.0 if r["method_b"] == v else -1.0
            d, lo, hi = sign * r["diff"], *sorted((sign * r["ci_low"], sign * r["ci_high"]))
            col = dict(zip(["protocol", "mode", "dataset", "task", "label_fraction"], key), metric="auroc")
            found.append((method_sort_key(v), col_sort_key(col), v, ref, col, d, lo, hi, float(r.get("p_value", np.nan))))
    if not found:
        return ""
    pv = np.array([f[-1] for f in found], dtype=float)
    adj = np.full(len(found), np.nan)
    ok = np.isfinite(pv)
    if ok.any():
        adj[ok] = holm(pv[ok])
    lines = []
    for (sk, ck, v, ref, col, d, lo, hi, praw), padj in zip(found, adj):
        verdict = ("–" if not np.isfinite(padj) else "no" if padj >= ALPHA else
                   "yes: variant better" if d > 0 else "yes: variant worse")
        lines.append((sk, ck, f"| {v} − {ref} | {column_label(col)} | {d:+.3f} [{fmt(lo)}, {fmt(hi)}] | "
                              f"{fmt_p(praw)} | {fmt_p(padj)} | {verdict} |"))
    head = ["**Variant comparisons** (macro AUROC, variant − reference on the same test examples, 95 % paired "
            "CI; seed mean where several seeds ran, with a seed-aware interval and p-value). The "
            f"{int(ok.sum())} comparisons are one family: p is {CORRECTION}-adjusted over all of them, and "
            f"'significant' means adjusted p < {ALPHA}:", "",
            "| comparison | setting | diff [95 % paired CI] | p | Holm p | significant |", "|---|---|---|---|---|---|"]
    return "\n".join(head + [t for *_, t in sorted(lines, key=lambda x: (x[0], x[1]))])


# --------------------------------------------------------------------------------------------
# the paper's claims
# --------------------------------------------------------------------------------------------
PAPER_CLAIMS = (
    ("C1", "Zero-shot METS beats supervised and SSL baselines that use labels, by about 10 % "
           "(PTB-XL; Li et al. 2023, abstract and Table 2)"),
    ("C2", "METS has the highest recall and F1 on MIT-BIH (abstract and Table 3)"),
)
ALPHA = 0.05  # family-wise error rate of each claim's family (Holm)
CORRECTION = "Holm"


def _group(method: str) -> str:
    """Which family of C1 a baseline belongs to: the random-init floor is judged on its own."""
    return "random-init" if str(method).split("[")[0] == "random-init" else "pretrained and supervised baselines"


def label_budgets(rows: pd.DataFrame) -> dict:
    """Absolute sizes behind the fractions, from the saved job metadata of PTB-XL few-label jobs:
    ``{"train": {fraction: labelled ECGs}, "val": n, "test": n}`` (empty where not saved)."""
    r = rows[(rows["protocol"] == "few-label") & (rows["dataset"] == "ptbxl")]
    out: dict = {"train": {}, "val": None, "test": None}
    for d, j, lf in r[["results_dir", "job_id", "label_fraction"]].drop_duplicates().itertuples(index=False):
        if float(lf) in out["train"]:
            continue
        info = job_info(d, j)
        if "n_train" in info:
            out["train"][float(lf)] = int(info["n_train"])
        out["val"] = info.get("n_val", out["val"])
        out["test"] = info.get("n_test", out["test"])
    return out


def paper_comparison(rows: pd.DataFrame, summary: pd.DataFrame, *, n_boot: int = 1000,
                     reference: str = "mets") -> pd.DataFrame:
    """One line per (claim, comparison, metric): the measured paired difference with its
    seed-aware interval and p-value, the family of tests it belongs to (``family``,
    ``family_size``) and its Holm-adjusted p-value (``p_holm``); rows outside a family are shown
    for context and carry no verdict."""
    out = []
    methods = sorted(set(rows["method"]) - {reference}, key=method_sort_key)
    if reference not in set(rows["method"]):
        return pd.DataFrame()
    zs = rows[(rows["method"] == reference) & (rows["mode"] == "zero-shot") & (rows["dataset"] == "ptbxl")]

    def add(claim: str, comparison: str, a: dict, b: dict, metric: str, family: str, **extra) -> None:
        try:
            res = cross_pair(rows, a, b, metric, n_boot=n_boot)
        except ValueError as exc:
            res = {"note": str(exc)}
        if res is None:
            return
        keep = ("value_b", "value_a", "diff", "ci_low", "ci_high", "p_value", "n", "n_represented", "unit",
                "n_units", "n_seeds", "excludes_zero", "note")
        out.append({"claim": claim, "family": family, "comparison": comparison, "metric": metric,
                    "other": a["method"], "mode": a["mode"], **extra, **{k: res.get(k) for k in keep}})

    # C1: METS zero-shot vs each other method's few-label rows on the same task (same test fold);
    # one family per label budget and baseline group, on the primary task and metric (macro AUROC)
    tasks = [t for t in ("superdiagnostic", "subdiagnostic", "form", "rhythm") if t in set(zs["task"])]
    for task in tasks:
        fl = rows[(rows["protocol"] == FEW_LABEL) & (rows["task"] == task) & (rows["method"].isin(methods))]
        for (m, mode, lf), _ in fl.groupby(["method", "mode", "label_fraction"], sort=False):
            a = {"method": m, "protocol": FEW_LABEL, "mode": mode, "dataset": "ptbxl", "task": task,
                 "label_fraction": lf}
            b = {"method": reference, "protocol": ZERO_SHOT, "mode": "zero-shot", "dataset": "ptbxl", "task": task}
            for metric in ("auroc", "f1"):
                family = (f"C1 {100 * float(lf):g}% labels, {_group(m)}"
                          if task == tasks[0] and metric == "auroc" else "")
                add("C1", f"{reference} ZS − {m} {MODE_ABBR.get(mode, mode)} {100 * float(lf):g}% (PTB-XL {task})",
                    a, b, metric, family, task=task, label_fraction=lf)
    # C2: MIT-BIH AAMI macro recall and F1. Zero-shot reading: METS zero-shot against every other
    # method's probe and fine-tune; probe/fine-tune reading: METS against every other method in
    # the same mode. One family per reading (both metrics).
    mit = rows[(rows["dataset"] == "mitbih") & (rows["task"] == "aami")]
    modes = [m for m in ("linear-probe", "fine-tune") if m in set(mit["mode"])]
    if "zero-shot" in set(mit[mit["method"] == reference]["mode"]):
        for mode in modes:
            for m in methods:
                a = {"method": m, "dataset": "mitbih", "task": "aami", "mode": mode}
                b = {"method": reference, "dataset": "mitbih", "task": "aami", "mode": "zero-shot"}
                for metric in ("recall", "f1"):
                    add("C2", f"{reference} ZS − {m} {MODE_ABBR.get(mode, mode)} (MIT-BIH DS2)", a, b, metric,
                        "C2 zero-shot reading", task="aami", label_fraction=np.nan)
    for mode in modes:
        for m in methods:
            a = {"method": m, "dataset": "mitbih", "task": "aami", "mode": mode}
            b = {"method": reference, "dataset": "mitbih", "task": "aami", "mode": mode}
            for metric in ("recall", "f1"):
                add("C2", f"{reference} − {m} ({MODE_ABBR.get(mode, mode)}, MIT-BIH DS2)", a, b, metric,
                    "C2 probe/fine-tune reading", task="aami", label_fraction=np.nan)
    df = pd.DataFrame(out)
    if df.empty:
        return df
    df = df.rename(columns={"value_b": "mets_value", "value_a": "other_value"})
    df["family_size"] = 0
    df["p_holm"] = np.nan
    for fam, g in df[df["family"] != ""].groupby("family", sort=False):
        ok = g["p_value"].notna()
        df.loc[g.index, "family_size"] = int(ok.sum())
        df.loc[g.index[ok.to_numpy()], "p_holm"] = holm(g.loc[ok, "p_value"].to_numpy(dtype=float))
    df["significant"] = df["p_holm"] < ALPHA
    return df


def _verdict(g: pd.DataFrame) -> str:
    """From the Holm-adjusted, seed-aware tests of one family: **supported** when every test says
    METS is better, **not supported** when any says it is worse, **inconclusive** otherwise."""
    g = g.dropna(subset=["p_holm"])
    if g.empty:
        return "not measured"
    better = int((g["significant"] & (g["diff"] > 0)).sum())
    worse = int((g["significant"] & (g["diff"] < 0)).sum())
    n = len(g)
    v = "supported" if better == n else "not supported" if worse else "inconclusive"
    return (f"**{v}** (METS better in {better} of {n} tests, worse in {worse}; "
            f"mean difference {float(g['diff'].mean()):+.3f})")


def claim_verdicts(pc: pd.DataFrame) -> pd.DataFrame:
    """One line per family: claim, family, size, verdict (plain word), better, worse."""
    out = []
    for (claim, fam), g in pc[pc["family"] != ""].groupby(["claim", "family"], sort=False):
        g = g.dropna(subset=["p_holm"])
        better = int((g["significant"] & (g["diff"] > 0)).sum())
        worse = int((g["significant"] & (g["diff"] < 0)).sum())
        verdict = ("not measured" if g.empty else "supported" if better == len(g) else
                   "not supported" if worse else "inconclusive")
        out.append({"claim": claim, "family": fam, "family_size": len(g), "verdict": verdict, "better": better,
                    "worse": worse})
    return pd.DataFrame(out)


def _budget_text(budgets: dict) -> str:
    train = budgets.get("train") or {}
    parts = [f"{100 * lf:g} % = {n:,} labelled training ECGs" for lf, n in sorted(train.items())]
    text = "; ".join(parts)
    if budgets.get("val"):
        text += (f"; every method, zero-shot METS included, chooses its decision thresholds (F1) on "
                 f"{budgets['val']:,} labelled validation ECGs")
    if budgets.get("test"):
        text += f"; the PTB-XL test fold has {budgets['test']:,} ECGs"
    return text


def paper_markdown(pc: pd.DataFrame, scale: str, budgets: dict | None = None) -> str:
    if pc.empty:
        return "*absent:* the results hold no METS zero-shot or MIT-BIH AAMI rows with saved scores"
    fams = pc[pc["family"] != ""].groupby("family", sort=False)["family_size"].max()
    lines = [f"How claims are judged: each claim is split into families of tests (named below with their "
             f"size); a test is the seed-aware paired bootstrap (seeds resampled, then test units: PTB-XL "
             f"ECGs, MIT-BIH records) of METS minus the other method, and its p-value is {CORRECTION}-adjusted "
             f"within its family (family-wise α = {ALPHA:g}). A family is **supported** when every test finds METS "
             f"better, **not supported** when any finds it worse, **inconclusive** otherwise. Scale: {scale}"
             + (f"; {_budget_text(budgets)}" if budgets and _budget_text(budgets) else "")
             + ". These are far smaller than the paper's full PTB-XL (21,799 ECGs).", "",
             "Families: " + "; ".join(f"{f} ({int(n)} tests)" for f, n in fams.items()) + ".", ""]
    for cid, text in PAPER_CLAIMS:
        g = pc[pc["claim"] == cid]
        if g.empty:
            lines += [f"**{cid}. {text}** — *absent:* not measured in these results.", ""]
            continue
        lines += [f"**{cid}. {text}**", ""]
        for fam, gf in g[g["family"] != ""].groupby("family", sort=False):
            lines.append(f"- {fam} ({int(gf['family_size'].max())} tests): {_verdict(gf)}")
        lines += ["", "| comparison | metric | METS | other | diff [95 % seed-aware CI] | p (Holm) | family |",
                  "|---|---|---|---|---|---|---|"]
        for _, r in g.iterrows():
            if pd.isna(r.get("diff")):
                lines.append(f"| {r['comparison']} | {r['metric']} | – | – | {r.get('note') or 'n/a'} | – | – |")
                continue
            p = fmt_p(r.get("p_holm")) + (" *" if not pd.isna(r.get("p_holm")) and r["significant"] else "")
            lines.append(f"| {r['comparison']} | {r['metric']} | {fmt(r['mets_value'])} | {fmt(r['other_value'])} | "
                         f"{r['diff']:+.3f} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}] | {p} | "
                         f"{r['family'] or 'context'} |")
        lines.append("")
    return "\n".join(lines)


def delong_markdown(paired: pd.DataFrame) -> str:
    """How the bootstrap interval and DeLong's test agree on the per-seed AUROC rows they share."""
    if "delong_p" not in paired.columns:
        return ""
    r = paired[(paired["seed"] != "mean") & paired["delong_p"].notna() & paired["ci_low"].notna()]
    if r.empty:
        return ""
    boot = r["excludes_zero"].astype(bool)
    dl = r["delong_p"] < 0.05
    dis = r[boot != dl]
    text = (f"Second test: on the {len(r)} per-seed macro-AUROC rows with example units, the paired bootstrap "
            f"(interval excludes 0) and DeLong's test (p < 0.05) agree on {int((boot == dl).sum())}")
    if dis.empty:
        return text + "."
    lines = [text + "; they disagree on these (both shown, neither hidden):", "",
             "| setting | pair | seed | diff [95 % CI] | DeLong p |", "|---|---|---|---|---|"]
    for _, x in dis.iterrows():
        lf = "" if pd.isna(x["label_fraction"]) else f" {100 * float(x['label_fraction']):g}%"
        lines.append(f"| {MODE_ABBR.get(x['mode'], x['mode'])}{lf} {DATASET_LABEL.get(x['dataset'], x['dataset'])} "
                     f"{x['task']} | {x['method_b']} − {x['method_a']} | {x['seed']} | {x['diff']:+.3f} "
                     f"[{fmt(x['ci_low'])}, {fmt(x['ci_high'])}] | {fmt_p(x['delong_p'])} |")
    return "\n".join(lines)
