"""The key results, the head of every report: zero-shot METS against the best baseline at each
label budget (the C1 rows of the paper comparison) and MIT-BIH DS2 S and V F1 beside the published
inter-patient rows."""

from __future__ import annotations

import pandas as pd

from benchmark.report.claims import PUBLISHED_SV
from benchmark.report.order import MODE_ABBR
from benchmark.report.table import fmt, fmt_p


def key_results(pc: pd.DataFrame, summary: pd.DataFrame, reference: str = "mets") -> pd.DataFrame:
    """The lines a reader needs first: zero-shot METS against the best baseline at each label
    budget (the C1 rows of the primary task, with their seed-aware interval and Holm p), and
    S and V F1 on MIT-BIH DS2 for METS and the best other method per mode."""
    out = []
    if not pc.empty:
        c1 = pc[(pc["claim"] == "C1") & (pc["family"] != "") & pc["diff"].notna()]
        for lf, g in c1.groupby("label_fraction", sort=True):
            best = g.loc[g["other_value"].idxmax()]
            out.append({"what": "zero-shot vs best baseline", "setting": f"{100 * float(lf):g}% labels",
                        "method": f"{reference} (ZS)", "value": best["mets_value"],
                        "other": f"{best['other']} ({MODE_ABBR.get(best['mode'], best['mode'])})",
                        "other_value": best["other_value"], "diff": best["diff"], "ci_low": best["ci_low"],
                        "ci_high": best["ci_high"], "p_holm": best["p_holm"], "task": best["task"]})
    s = summary[(summary["dataset"] == "mitbih") & (summary["task"] == "aami") & (summary["metric"] == "f1")
                & summary["class"].isin(["S", "V"])]
    for mode, g in s.groupby("mode", sort=False):
        sv = g.pivot_table(index="method", columns="class", values="mean")
        if not {"S", "V"} <= set(sv.columns):
            continue
        others = sv.drop(index=[reference], errors="ignore")
        picks = ([reference] if reference in sv.index else []) + (
            [others.mean(axis=1).idxmax()] if not others.empty else [])
        for m in picks:
            for cls in ("S", "V"):
                r = g[(g["method"] == m) & (g["class"] == cls)].iloc[0]
                out.append({"what": f"MIT-BIH DS2 {cls} F1", "setting": MODE_ABBR.get(mode, mode), "method": m,
                            "value": r["mean"], "sd": r["sd"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
    return pd.DataFrame(out)


def key_results_markdown(k: pd.DataFrame, reference: str = "mets") -> str:
    lines = []
    mit = k[k["what"].str.startswith("MIT-BIH")] if not k.empty else k
    if not mit.empty:
        lines += [f"**MIT-BIH DS2, S and V beats: F1** of {reference} and of the best other method per mode "
                  "(mean ± SD over seeds [mean 95 % CI]; the published inter-patient bar is S F1 ≈ 0.5, V F1 ≈ 0.8, "
                  "the published rows are F1 from their DS2 Se and +P):", "", "| mode | method | S F1 | V F1 |", "|:--|:--|--:|--:|"]
        for (mode, m), g in mit.groupby(["setting", "method"], sort=False):
            cells = []
            for cls in ("S", "V"):
                r = g[g["what"] == f"MIT-BIH DS2 {cls} F1"].iloc[0]
                sd = "" if pd.isna(r["sd"]) else f" ± {fmt(r['sd'])}"
                cells.append(f"{fmt(r['value'])}{sd} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]")
            lines.append(f"| {mode} | {m} | {cells[0]} | {cells[1]} |")
        for name, sv in PUBLISHED_SV:  # F1 from the published DS2 Se and +P
            f1 = [2 * se * pp / (se + pp) / 100 for se, pp in (sv["S"], sv["V"])]
            lines.append(f"| published | {name} | {f1[0]:.2f} | {f1[1]:.2f} |")
        lines.append("")
    zs = k[k["what"] == "zero-shot vs best baseline"] if not k.empty else k
    if not zs.empty:
        task = zs["task"].iloc[0]
        lines += [f"**Zero-shot {reference} against the best baseline at each label budget** (PTB-XL {task}, macro "
                  f"AUROC; difference {reference} − baseline with its 95 % seed-aware paired interval and the Holm "
                  "p-value within its family of the paper comparison):", "",
                  f"| label budget | best baseline | baseline | {reference} ZS | difference [95 % CI] | p (Holm) |",
                  "|:--|:--|--:|--:|--:|--:|"]
        for _, r in zs.iterrows():
            p = fmt_p(r["p_holm"])
            lines.append(f"| {r['setting']} | {r['other']} | {fmt(r['other_value'])} | {fmt(r['value'])} | "
                         f"{r['diff']:+.3f} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}] | {p} |")
        lines.append("")
    return "\n".join(lines).rstrip()
