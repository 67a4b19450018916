"""The report's tables, built from the seed summary of the merged result rows.

How a cell is summarised over seeds
-----------------------------------
``mean ± sd [lo, hi]``: ``mean`` and ``sd`` (sample SD, ddof=1; '–' with one seed) are taken
over the per-seed values; ``[lo, hi]`` is the mean over seeds of the per-seed 95 % bootstrap
bounds, i.e. the typical test-sampling uncertainty of *one* run (it is not a CI of the mean
over seeds). The CSV holds the unrounded ``mean``, ``sd``, ``ci_low``, ``ci_high`` and
``n_seeds`` of every cell. In every table the best method for a setting is in bold (highest
mean; ties all bold).

Every builder takes the summary (:func:`summarise`) and returns a :class:`~benchmark.report.table.Table`
(or None / [] when the results hold nothing for it). The MIT-BIH AAMI table and the paired
comparisons are in :mod:`benchmark.report.claims`.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from benchmark.report.order import (CROSS_DATASET, DATASET_LABEL, DATASET_ORDER, FEW_LABEL, TEXT_CEILING, ZERO_SHOT,
                                    col_sort_key, column_label, method_sort_key)
from benchmark.report.table import Table
from benchmark.results import KEY_COLUMNS

SUMMARY_KEY = tuple(k for k in KEY_COLUMNS if k != "seed")


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per number of the key without ``seed``: mean, sd over seeds, mean CI bounds,
    number of seeds, seeds list, test size ``n``, ``n_pos``, ``n_classes`` and notes."""
    if rows.empty:
        return pd.DataFrame(columns=list(SUMMARY_KEY) + ["method_name", "mean", "sd", "ci_low", "ci_high",
                                                         "n_seeds", "seeds", "n", "n_pos", "n_classes", "note"])
    g = rows.groupby(list(SUMMARY_KEY), dropna=False, sort=False)
    out = g.agg(
        method_name=("method_name", "first"),
        mean=("value", "mean"),
        sd=("value", "std"),
        ci_low=("ci_low", "mean"),
        ci_high=("ci_high", "mean"),
        n_seeds=("seed", "nunique"),
        seeds=("seed", lambda s: ",".join(str(x) for x in sorted(set(s)))),
        n=("n", "max"),
        n_pos=("n_pos", "min"),
        n_classes=("n_classes", "min"),
        note=("note", lambda s: "; ".join(sorted({x for x in s if x}))),
    ).reset_index()
    return out


def methods_by_settings(summary: pd.DataFrame, name: str, caption: str,
                        methods: list[str] | None = None) -> Table | None:
    """Rows = methods, columns = settings (protocol, mode, dataset, task, fraction, metric)."""
    if summary.empty:
        return None
    settings = ["protocol", "mode", "dataset", "task", "label_fraction", "metric"]
    cols = summary[settings].drop_duplicates().to_dict("records")
    cols.sort(key=col_sort_key)
    many_datasets = summary["dataset"].nunique() > 1
    labels = {}
    for c in cols:
        labels[tuple(_nan_key(c[k]) for k in settings)] = column_label(c, with_dataset=many_datasets)
    cells = summary.copy()
    cells["row"] = cells["method"]
    cells["col"] = [labels[tuple(_nan_key(r[k]) for k in settings)] for _, r in cells.iterrows()]
    row_labels = methods or sorted(cells["method"].unique(), key=method_sort_key)
    return Table(name, caption, cells, "method", row_labels, list(dict.fromkeys(labels.values())))


def _nan_key(v):
    return "nan" if isinstance(v, float) and math.isnan(v) else v


def macro(summary: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """The macro (all-class) lines of ``metric``."""
    return summary[(summary["metric"] == metric) & (summary["class"] == "")]


def main_table(summary: pd.DataFrame) -> Table | None:
    """Headline macro AUROC: zero-shot, few-label at the largest fraction, cross-dataset."""
    m = macro(summary)
    m = m[m["protocol"] != TEXT_CEILING]  # its own section: text_ceiling_table
    fl = m[m["protocol"] == FEW_LABEL]
    if not fl.empty:
        top = fl.groupby(["mode", "dataset", "task"])["label_fraction"].transform("max")
        fl = fl[fl["label_fraction"] == top]
    sel = pd.concat([m[m["protocol"] != FEW_LABEL], fl])
    return methods_by_settings(
        sel, "main",
        "Macro AUROC on the test splits, mean ± SD over seeds [mean 95 % bootstrap CI]; few-label at the "
        "largest label fraction. ZS zero-shot, LP linear probe, FT fine-tune. Best per column in bold.")


def few_label_table(summary: pd.DataFrame) -> Table | None:
    m = macro(summary)
    m = m[m["protocol"] == FEW_LABEL]
    return methods_by_settings(
        m, "few_label",
        "Few-label macro AUROC by labelled fraction of the training split (LP linear probe on frozen "
        "embeddings, FT fine-tune), mean ± SD over seeds [mean 95 % CI]. Best per column in bold.")


def cross_dataset_table(summary: pd.DataFrame) -> Table | None:
    s = summary[(summary["protocol"] == CROSS_DATASET) & (summary["class"] == "")
                & (summary["metric"].isin(["auroc", "f1"]))]
    return methods_by_settings(
        s, "cross_dataset",
        "Cross-dataset transfer of PTB-XL-pretrained encoders: macro AUROC and macro F1 on MIT-BIH and "
        "CinC 2017 test splits (LP linear probe, ZS zero-shot), mean ± SD over seeds [mean 95 % CI]. "
        "Best per column in bold.")


TC_COLS = {"zero-shot": "ECG zero-shot", "text-tower": "text tower (ceiling)", "bare-lm": "bare LM"}


def text_ceiling_table(summary: pd.DataFrame) -> Table | None:
    """Rows = (method variant, PTB-XL task); columns = ECG zero-shot, the text tower's ceiling and
    the bare LM, all macro AUROC on the same test split; extra column: the gap ceiling - zero-shot."""
    m = macro(summary)
    m = m[m["dataset"] == "ptbxl"]
    zs = m[m["protocol"] == ZERO_SHOT].assign(col=TC_COLS["zero-shot"])
    tc = m[(m["protocol"] == TEXT_CEILING) & m["mode"].isin(["text-tower", "bare-lm"])]
    tc = tc[~tc["task"].str.contains("-", regex=False)]  # PTB-XL tasks; proxies have their own table
    if tc.empty:
        return None
    tc = tc.assign(col=tc["mode"].map(TC_COLS))
    cells = pd.concat([zs, tc], ignore_index=True)
    cells = cells[cells["method"].isin(set(tc["method"]))]
    cells["row"] = cells["method"] + " · " + cells["task"]
    rows = sorted(cells["row"].unique(), key=lambda r: (method_sort_key(r.split(" · ")[0]), r.split(" · ")[1]))
    gap = {}
    for row, g in cells.groupby("row"):
        means = dict(zip(g["col"], g["mean"]))
        if TC_COLS["zero-shot"] in means and TC_COLS["text-tower"] in means:
            gap[row] = f"{means[TC_COLS['text-tower']] - means[TC_COLS['zero-shot']]:+.3f}"
    return Table(
        "text_ceiling",
        "Text-only ceiling (PTB-XL test split): macro AUROC of the ECG zero-shot classifier beside the same "
        "prompts classifying the test *reports* -- through the model's trained text tower (LM + learned text "
        "projection: the space zero-shot scores in; what a perfectly aligned ECG embedding would reach) and "
        "through the bare LM before ECG training (cosine of raw LM embeddings). gap = tower - ECG zero-shot. "
        "Mean ± SD over seeds [mean 95 % CI]; best per row in bold.",
        cells, "method · task", rows, list(TC_COLS.values()), best_axis="row",
        extra_cols={"gap": gap})


PROXY_COLS = {"text-tower": "reports: text tower", "bare-lm": "reports: bare LM", "ecg": "ECGs: 12 leads",
              "ecg-single-lead": "ECGs: single lead"}


def proxy_table(summary: pd.DataFrame) -> Table | None:
    """The cross-dataset prompt diagnostics: PTB-XL reports and ECGs scored with the MIT-BIH PVC /
    CinC AF prompts, with and without negated descriptions, beside the target's own zero-shot."""
    m = macro(summary)
    px = m[(m["protocol"] == TEXT_CEILING) & (m["dataset"] == "ptbxl")
           & m["task"].str.contains("-", regex=False) & ~m["task"].str.endswith("-cosine")]
    if px.empty:
        return None
    px = px.assign(col=px["mode"].map(PROXY_COLS).fillna(px["mode"]), row=px["method"] + " · " + px["task"])
    target_cells = []
    for task in px["task"].unique():
        target, _, ttask = task.removesuffix("-no-negation").partition("-")
        neg = task.endswith("-no-negation")
        t = m[(m["dataset"] == target) & (m["mode"] == "zero-shot") & (m["task"] == ttask)] if not neg else \
            m[(m["protocol"] == TEXT_CEILING) & (m["dataset"] == target) & (m["task"] == f"{ttask}-no-negation")]
        for _, r in t.iterrows():
            target_cells.append({**r.to_dict(), "col": f"target ECGs ({DATASET_LABEL.get(target, target)})",
                                 "row": r["method"] + " · " + task})
    cells = pd.concat([px, pd.DataFrame(target_cells)], ignore_index=True) if target_cells else px
    cols = list(dict.fromkeys(list(PROXY_COLS.values()) + [c for c in cells["col"] if c not in PROXY_COLS.values()]))
    cols = [c for c in cols if c in set(cells["col"])]
    rows = sorted(cells["row"].unique(), key=lambda r: (method_sort_key(r.split(" · ")[0]), r.split(" · ")[1]))
    return Table(
        "text_ceiling_proxies",
        "Why a cross-dataset zero-shot fails: the target's prompts (MIT-BIH PVC: non-V/V; CinC 2017 AF: "
        "non-AF/AF) scored on PTB-XL test reports (positive = the report's PVC / AFIB statement) in both text "
        "spaces, on the same PTB-XL ECGs with 12 leads and with only the target's single lead (MIT-BIH II, "
        "CinC I), and on the target data set's own test ECGs; '-no-negation' drops negated descriptions "
        "('no premature ventricular contraction', 'non-ventricular beat'). Macro AUROC, mean [95 % CI].",
        cells, "method · prompts", rows, cols, best_axis="row")


def negation_table(summary: pd.DataFrame) -> Table | None:
    c = summary[(summary["protocol"] == TEXT_CEILING) & (summary["metric"] == "cosine")]
    if c.empty:
        return None
    c = c.assign(row=c["method"] + " · " + c["task"].str.removesuffix("-negation-cosine") + " · " + c["class"],
                 col=c["mode"].map(TC_COLS))
    return Table(
        "negation_cosines",
        "Cosine between the class vector of each description of the negative class and the positive class's "
        "vector (text tower / bare LM): a negation ('no premature ventricular contraction') that sits as close "
        "to the positive class as to a plain negative description ('normal beat') pulls the negative class "
        "towards the positive one.", c, "method · prompts · negative description",
        sorted(c["row"].unique()), [v for v in ("text tower (ceiling)", "bare LM") if v in set(c["col"])],
        best_axis="none")


def zero_shot_class_tables(summary: pd.DataFrame) -> list[Table]:
    """Per (dataset, task): rows = classes, columns = methods (best method per class in bold)."""
    z = summary[(summary["mode"] == "zero-shot") & (summary["metric"] == "auroc")]
    out = []
    for (dataset, task), g in sorted(z.groupby(["dataset", "task"]), key=lambda kv: (
            DATASET_ORDER.index(kv[0][0]) if kv[0][0] in DATASET_ORDER else 9, kv[0][1])):
        g = g.copy()
        g["row"] = np.where(g["class"] == "", "macro", g["class"])
        g["col"] = g["method"]
        classes = list(dict.fromkeys(g.loc[g["class"] != "", "class"]))
        npos = g[g["class"] != ""].groupby("class")["n_pos"].min()
        methods = sorted(g["method"].unique(), key=method_sort_key)
        t = Table(
            f"zero_shot_per_class_{dataset}_{task}",
            f"Zero-shot AUROC per class, {DATASET_LABEL.get(dataset, dataset)} {task} (test split), mean ± SD "
            "over seeds [mean 95 % CI]; n+ = test positives; 'absent' = no positives or no negatives in the "
            "test split (left out of the macro mean). Best method per class in bold.",
            g, "class", classes + ["macro"], methods, best_axis="row",
            extra_cols={"n+": {c: str(int(npos[c])) for c in classes}})
        out.append(t)
    return out


def ablation_tables(summary: pd.DataFrame) -> list[Table]:
    """For each base method run in several variants: rows = variants, columns = main settings."""
    out = []
    m = macro(summary)
    for name, g in m.groupby("method_name"):
        variants = sorted(g["method"].unique(), key=method_sort_key)
        if len(variants) < 2:
            continue
        t = main_table(g)
        if t is None:
            continue
        t.name = f"ablation_{re.sub(r'[^A-Za-z0-9]+', '_', name)}"
        t.caption = (f"Ablation of {name}: macro AUROC of each variant under the headline settings, mean ± SD "
                     "over seeds [mean 95 % CI]. Best per column in bold.")
        t.row_header = "variant"
        t.row_labels = variants
        out.append(t)
    return out
