"""``python -m benchmark report``: tables and figures from result folders -- results only,
never a model (this module does not import torch).

``make_report(result_dirs, out_dir)`` merges the folders (latest duplicate wins, see
:func:`benchmark.results.merge_results`), summarises every number over pretraining seeds and
writes::

    <out>/index.md                        every table and figure, one line of caption each,
                                          data scale and caveats at the top
    <out>/tables/<name>.{md,tex,csv}      Markdown, LaTeX (booktabs) and tidy CSV
    <out>/figures/<name>.{png,pdf}

How a cell is summarised over seeds
-----------------------------------
``mean ± sd [lo, hi]``: ``mean`` and ``sd`` (sample SD, ddof=1; '–' with one seed) are taken
over the per-seed values; ``[lo, hi]`` is the mean over seeds of the per-seed 95 % bootstrap
bounds, i.e. the typical test-sampling uncertainty of *one* run (it is not a CI of the mean
over seeds). The CSV holds the unrounded ``mean``, ``sd``, ``ci_low``, ``ci_high`` and
``n_seeds`` of every cell. In every table the best method for a setting is in bold (highest
mean; ties all bold).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from benchmark.errors import UserError
from benchmark.io import atomic_write_csv, atomic_write_text
from benchmark.results import KEY_COLUMNS, merge_results

log = logging.getLogger("benchmark.report")

PROTOCOL_ORDER = ("zero-shot", "few-label", "cross-dataset", "text-ceiling")
MODE_ORDER = ("zero-shot", "linear-probe", "fine-tune", "text-tower", "bare-lm", "ecg", "ecg-single-lead")
DATASET_ORDER = ("ptbxl", "mitbih", "cinc2017")
METHOD_ORDER = ("mets", "supervised", "simclr", "clocs", "random-init")
MODE_ABBR = {"zero-shot": "ZS", "linear-probe": "LP", "fine-tune": "FT"}
DATASET_LABEL = {"ptbxl": "PTB-XL", "mitbih": "MIT-BIH", "cinc2017": "CinC 2017"}
SMALL_N = 200  # test sets below this many examples get a caveat line
SMALL_POS = 10  # classes with fewer test positives get a caveat line
SUMMARY_KEY = tuple(k for k in KEY_COLUMNS if k != "seed")


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def add_arguments(p) -> None:
    p.add_argument("--results", action="append", metavar="DIR",
                   help="results folder of `benchmark run` (repeat to merge several; the latest duplicate row "
                   "wins), or a folder of result folders such as results/ (one report each, or one merged "
                   "report with --merge). Default: results/run")
    p.add_argument("--out", help="report folder (default: reports/<name of the first results folder>; for a "
                   "folder of result folders: reports/, one sub-folder per report); its tables/ and figures/ belong to "
                   "the report: files there that this report does not make (from an earlier one) are removed")
    p.add_argument("--merge", action="store_true",
                   help="with a folder of result folders: merge them all into one report instead of one each")
    p.add_argument("--title", help="heading of index.md and index.html")
    p.add_argument("--paired-boot", type=int, default=1000, metavar="N",
                   help="bootstrap resamples of the paired differences (default 1000)")
    p.add_argument("--no-html", action="store_true", help="skip index.html (Markdown, LaTeX, CSV, figures only)")
    p.add_argument("--link-figures", action="store_true",
                   help="index.html points at figures/*.png beside it instead of embedding them "
                   "(smaller page; keep the folder together)")


def _expand(d: Path) -> list[Path] | None:
    """[d] for a results folder, its result sub-folders for a folder of them, None if neither."""
    from benchmark.results import holds_results, result_folders

    if not d.is_dir():
        return None
    if holds_results(d):
        return [d]
    found, skipped = result_folders(d)
    for s in skipped:
        log.info("skipping %s: no rows/*.parquet or results.csv (not a `benchmark run` results folder)", s)
    return found or None


def _missing(d: Path, default: bool) -> UserError:
    hint = ""
    parent = d.parent if d.parent != Path("") else Path(".")
    if parent.is_dir():
        from benchmark.results import result_folders

        found, _ = result_folders(parent)
        if found:
            hint = "; result folders next to it: " + ", ".join(str(f) for f in found[:8])
    if not d.exists():
        what = "no --results given and the default " if default else ""
        return UserError(f"{what}results folder '{d}' does not exist: pass --results DIR of a finished run{hint}")
    return UserError(f"'{d}' holds no results (no rows/*.parquet, no results.csv) and no folder inside it does{hint}")


def main(args) -> int:
    given = [Path(d) for d in (args.results or ["results/run"])]
    expanded: list[list[Path]] = []
    for d in given:
        e = _expand(d)
        if e is None:
            raise _missing(d, default=not args.results)
        expanded.append(e)
    html = not args.no_html
    kw = dict(html=html, embed_figures=not args.link_figures, paired_boot=args.paired_boot)
    # one folder of result folders, not merged: one report per sub-folder, plus a landing page
    if len(given) == 1 and expanded[0] != given and not args.merge:
        out = Path(args.out) if args.out else Path("reports")
        made = []
        for d in expanded[0]:
            title = f"{args.title or 'ECG benchmark report'}: {d.name}"
            index = make_report([d], out / d.name, title=title, **kw)
            print(f"report written: {index}")
            made.append((d, index))
        landing = write_landing(out, made, html=html)
        print(f"{len(made)} reports; list: {landing}" + (f" and {landing.with_suffix('.html')}" if html else ""))
        return 0
    dirs = [d for e in expanded for d in e]
    out = Path(args.out) if args.out else Path("reports") / given[0].name
    index = make_report(dirs, out, title=args.title, **kw)
    print(f"report written: {index}")
    if html:
        print(f"browsable page: {index.with_name('index.html')}")
    return 0


def write_landing(out: Path, made: list[tuple[Path, Path]], *, html: bool = True) -> Path:
    """``<out>/index.md`` (and ``.html``): one line per report made from a folder of result folders."""
    import html as _html

    lines = ["# ECG benchmark reports", "",
             "One report per results folder, made by `python -m benchmark report --results "
             f"{made[0][0].parent if made else '.'}` (add `--merge` for one merged report).", "",
             "| results folder | report | rows | methods | seeds |", "|:--|:--|--:|:--|:--|"]
    rows_html = []
    for d, index in made:
        rows = merge_results([d])
        methods = ", ".join(sorted(rows["method"].unique(), key=_method_sort_key))
        seeds = ", ".join(str(s) for s in sorted({int(s) for s in rows["seed"]}))
        rel = index.parent.relative_to(out).as_posix()
        page = f"{rel}/index.html" if html else f"{rel}/index.md"
        lines.append(f"| `{d}` | [{rel}]({page}) ([Markdown]({rel}/index.md)) | {len(rows)} | {methods} | {seeds} |")
        rows_html.append(f'<tr><td><code>{_html.escape(str(d))}</code></td><td><a href="{_html.escape(page)}">'
                         f'{_html.escape(rel)}</a> (<a href="{_html.escape(rel)}/index.md">Markdown</a>)</td>'
                         f'<td data-v="{len(rows)}">{len(rows)}</td><td>{_html.escape(methods)}</td>'
                         f"<td>{_html.escape(seeds)}</td></tr>")
    index = out / "index.md"
    atomic_write_text("\n".join(lines) + "\n", index)
    if html:
        from benchmark.report_html import SCRIPT, STYLE

        atomic_write_text(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ECG benchmark reports</title>"
            f"<style>{STYLE}</style></head><body><main><h1>ECG benchmark reports</h1>"
            "<p>One report per results folder.</p><div class=\"tablewrap\"><table class=\"sortable\" id=\"table-reports\">"
            "<thead><tr><th data-type=\"text\">results folder</th><th data-type=\"text\">report</th>"
            "<th data-type=\"num\">rows</th><th data-type=\"text\">methods</th><th data-type=\"text\">seeds</th></tr>"
            "</thead><tbody>" + "".join(rows_html) + f"</tbody></table></div></main><script>{SCRIPT}</script>"
            "</body></html>\n", out / "index.html")
    return index


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------
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


def _method_sort_key(method: str) -> tuple:
    base = method.split("[", 1)[0]
    rank = METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER)
    return (rank, base, method != base, method)


def _order(values: Iterable, preferred: tuple) -> list:
    vals = list(dict.fromkeys(values))
    return sorted(vals, key=lambda v: (preferred.index(v) if v in preferred else len(preferred), str(v)))


def _col_sort_key(col: dict) -> tuple:
    lf = col["label_fraction"]
    return (
        PROTOCOL_ORDER.index(col["protocol"]) if col["protocol"] in PROTOCOL_ORDER else 9,
        DATASET_ORDER.index(col["dataset"]) if col["dataset"] in DATASET_ORDER else 9,
        col["task"],
        MODE_ORDER.index(col["mode"]) if col["mode"] in MODE_ORDER else 9,
        -1.0 if pd.isna(lf) else float(lf),
        col["metric"],
    )


def column_label(col: dict, *, with_dataset: bool = True) -> str:
    """Short header: 'ZS PTB-XL superdiagnostic', 'LP 10 % PTB-XL superdiagnostic'."""
    parts = [MODE_ABBR.get(col["mode"], col["mode"])]
    lf = col["label_fraction"]
    if col["protocol"] == "few-label" and not pd.isna(lf):
        parts.append(f"{100 * float(lf):g}%")
    if with_dataset:
        parts.append(DATASET_LABEL.get(col["dataset"], col["dataset"]))
    parts.append(col["task"])
    if col["metric"] != "auroc":
        parts.append(col["metric"].upper() if col["metric"] == "f1" else col["metric"])
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# table model and writers
# --------------------------------------------------------------------------------------------
@dataclass
class Table:
    """A results table: ``cells`` is tidy (row_label, col_label, mean, sd, ci_low, ci_high, ...);
    ``best_axis`` says along which axis the methods compete ('col': methods are rows)."""

    name: str
    caption: str
    cells: pd.DataFrame
    row_header: str
    row_labels: list[str]
    col_labels: list[str]
    best_axis: str = "col"
    extra_cols: dict[str, dict[str, str]] = field(default_factory=dict)  # header -> row -> text

    def best_mask(self) -> set[tuple[str, str]]:
        """(row, col) cells holding the best (highest) mean of their setting."""
        best = set()
        if self.best_axis == "none":
            return best
        c = self.cells.dropna(subset=["mean"])
        group = "col" if self.best_axis == "col" else "row"
        for _, g in c.groupby(group):
            if len(g) < 2:
                continue
            top = g["mean"].max()
            if np.isclose(top, g["mean"].min(), rtol=0, atol=1e-12):
                continue  # all equal: nothing is best
            for _, r in g[np.isclose(g["mean"], top, rtol=0, atol=1e-12)].iterrows():
                best.add((r["row"], r["col"]))
        return best


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _cell_parts(r) -> tuple[str, str]:
    """(mean text, rest) e.g. ('0.812', '± 0.010 [0.781, 0.840]'); absent classes -> ('absent', '')."""
    if pd.isna(r["mean"]):
        return ("absent" if "absent" in str(r.get("note", "")) else "–"), ""
    rest = []
    if r["n_seeds"] > 1 and not pd.isna(r["sd"]):
        rest.append(f"± {_fmt(r['sd'])}")
    if not pd.isna(r["ci_low"]):
        rest.append(f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]")
    return _fmt(r["mean"]), " ".join(rest)


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "±": r"$\pm$", "–": "--", "—": "---"}


def latex_escape(s: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(s))


def _grid_cells(t: Table) -> dict[tuple[str, str], object]:
    return {(r["row"], r["col"]): r for _, r in t.cells.iterrows()}


def table_markdown(t: Table) -> str:
    cells, best = _grid_cells(t), t.best_mask()
    headers = [t.row_header] + list(t.extra_cols) + t.col_labels
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |",
             "|" + "|".join([":--"] * (1 + len(t.extra_cols)) + ["--:"] * len(t.col_labels)) + "|"]
    for row in t.row_labels:
        out = [_md_escape(row)] + [_md_escape(t.extra_cols[h].get(row, "")) for h in t.extra_cols]
        for col in t.col_labels:
            r = cells.get((row, col))
            if r is None:
                out.append("–")
                continue
            mean, rest = _cell_parts(r)
            if (row, col) in best:
                mean = f"**{mean}**"
            out.append(f"{mean} {rest}".strip())
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def table_latex(t: Table) -> str:
    cells, best = _grid_cells(t), t.best_mask()
    n_extra = len(t.extra_cols)
    spec = "l" * (1 + n_extra) + "c" * len(t.col_labels)
    head = [latex_escape(t.row_header)] + [latex_escape(h) for h in t.extra_cols] + [
        latex_escape(c) for c in t.col_labels]
    body = []
    for row in t.row_labels:
        out = [latex_escape(row)] + [latex_escape(t.extra_cols[h].get(row, "")) for h in t.extra_cols]
        for col in t.col_labels:
            r = cells.get((row, col))
            if r is None:
                out.append("--")
                continue
            mean, rest = _cell_parts(r)
            mean = "--" if mean == "–" else latex_escape(mean)
            if (row, col) in best:
                mean = rf"\textbf{{{mean}}}"
            rest = latex_escape(rest)
            out.append(mean + (rf" {{\scriptsize {rest}}}" if rest else ""))
        body.append(" & ".join(out) + r" \\")
    label = re.sub(r"[^A-Za-z0-9]+", "-", t.name)
    return "\n".join([
        "% generated by `python -m benchmark report`; needs \\usepackage{booktabs,graphicx}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(t.caption)}}}",
        rf"\label{{tab:{label}}}",
        r"\resizebox{\linewidth}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(head) + r" \\",
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}}",
        r"\end{table}",
        "",
    ])


def table_csv(t: Table) -> pd.DataFrame:
    """Tidy, unrounded: one line per cell with the setting's key columns."""
    best = t.best_mask()
    df = t.cells.copy()
    df["best"] = [(r, c) in best for r, c in zip(df["row"], df["col"])]
    keep = ["row", "col", "method", "protocol", "mode", "dataset", "task", "label_fraction", "metric",
            "class", "mean", "sd", "ci_low", "ci_high", "n_seeds", "seeds", "n", "n_pos", "n_classes",
            "note", "best"]
    return df[[c for c in keep if c in df.columns]]


def write_table(t: Table, tables_dir: Path) -> list[Path]:
    tables_dir.mkdir(parents=True, exist_ok=True)
    md, tex, csv = (tables_dir / f"{t.name}.{ext}" for ext in ("md", "tex", "csv"))
    atomic_write_text(f"**{t.caption}**\n\n" + table_markdown(t) + "\n– : not run or not applicable.\n", md)
    atomic_write_text(table_latex(t), tex)
    atomic_write_csv(table_csv(t), csv)
    return [md, tex, csv]


# --------------------------------------------------------------------------------------------
# the tables
# --------------------------------------------------------------------------------------------
def _methods_by_settings(summary: pd.DataFrame, name: str, caption: str,
                         methods: list[str] | None = None) -> Table | None:
    """Rows = methods, columns = settings (protocol, mode, dataset, task, fraction, metric)."""
    if summary.empty:
        return None
    settings = ["protocol", "mode", "dataset", "task", "label_fraction", "metric"]
    cols = summary[settings].drop_duplicates().to_dict("records")
    cols.sort(key=_col_sort_key)
    many_datasets = summary["dataset"].nunique() > 1
    labels = {}
    for c in cols:
        labels[tuple(_nan_key(c[k]) for k in settings)] = column_label(c, with_dataset=many_datasets)
    cells = summary.copy()
    cells["row"] = cells["method"]
    cells["col"] = [labels[tuple(_nan_key(r[k]) for k in settings)] for _, r in cells.iterrows()]
    row_labels = methods or sorted(cells["method"].unique(), key=_method_sort_key)
    return Table(name, caption, cells, "method", row_labels, list(dict.fromkeys(labels.values())))


def _nan_key(v):
    return "nan" if isinstance(v, float) and math.isnan(v) else v


def macro(summary: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    return summary[(summary["metric"] == metric) & (summary["class"] == "")]


def main_table(summary: pd.DataFrame) -> Table | None:
    """Headline macro AUROC: zero-shot, few-label at the largest fraction, cross-dataset."""
    m = macro(summary)
    m = m[m["protocol"] != "text-ceiling"]  # its own section: text_ceiling_table
    fl = m[m["protocol"] == "few-label"]
    if not fl.empty:
        top = fl.groupby(["mode", "dataset", "task"])["label_fraction"].transform("max")
        fl = fl[fl["label_fraction"] == top]
    sel = pd.concat([m[m["protocol"] != "few-label"], fl])
    return _methods_by_settings(
        sel, "main",
        "Macro AUROC on the test splits, mean ± SD over seeds [mean 95 % bootstrap CI]; few-label at the "
        "largest label fraction. ZS zero-shot, LP linear probe, FT fine-tune. Best per column in bold.")


def few_label_table(summary: pd.DataFrame) -> Table | None:
    m = macro(summary)
    m = m[m["protocol"] == "few-label"]
    return _methods_by_settings(
        m, "few_label",
        "Few-label macro AUROC by labelled fraction of the training split (LP linear probe on frozen "
        "embeddings, FT fine-tune), mean ± SD over seeds [mean 95 % CI]. Best per column in bold.")


def cross_dataset_table(summary: pd.DataFrame) -> Table | None:
    s = summary[(summary["protocol"] == "cross-dataset") & (summary["class"] == "")
                & (summary["metric"].isin(["auroc", "f1"]))]
    return _methods_by_settings(
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
    zs = m[m["protocol"] == "zero-shot"].assign(col=TC_COLS["zero-shot"])
    tc = m[(m["protocol"] == "text-ceiling") & m["mode"].isin(["text-tower", "bare-lm"])]
    tc = tc[~tc["task"].str.contains("-", regex=False)]  # PTB-XL tasks; proxies have their own table
    if tc.empty:
        return None
    tc = tc.assign(col=tc["mode"].map(TC_COLS))
    cells = pd.concat([zs, tc], ignore_index=True)
    cells = cells[cells["method"].isin(set(tc["method"]))]
    cells["row"] = cells["method"] + " · " + cells["task"]
    rows = sorted(cells["row"].unique(), key=lambda r: (_method_sort_key(r.split(" · ")[0]), r.split(" · ")[1]))
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
    px = m[(m["protocol"] == "text-ceiling") & (m["dataset"] == "ptbxl")
           & m["task"].str.contains("-", regex=False) & ~m["task"].str.endswith("-cosine")]
    if px.empty:
        return None
    px = px.assign(col=px["mode"].map(PROXY_COLS).fillna(px["mode"]), row=px["method"] + " · " + px["task"])
    target_cells = []
    for task in px["task"].unique():
        target, _, ttask = task.removesuffix("-no-negation").partition("-")
        neg = task.endswith("-no-negation")
        t = m[(m["dataset"] == target) & (m["mode"] == "zero-shot") & (m["task"] == ttask)] if not neg else \
            m[(m["protocol"] == "text-ceiling") & (m["dataset"] == target) & (m["task"] == f"{ttask}-no-negation")]
        for _, r in t.iterrows():
            target_cells.append({**r.to_dict(), "col": f"target ECGs ({DATASET_LABEL.get(target, target)})",
                                 "row": r["method"] + " · " + task})
    cells = pd.concat([px, pd.DataFrame(target_cells)], ignore_index=True) if target_cells else px
    cols = list(dict.fromkeys(list(PROXY_COLS.values()) + [c for c in cells["col"] if c not in PROXY_COLS.values()]))
    cols = [c for c in cols if c in set(cells["col"])]
    rows = sorted(cells["row"].unique(), key=lambda r: (_method_sort_key(r.split(" · ")[0]), r.split(" · ")[1]))
    return Table(
        "text_ceiling_proxies",
        "Why a cross-dataset zero-shot fails: the target's prompts (MIT-BIH PVC: non-V/V; CinC 2017 AF: "
        "non-AF/AF) scored on PTB-XL test reports (positive = the report's PVC / AFIB statement) in both text "
        "spaces, on the same PTB-XL ECGs with 12 leads and with only the target's single lead (MIT-BIH II, "
        "CinC I), and on the target data set's own test ECGs; '-no-negation' drops negated descriptions "
        "('no premature ventricular contraction', 'non-ventricular beat'). Macro AUROC, mean [95 % CI].",
        cells, "method · prompts", rows, cols, best_axis="row")


def negation_table(summary: pd.DataFrame) -> Table | None:
    c = summary[(summary["protocol"] == "text-ceiling") & (summary["metric"] == "cosine")]
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
    the paired table (``benchmark.paired``: diff = method_b − method_a), macro AUROC, seed mean
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
            lines.append((_method_sort_key(v), _col_sort_key(col),
                          f"| {v} − {ref} | {column_label(col)} | {d:+.3f} [{_fmt(lo)}, {_fmt(hi)}] | {verdict} |"))
    if not lines:
        return ""
    head = ["**Variant comparisons** (macro AUROC, variant − reference on the same test examples, 95 % paired "
            "CI; seed mean where several seeds ran):", "",
            "| comparison | setting | diff [95 % paired CI] | excludes 0 |", "|---|---|---|---|"]
    return "\n".join(head + [t for *_, t in sorted(lines, key=lambda x: (x[0], x[1]))])


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
        methods = sorted(g["method"].unique(), key=_method_sort_key)
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
        variants = sorted(g["method"].unique(), key=_method_sort_key)
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


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------
@dataclass
class Section:
    title: str
    items: list[tuple[str, str]] = field(default_factory=list)  # (relative path, caption)
    absent: str = ""
    inline: dict[str, str] = field(default_factory=dict)  # path -> Markdown shown under its link
    tables: dict[str, "Table"] = field(default_factory=dict)  # path of the .md -> the table (for HTML)


def _load_histories(dirs: list[Path]) -> pd.DataFrame:
    from benchmark.results import ResultStore

    frames = []
    for d in dirs:
        h = ResultStore(d).load_history()
        if not h.empty:
            frames.append(h)
    if not frames:
        return pd.DataFrame()
    h = pd.concat(frames, ignore_index=True)
    if "key" in h.columns and "epoch" in h.columns:
        h = h.drop_duplicates(["key", "epoch"], keep="last")
    if "method" not in h.columns:
        h["method"] = h.get("key", "")
    if "seed" not in h.columns:
        h["seed"] = 0
    return h


def _load_panel(dirs: list[Path]) -> tuple[dict | None, str]:
    """The ECG panel of the last folder that has one; (None, reason) otherwise."""
    for d in reversed(dirs):
        p = Path(d) / "examples" / "ecg_panel.npz"
        if p.is_file():
            try:
                with np.load(p, allow_pickle=False) as z:
                    panel = {k: z[k] for k in z.files}
            except Exception as exc:
                return None, f"cannot read {p}: {exc}"
            if "signals" not in panel or "fs" not in panel or np.asarray(panel["signals"]).ndim != 3:
                return None, f"{p} lacks 'signals' [k,12,T] or 'fs'"
            return panel, str(p)
    return None, "no examples/ecg_panel.npz in the results (written by zero-shot PTB-XL superdiagnostic jobs)"


def _claim_sections(rows, summary, dirs, out: Path, table_section, paired_boot: int) -> list["Section"]:
    """MIT-BIH AAMI per-class table, paired differences and the paper comparison
    (:mod:`benchmark.report_claims`)."""
    from benchmark import report_claims as rc
    from benchmark.paired import paired_table

    secs = [table_section("MIT-BIH AAMI (DS1 -> DS2)", rc.mitbih_tables(summary), "no MIT-BIH AAMI rows")]
    counts = rc.mitbih_counts(dirs, rows)
    if counts is not None and secs[0].items:
        path = out / "tables" / "mitbih_aami_counts.csv"
        atomic_write_csv(counts.reset_index(), path)
        md = ["| class | " + " | ".join(counts.columns) + " |", "|---" * (len(counts.columns) + 1) + "|"]
        md += [f"| {c} | " + " | ".join(f"{int(v):,}" for v in r) + " |" for c, r in counts.iterrows()]
        rel = path.relative_to(out).as_posix()
        secs[0].items.append((rel, "Beats per AAMI class and split (train/val: DS1 patients, val held out; test: "
                                   "DS2; paced records and records without MLII excluded)."))
        secs[0].inline[rel] = "\n".join(md)
    paired = paired_table(rows, n_boot=paired_boot)
    sec = Section("Paired differences")
    if paired.empty:
        sec.absent = "no two methods were evaluated on the same test examples with saved scores"
    else:
        path = rc.write_paired(paired, out / "tables")
        rel = path.relative_to(out).as_posix()
        sec.items.append((rel, "Every pair of methods on every setting: metric(method_b) − metric(method_a) per seed "
                               "and averaged over seeds, 95 % paired-bootstrap CI (the same resampled test examples "
                               "for both methods), and whether it excludes 0. Headline pairs below (the reference method "
                               "minus each other, seed mean)."))
        ref = rc.headline_reference(paired)
        sec.inline[rel] = rc.headline_markdown(rc.headline_pairs(paired, summary, reference=ref), ref)
        variants = variant_markdown(paired, sorted(rows["method"].unique(), key=_method_sort_key))
        if variants:  # issue 13: lm_train variants against frozen, merl against mets
            sec.inline[rel] += "\n\n" + variants
    secs.append(sec)
    sec = Section("Paper comparison")
    pc = rc.paper_comparison(rows, summary, n_boot=paired_boot)
    mac = rows[(rows["metric"] == "auroc") & (rows["class"] == "")]
    scale = "; ".join(f"{DATASET_LABEL.get(d, d)} {t} n = {int(n)}"
                      for (d, t), n in mac.groupby(["dataset", "task"], sort=False)["n"].max().items()
                      if t in ("superdiagnostic", "aami"))
    if pc.empty:
        sec.absent = "no METS zero-shot or MIT-BIH AAMI rows with saved per-example scores"
    else:
        path = out / "tables" / "paper_comparison.csv"
        atomic_write_csv(pc, path)
        rel = path.relative_to(out).as_posix()
        sec.items.append((rel, "Each claim of Li et al. (2023) beside the paired difference this run measured "
                               f"(scale: {scale or 'see above'}; seeds averaged), with its family of tests and "
                               "Holm-adjusted seed-aware p-value."))
        sec.inline[rel] = rc.paper_markdown(pc, scale or "this run", rc.label_budgets(rows))
    secs.append(sec)
    return secs


def make_report(result_dirs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *,
                title: str | None = None, paired_boot: int = 1000, html: bool = True,
                embed_figures: bool = True) -> Path:
    """Write tables, figures, ``index.md`` and (``html``) a self-contained ``index.html`` for the
    merged result folders; return index.md. ``embed_figures=False`` makes index.html point at the
    PNGs in ``figures/`` instead of carrying them inline (smaller file, needs the folder)."""
    from benchmark import plotting

    dirs = [Path(d) for d in result_dirs]
    rows = merge_results(dirs)
    if rows.empty:
        raise UserError(f"no result rows in {', '.join(map(str, dirs))}: run `python -m benchmark run` first")
    out = Path(out_dir)
    tables_dir, figs_dir = out / "tables", out / "figures"
    before = _snapshot(tables_dir, figs_dir)  # to drop what an earlier report made and this one does not
    summary = summarise(rows)
    methods = sorted(rows["method"].unique(), key=_method_sort_key)
    styles = plotting.MethodStyles(methods)
    sections: list[Section] = []

    def rel(p: Path) -> str:
        return p.relative_to(out).as_posix()

    def table_section(title: str, tables: list[Table], absent: str) -> Section:
        sec = Section(title)
        for t in tables:
            md, tex, csv = write_table(t, tables_dir)
            sec.items.append((rel(md), f"{t.caption} ([LaTeX]({rel(tex)}), [CSV]({rel(csv)}))"))
            sec.inline[rel(md)] = table_markdown(t)
            sec.tables[rel(md)] = t
        if not tables:
            sec.absent = absent
        return sec

    def figure_item(sec: Section, paths: list[Path], caption: str) -> None:
        png = next(p for p in paths if p.suffix == ".png")
        pdf = next(p for p in paths if p.suffix == ".pdf")
        sec.items.append((rel(png), f"{caption} ([PDF]({rel(pdf)}))"))

    # ---- tables ----
    sections.append(table_section("Main comparison", [t for t in [main_table(summary)] if t],
                                  "no macro AUROC rows"))
    sections.append(table_section("Few-label (label efficiency)", [t for t in [few_label_table(summary)] if t],
                                  "no few-label rows"))
    sections.append(table_section("Zero-shot per-class AUROC", zero_shot_class_tables(summary),
                                  "no zero-shot rows (methods without a text tower, or protocol not run)"))
    sections.append(table_section("Cross-dataset transfer", [t for t in [cross_dataset_table(summary)] if t],
                                  "no cross-dataset rows"))
    sections.append(table_section(
        "Text-only ceiling", [t for t in [text_ceiling_table(summary), proxy_table(summary), negation_table(summary)] if t],
        "no text-ceiling rows (protocol not run, or no text-tower method)"))
    sections.append(table_section("Ablation of method variants", ablation_tables(summary),
                                  "no method was run in more than one variant"))
    sections.extend(_claim_sections(rows, summary, dirs, out, table_section, paired_boot))

    # ---- figures ----
    m = macro(summary)
    sec = Section("Figure: label-efficiency curves")
    fl = m[(m["protocol"] == "few-label")]
    for (dataset, task), g in fl.groupby(["dataset", "task"], sort=False):
        zs = m[(m["mode"] == "zero-shot") & (m["dataset"] == dataset) & (m["task"] == task)]
        paths = plotting.label_efficiency(g, zs, styles, figs_dir / f"label_efficiency_{dataset}_{task}",
                                          task=task, dataset=dataset)
        figure_item(sec, paths, f"Macro AUROC vs labelled fraction ({dataset} {task}); bands: mean 95 % "
                    "bootstrap CI over seeds; dotted horizontal lines: zero-shot (no labels).")
    if not sec.items:
        sec.absent = "no few-label rows"
    sections.append(sec)

    sec = Section("Figure: zero-shot per-class AUROC")
    z = summary[(summary["mode"] == "zero-shot") & (summary["metric"] == "auroc")]
    for (dataset, task), g in z.groupby(["dataset", "task"], sort=False):
        g = g.assign(group=np.where(g["class"] == "", "macro", g["class"]))
        groups = list(dict.fromkeys(g.loc[g["class"] != "", "class"])) + ["macro"]
        paths = plotting.grouped_bars(
            g, styles, figs_dir / f"zero_shot_per_class_{dataset}_{task}", groups=groups,
            title=f"Zero-shot AUROC per class, {DATASET_LABEL.get(dataset, dataset)} {task}")
        figure_item(sec, paths, f"Zero-shot AUROC per class ({dataset} {task}), whiskers: mean 95 % CI; "
                    "'n/a': class absent from the test split; dotted line: chance.")
    if not sec.items:
        sec.absent = "no zero-shot rows"
    sections.append(sec)

    sec = Section("Figure: confusion matrices (MIT-BIH, CinC 2017)")
    conf = rows[(rows["metric"] == "confusion") & (rows["protocol"] != "text-ceiling")]
    for (dataset, task), g in conf.groupby(["dataset", "task"], sort=False):
        label = DATASET_LABEL.get(dataset, dataset)
        paths = plotting.confusion_grid(g, figs_dir / f"confusion_{dataset}_{task}",
                                        title=f"{label} {task}: confusion matrices (argmax), counts summed over seeds")
        figure_item(sec, paths, f"{label} {task} confusion matrices per method and mode (counts summed over "
                    "seeds; shading: fraction of the true class).")
    if not any("mitbih" in p for p, _ in sec.items):
        note = "no MIT-BIH confusion rows"
        sec.absent = note if not sec.items else ""
        if sec.items:
            sec.items.append(("", f"*absent:* {note}"))
    sections.append(sec)

    sec = Section("Figure: ablation bars")
    for name, g in m.groupby("method_name"):
        if g["method"].nunique() < 2:
            continue
        t = main_table(g)
        g = t.cells.assign(group=t.cells["col"])
        paths = plotting.grouped_bars(g, styles, figs_dir / f"ablation_{re.sub(r'[^A-Za-z0-9]+', '_', name)}",
                                      groups=t.col_labels, title=f"Ablation of {name}: macro AUROC per variant")
        figure_item(sec, paths, f"Macro AUROC of each {name} variant under the headline settings, whiskers: "
                    "mean 95 % CI.")
    if not sec.items:
        sec.absent = "no method was run in more than one variant"
    sections.append(sec)

    sec = Section("Figure: pretraining loss curves")
    hist = _load_histories(dirs)
    if not hist.empty and ({"train_loss", "loss"} & set(hist.columns)) and "epoch" in hist.columns:
        paths = plotting.loss_curves(hist, styles, figs_dir / "pretraining_loss")
        figure_item(sec, paths, "Pretraining loss per epoch for each method and seed (solid: training, "
                    "dashed: validation split).")
    else:
        sec.absent = "no pretraining history in the results (history/*.parquet)"
    sections.append(sec)

    sec = Section("Figure: ECG panel")
    panel, where = _load_panel(dirs)
    if panel is not None:
        paths = plotting.ecg_panel(panel, figs_dir / "ecg_panel")
        figure_item(sec, paths, "Test ECGs in 12-lead layout with their (English) report, the zero-shot "
                    "top classes and the true labels.")
    else:
        sec.absent = where
    sections.append(sec)

    index = out / "index.md"
    heading = title or "ECG benchmark report"
    command = report_command(dirs, out, title=title)
    notes = _caveat_lines(rows, dirs)
    if html:
        from benchmark.report_html import write_html

        write_html(out / "index.html", heading, command, notes, sections, out, embed=embed_figures)
    atomic_write_text(_index_text(heading, command, notes, sections, html=html), index)
    stale = _stale(before)
    if stale:
        log.info("report: removed %d table/figure file(s) of an earlier report that this one does not make "
                 "(e.g. %s)", len(stale), stale[0])
    log.info("report: %s", index)
    return index


def _snapshot(*folders: Path) -> dict[Path, tuple[int, int]]:
    """(inode, mtime) of every file under the report's own ``tables/`` and ``figures/``."""
    snap = {}
    for folder in folders:
        if folder.is_dir():
            for p in folder.rglob("*"):
                if p.is_file() and not p.is_symlink():
                    st = p.stat()
                    snap[p] = (st.st_ino, st.st_mtime_ns)
    return snap


def _stale(before: dict[Path, tuple[int, int]]) -> list[Path]:
    """Delete the files of ``before`` that this report did not rewrite (every write replaces the
    file atomically, so a rewritten file has a new inode or time): tables and figures of an
    earlier report -- a method or dataset no longer in the results -- must not linger beside it."""
    gone = []
    for p, sig in sorted(before.items()):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if (st.st_ino, st.st_mtime_ns) == sig:
            p.unlink()
            gone.append(p)
    return gone


def report_command(dirs: Iterable[str | os.PathLike], out: str | os.PathLike | None = None,
                   title: str | None = None) -> str:
    """The shell command that (re)makes the report of ``dirs`` (into ``out``, with ``title``)."""
    import shlex

    cmd = "python -m benchmark report " + " ".join(f"--results {shlex.quote(str(d))}" for d in dirs)
    cmd += f" --out {shlex.quote(str(out))}" if out is not None else ""
    return cmd + (f" --title {shlex.quote(title)}" if title else "")


def _caveat_lines(rows: pd.DataFrame, dirs: list[Path]) -> list[str]:
    """The bullets of 'Data scale and caveats' (Markdown inline text, one per bullet)."""
    lines: list[str] = []
    methods = sorted(rows["method"].unique(), key=_method_sort_key)
    seeds = sorted(set(int(s) for s in rows["seed"]))
    lines.append(f"Methods: {', '.join(methods)}.")
    lines.append(f"Pretraining seeds: {', '.join(map(str, seeds))} ({len(seeds)}); "
                 + ("tables show mean ± SD over seeds." if len(seeds) > 1 else
                    "one seed only: no spread across seeds is shown."))
    mac = rows[(rows["metric"] == "auroc") & (rows["class"] == "")]
    scale = mac.groupby(["dataset", "task"], sort=False)["n"].max()
    parts = [f"{DATASET_LABEL.get(d, d)} {t}: n = {int(n)}" for (d, t), n in scale.items()]
    lines.append("Test examples per evaluation: " + ("; ".join(parts) if parts else "unknown") + ".")
    small = [f"{DATASET_LABEL.get(d, d)} {t} (n = {int(n)})" for (d, t), n in scale.items() if n < SMALL_N]
    if small:
        lines.append(f"**Caveat: small test sets** — {', '.join(small)}. Bootstrap CIs are wide; differences "
                     "between methods inside each other's CIs are not evidence of a difference, and these numbers "
                     "are not comparable to paper-scale results on the full databases.")
    cls = rows[(rows["metric"] == "auroc") & (rows["class"] != "")]
    rare = cls[(cls["n_pos"] > 0) & (cls["n_pos"] < SMALL_POS)]
    if not rare.empty:
        lines.append(f"Caveat: {rare[['dataset', 'task', 'class']].drop_duplicates().shape[0]} class(es) have fewer "
                     f"than {SMALL_POS} test positives; their AUROC is very noisy.")
    absent = cls[cls["note"].str.contains("absent", na=False)][["dataset", "task", "class"]].drop_duplicates()
    if not absent.empty:
        ex = ", ".join(f"{d}/{t}/{c}" for d, t, c in absent.head(8).itertuples(index=False))
        lines.append(f"{len(absent)} class(es) are absent from a test split (no positives or no negatives) and are "
                     f"left out of macro means: {ex}{' ...' if len(absent) > 8 else ''}.")
    lines.append("Cells: mean over seeds ± sample SD over seeds, [mean over seeds of the per-run 95 % percentile-"
                 "bootstrap CI bounds] (test-set uncertainty of one run, not a CI of the mean). F1/precision/recall "
                 "use decision rules chosen on the validation split only (per-class thresholds; argmax offsets "
                 "for single-label tasks). Differences between methods: see the paired differences.")
    commits = sorted({c[:10] + ("-dirty" if d else "") for c, d in zip(rows["git_commit"], rows["git_dirty"]) if c})
    devices = sorted({d for d in rows["device"] if d})
    tv = sorted({v for v in rows["torch_version"] if v})
    created = pd.to_datetime(rows["created"], utc=True, errors="coerce", format="ISO8601").dropna()
    lines.append(f"Code: {', '.join(commits) or 'unknown commit'}; devices: {', '.join(devices) or 'unknown'}; "
                 f"torch {', '.join(tv) or 'unknown'}"
                 + (f"; results created {created.min():%Y-%m-%d %H:%M} to {created.max():%Y-%m-%d %H:%M} UTC"
                    if len(created) else "") + ".")
    lines.append(f"Result folders merged (latest duplicate row kept): {', '.join(str(d) for d in dirs)}; "
                 f"{len(rows)} rows, {rows['job_id'].nunique()} jobs.")
    return lines


def _index_text(heading: str, command: str, notes: list[str], sections: list[Section], *,
                html: bool = False) -> str:
    lines = [f"# {heading}", ""]
    lines += [f"Generated by `{command}` from results only (no model is loaded).", ""]
    if html:
        lines += ["Browsable page: [index.html](index.html) (one self-contained file: opens in any browser "
                  "without a server or internet; tables sort on a click on their header).", ""]
    lines += ["## Data scale and caveats", ""]
    lines += [f"- {n}" for n in notes]
    lines.append("")
    for sec in sections:
        lines += [f"## {sec.title}", ""]
        if sec.absent and not sec.items:
            lines += [f"*absent:* {sec.absent}.", ""]
            continue
        for path, caption in sec.items:
            if not path:
                lines.append(f"- {caption}")
            elif path.endswith(".png"):
                lines.append(f"- [{Path(path).name}]({path}): {caption}")
                lines.append(f"  ![{Path(path).stem}]({path})")
            else:
                lines.append(f"- [{Path(path).name}]({path}): {caption}")
                if path in sec.inline:
                    lines += ["", sec.inline[path]]
        lines.append("")
    return "\n".join(lines)
