"""Report sections that compare and judge: MIT-BIH AAMI per-class metrics as that literature
reports them, paired differences between methods, and the METS paper's claims beside what a run
measured. Results only (no torch), like the rest of :mod:`benchmark.report`.

Sections written (each also as ``tables/<name>.{md,tex,csv}`` where it is a table):

* **MIT-BIH AAMI (DS1 -> DS2)**: per class and method/mode, sensitivity (Se = recall), positive
  predictive value (+P = precision) and F1, with their macro means and macro AUROC, mean ± SD over
  seeds [mean 95 % CI]; and the beat counts per class and split (train/validation are DS1 patients,
  test is DS2; capped test splits show kept and represented counts).
* **Paired differences** (``tables/paired.csv``, columns in :data:`benchmark.stats.paired.PAIRED_COLUMNS`):
  every pair of methods on every setting of the tables, per seed and averaged over seeds, with
  paired-bootstrap 95 % intervals; the index shows the headline pairs (METS against each other
  method on the main table's settings) and whether each interval excludes zero; and the variant
  comparisons (:func:`comparison_pairs`: each variant against its method's reference variant,
  merl against mets).
* **Paper comparison**: each claim of Li et al. (2023) beside the measured paired difference, the
  scale of the run and whether the interval supports the claim.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.io import atomic_write_csv
from benchmark.report.order import (DATASET_LABEL, FEW_LABEL, MODE_ABBR, ZERO_SHOT, col_sort_key, column_label,
                                    method_sort_key)
from benchmark.report.table import Table, fmt
from benchmark.report.tables import macro
from benchmark.stats.paired import cross_pair

AAMI = ("N", "S", "V", "F", "Q")
MLIT = {"recall": "Se", "precision": "+P", "f1": "F1", "auroc": "AUROC"}


# --------------------------------------------------------------------------------------------
# MIT-BIH AAMI
# --------------------------------------------------------------------------------------------
def mitbih_tables(summary: pd.DataFrame) -> list[Table]:
    s = summary[(summary["dataset"] == "mitbih") & (summary["task"] == "aami")]
    if s.empty:
        return []
    s = s[s["metric"].isin(["recall", "precision", "f1"]) | ((s["metric"] == "auroc") & (s["class"] == ""))].copy()
    s["row"] = [f"{m} ({MODE_ABBR.get(md, md)})" for m, md in zip(s["method"], s["mode"])]
    s["col"] = [f"{c or 'macro'} {MLIT[m]}" for c, m in zip(s["class"], s["metric"])]
    classes = [c for c in AAMI if c in set(s["class"])]
    cols = [f"{c} {MLIT[m]}" for c in classes for m in ("recall", "precision", "f1")]
    cols += [f"macro {MLIT[m]}" for m in ("recall", "precision", "f1", "auroc")]
    modes = {"zero-shot": 0, "linear-probe": 1, "fine-tune": 2}
    order = (s[["row", "method", "mode"]].drop_duplicates()
             .assign(k=lambda d: [(modes.get(m, 9), method_sort_key(x)) for x, m in zip(d["method"], d["mode"])])
             .sort_values("k")["row"].tolist())
    return [Table("mitbih_aami", "MIT-BIH AAMI beat classes, inter-patient DS1 -> DS2 (de Chazal 2004; paced records "
                  "excluded): sensitivity Se (recall), positive predictive value +P (precision) and F1 per class, "
                  "their macro means over the classes present, and macro AUROC; decision rule (argmax with class "
                  "offsets) chosen on held-out DS1 patients, never on DS2. Mean ± SD over seeds [mean 95 % CI]. "
                  "Best per column in bold.", s, "method (mode)", order, [c for c in cols if c in set(s["col"])])]


def mitbih_counts(dirs: list[Path], rows: pd.DataFrame) -> pd.DataFrame | None:
    """Beats per AAMI class and split, from the meta of one MIT-BIH AAMI job."""
    r = rows[(rows["dataset"] == "mitbih") & (rows["task"] == "aami")]
    for d, j in r[["results_dir", "job_id"]].drop_duplicates().itertuples(index=False):
        p = Path(d) / "meta" / f"{j}.json"
        if not p.is_file():
            continue
        counts = json.loads(p.read_text()).get("info", {}).get("class_counts")
        if counts:
            df = pd.DataFrame(counts).reindex(list(AAMI)).fillna(0)
            df.index.name = "class"
            return df
    return None


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


def headline_reference(paired: pd.DataFrame) -> str:
    """METS when it was run, else the method most often compared (an ablation's first variant)."""
    names = pd.concat([paired["method_a"], paired["method_b"]]).dropna()
    if names.empty or "mets" in set(names):
        return "mets"
    return str(names.value_counts().index[0])


def headline_markdown(h: pd.DataFrame, reference: str = "mets") -> str:
    if h.empty:
        return f"*absent:* no pair with {reference} shares a setting with saved per-example scores"
    lines = [f"| setting | metric | {reference} vs other | other | {reference} − other [95 % paired CI] | excludes 0 "
             "| seeds |",
             "|---|---|---|---|---|---|---|"]
    for _, r in h.sort_values(["protocol", "dataset", "task", "mode", "metric", "other"]).iterrows():
        lf = "" if pd.isna(r["label_fraction"]) or r["protocol"] != FEW_LABEL else f" {100 * r['label_fraction']:g}%"
        setting = f"{MODE_ABBR.get(r['mode'], r['mode'])}{lf} {DATASET_LABEL.get(r['dataset'], r['dataset'])} {r['task']}"
        verdict = ("yes: better" if r["excludes_zero"] and r["diff"] > 0 else
                   "yes: worse" if r["excludes_zero"] else "no")
        lines.append(f"| {setting} | {r['metric']} | {fmt(r['ref_value'])} vs {fmt(r['other_value'])} | {r['other']} | "
                     f"{r['diff']:+.3f} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}] | {verdict} | "
                     f"{int(r['n_seeds']) if not pd.isna(r['n_seeds']) else 1} |")
    return "\n".join(lines)


def comparison_pairs(methods: list[str]) -> list[tuple[str, str]]:
    """(variant, reference) pairs the paired-difference table compares: within each method run in
    several variants, every variant against the reference one (``lm_train=frozen`` if present, else
    the plain method, else the first); across methods, merl against mets."""
    pairs = []
    groups: dict[str, list[str]] = {}
    for m in methods:
        groups.setdefault(m.split("[", 1)[0], []).append(m)
    for base, variants in groups.items():
        if len(variants) < 2:
            continue
        ref = next((v for v in variants if "lm_train=frozen" in v), base if base in variants else variants[0])
        pairs += [(v, ref) for v in variants if v != ref]
    if "merl" in methods and "mets" in methods:
        pairs.append(("merl", "mets"))
    return pairs


def variant_markdown(paired: pd.DataFrame, methods: list[str]) -> str:
    """Markdown list of :func:`comparison_pairs` (variant − reference, merl − mets) picked out of
    the paired table (``benchmark.stats.paired``: diff = method_b − method_a), macro AUROC, seed mean
    where several seeds ran; '' when there is no such pair."""
    pairs = comparison_pairs(methods)
    if not pairs or paired.empty:
        return ""
    p = paired[(paired["metric"] == "auroc") & paired["diff"].notna()]
    lines = []
    for v, ref in pairs:
        sel = p[((p["method_a"] == ref) & (p["method_b"] == v)) | ((p["method_a"] == v) & (p["method_b"] == ref))]
        for key, g in sel.groupby(["protocol", "mode", "dataset", "task", "label_fraction"], dropna=False, sort=False):
            r = g[g["seed"].astype(str) == "mean"]
            r = (r if len(r) else g).iloc[0]
            sign = 1.0 if r["method_b"] == v else -1.0
            d, lo, hi = sign * r["diff"], *sorted((sign * r["ci_low"], sign * r["ci_high"]))
            col = dict(zip(["protocol", "mode", "dataset", "task", "label_fraction"], key), metric="auroc")
            verdict = "no" if not (lo > 0 or hi < 0) else ("yes: variant better" if d > 0 else "yes: variant worse")
            lines.append((method_sort_key(v), col_sort_key(col),
                          f"| {v} − {ref} | {column_label(col)} | {d:+.3f} [{fmt(lo)}, {fmt(hi)}] | {verdict} |"))
    if not lines:
        return ""
    head = ["**Variant comparisons** (macro AUROC, variant − reference on the same test examples, 95 % paired "
            "CI; seed mean where several seeds ran):", "",
            "| comparison | setting | diff [95 % paired CI] | excludes 0 |", "|---|---|---|---|"]
    return "\n".join(head + [t for *_, t in sorted(lines, key=lambda x: (x[0], x[1]))])


# --------------------------------------------------------------------------------------------
# the paper's claims
# --------------------------------------------------------------------------------------------
PAPER_CLAIMS = (
    ("C1", "Zero-shot METS beats supervised and SSL baselines that use labels, by about 10 % "
           "(PTB-XL; Li et al. 2023, abstract and Table 2)"),
    ("C2", "METS has the highest recall and F1 on MIT-BIH (abstract and Table 3)"),
)


def paper_comparison(rows: pd.DataFrame, summary: pd.DataFrame, *, n_boot: int = 1000,
                     reference: str = "mets") -> pd.DataFrame:
    """One line per (claim, comparison): measured paired difference and whether it supports."""
    out = []
    methods = sorted(set(rows["method"]) - {reference}, key=method_sort_key)
    if reference not in set(rows["method"]):
        return pd.DataFrame()
    zs = rows[(rows["method"] == reference) & (rows["mode"] == "zero-shot") & (rows["dataset"] == "ptbxl")]
    def add(claim: str, comparison: str, a: dict, b: dict, metric: str, **extra) -> None:
        try:
            res = cross_pair(rows, a, b, metric, n_boot=n_boot)
        except ValueError as exc:
            res = {"note": str(exc)}
        if res is None:
            return
        keep = ("value_b", "value_a", "diff", "ci_low", "ci_high", "n", "n_seeds", "excludes_zero", "note")
        out.append({"claim": claim, "comparison": comparison, "metric": metric, "other": a["method"],
                    "mode": a["mode"], **extra, **{k: res.get(k) for k in keep}})

    # C1: METS zero-shot vs each other method's few-label rows on the same task (same test fold)
    for task in [t for t in ("superdiagnostic", "subdiagnostic", "form", "rhythm") if t in set(zs["task"])]:
        fl = rows[(rows["protocol"] == FEW_LABEL) & (rows["task"] == task) & (rows["method"].isin(methods))]
        for (m, mode, lf), _ in fl.groupby(["method", "mode", "label_fraction"], sort=False):
            a = {"method": m, "protocol": FEW_LABEL, "mode": mode, "dataset": "ptbxl", "task": task,
                 "label_fraction": lf}
            b = {"method": reference, "protocol": ZERO_SHOT, "mode": "zero-shot", "dataset": "ptbxl", "task": task}
            for metric in ("auroc", "f1"):
                add("C1", f"{reference} ZS − {m} {MODE_ABBR.get(mode, mode)} {100 * float(lf):g}% (PTB-XL {task})",
                    a, b, metric, task=task, label_fraction=lf)
    # C2: MIT-BIH AAMI macro recall and F1, METS against every other method in each mode
    mit = rows[(rows["dataset"] == "mitbih") & (rows["task"] == "aami")]
    for mode in [m for m in ("zero-shot", "linear-probe", "fine-tune") if m in set(mit["mode"])]:
        for m in methods:
            a = {"method": m, "dataset": "mitbih", "task": "aami", "mode": mode}
            b = {"method": reference, "dataset": "mitbih", "task": "aami", "mode": mode}
            for metric in ("recall", "f1"):
                add("C2", f"{reference} − {m} ({MODE_ABBR.get(mode, mode)}, MIT-BIH DS2)", a, b, metric,
                    task="aami", label_fraction=np.nan)
    df = pd.DataFrame(out)
    if not df.empty:
        df = df.rename(columns={"value_b": "mets_value", "value_a": "other_value"})
    return df


def _verdict(g: pd.DataFrame, where: str) -> str:
    """'supported' only when every comparison's paired interval is above zero."""
    g = g.dropna(subset=["diff"])
    if g.empty:
        return f"not measured {where}".strip()
    better = int(((g["excludes_zero"] == True) & (g["diff"] > 0)).sum())  # noqa: E712
    worse = int(((g["excludes_zero"] == True) & (g["diff"] < 0)).sum())  # noqa: E712
    n, mean = len(g), float(g["diff"].mean())
    if better == n:
        v = "**supported**"
    elif worse == n:
        v = "**contradicted**"
    elif worse and not better:
        v = "**not supported**"
    elif better and not worse:
        v = "**partly supported**"
    else:
        v = "**mixed**"
    return (f"{v} {where}: METS better in {better} of {n} comparisons, worse in {worse}, "
            f"mean difference {mean:+.3f}").replace("  ", " ")


def paper_markdown(pc: pd.DataFrame, scale: str) -> str:
    if pc.empty:
        return "*absent:* the results hold no METS zero-shot or MIT-BIH AAMI rows with saved scores"
    lines = []
    for cid, text in PAPER_CLAIMS:
        g = pc[pc["claim"] == cid]
        if g.empty:
            lines += [f"**{cid}. {text}** — *absent:* not measured in these results.", ""]
            continue
        main_metric = "auroc" if cid == "C1" else "f1"
        gm = g[g["metric"] == main_metric]
        if cid == "C1":  # one verdict per labelled fraction of the baselines, on the first task
            gm = gm[gm["task"] == gm["task"].iloc[0]]
            parts = [_verdict(gg, f"against baselines trained on {100 * float(lf):g} % of the labels")
                     for lf, gg in gm.groupby("label_fraction", sort=True)]
            verdict = "; ".join(parts)
        else:
            verdict = _verdict(gm, "")
        lines += [f"**{cid}. {text}**", "", f"Verdict (macro {main_metric}; {scale}): {verdict}.", "",
                  "| comparison | metric | METS | other | diff [95 % paired CI] | excludes 0 |", "|---|---|---|---|---|---|"]
        for _, r in g.iterrows():
            if pd.isna(r.get("diff")):
                lines.append(f"| {r['comparison']} | {r['metric']} | – | – | {r.get('note') or 'n/a'} | – |")
                continue
            lines.append(f"| {r['comparison']} | {r['metric']} | {fmt(r['mets_value'])} | {fmt(r['other_value'])} | "
                         f"{r['diff']:+.3f} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}] | "
                         f"{'yes' if r['excludes_zero'] else 'no'} |")
        lines.append("")
    return "\n".join(lines)


def write_paired(paired: pd.DataFrame, tables_dir: Path) -> Path:
    path = tables_dir / "paired.csv"
    atomic_write_csv(paired, path)
    return path
