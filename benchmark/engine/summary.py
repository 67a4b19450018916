"""The end-of-run summary: the headline table of a results folder, one row per method, one column
per headline number -- zero-shot macro AUROC per PTB-XL task first, then few-label macro AUROC per
mode x label fraction, then cross-dataset per target, task and mode. Means over seeds, formatted
0.xxx, '-' where a method has no such number (never NaN). Text-ceiling rows are the frozen
language model's diagnostics, not a method's result: they stay in the report, not here."""

from __future__ import annotations

import math

import pandas as pd

from benchmark.protocols import protocols_in_report_order

SHORT = {"linear-probe": "probe", "fine-tune": "ft", "zero-shot": "zs"}
EXCLUDED = ("text-ceiling",)


def _frac(f) -> str:
    return f"{float(f) * 100:g}%"


def _column(protocol: str, mode: str, dataset: str, task: str, frac, n_tasks: int) -> str:
    m = SHORT.get(mode, mode)
    if protocol == "zero-shot":
        return f"zs {task}"
    if protocol == "few-label":
        return f"{m} {_frac(frac)}" + (f" {task}" if n_tasks > 1 else "")
    return f"{dataset}/{task} {m}"


def _nan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


MODE_ORDER = {"zero-shot": 0, "linear-probe": 1, "fine-tune": 2}


def _render(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def headline_table(rows: pd.DataFrame, methods: list[str] | None = None, tasks: list[str] | None = None) -> str | None:
    """The headline table(s) as text: PTB-XL (zero-shot, few-label) and, when present, a second
    table of the cross-dataset targets. ``methods`` and ``tasks`` give the order of rows and
    columns (the run's settings); None when there is no macro AUROC row to show."""
    if rows is None or len(rows) == 0:
        return None
    r = rows[(rows["metric"] == "auroc") & (rows["class"].fillna("") == "") & ~rows["protocol"].isin(EXCLUDED)]
    if r.empty:
        return None
    order = {p.name: i for i, p in enumerate(protocols_in_report_order())}
    tasks = {t: i for i, t in enumerate(dict.fromkeys([*(tasks or []), *sorted(set(r["task"]))]))}
    r = r.assign(frac_key=r["label_fraction"].map(lambda f: "" if _nan(f) else f"{float(f):.6g}"))
    means = r.groupby(["method", "protocol", "mode", "dataset", "task", "frac_key"])["value"].mean().to_dict()
    keys = sorted({(k[1], k[2], k[3], k[4], k[5]) for k in means},
                  key=lambda k: (order.get(k[0], len(order)), k[2], MODE_ORDER.get(k[1], 9),
                                 float(k[4] or 0), tasks.get(k[3], 0)))
    n_fl_tasks = r.loc[r["protocol"] == "few-label", "task"].nunique()
    present = list(dict.fromkeys(r["method"]))
    meths = [m for m in (methods or []) if m in present] + [m for m in present if m not in (methods or [])]
    out = []
    for part in ("ptbxl", "cross"):
        cols = [(_column(p, m, d, t, float(f) if f and p == "few-label" else None, n_fl_tasks), (p, m, d, t, f))
                for p, m, d, t, f in keys if (p in ("zero-shot", "few-label")) == (part == "ptbxl")]
        if not cols:
            continue
        table = [["method", *[c for c, _ in cols]]]
        for m in meths:
            vals = [means.get((m, *key), float("nan")) for _, key in cols]
            table.append([m, *["-" if _nan(v) else f"{float(v):.3f}" for v in vals]])
        out.append(_render(table))
    return "\n\n".join(out) if out else None
