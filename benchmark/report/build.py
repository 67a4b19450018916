"""``make_report``: result folders in, a report folder out -- results only, never a model
(nothing here imports torch).

``make_report(result_dirs, out_dir)`` merges the folders (latest duplicate wins, see
:func:`benchmark.results.merge_results`), summarises every number over pretraining seeds
(:func:`benchmark.report.tables.summarise`) and writes::

    <out>/index.md                        every table and figure, one line of caption each,
                                          data scale and caveats at the top
    <out>/index.html                      the same in one self-contained page (html=True)
    <out>/tables/<name>.{md,tex,csv}      Markdown, LaTeX (booktabs) and tidy CSV
    <out>/figures/<name>.{png,pdf}

in four steps: the table sections, the sections that compare and judge (MIT-BIH AAMI, paired
differences, the paper's claims), the figure sections, then the index pages. Files under
``tables/`` and ``figures/`` that an earlier report made and this one does not are removed.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from benchmark.errors import UserError
from benchmark.io import atomic_write_csv, atomic_write_text
from benchmark.report import claims, key_results
from benchmark.report.html import landing_html, write_html
from benchmark.report.index import Section, caveat_lines, index_text, landing_markdown, report_command
from benchmark.report.order import DATASET_LABEL, FEW_LABEL, TEXT_CEILING, method_sort_key
from benchmark.report.table import Table, table_markdown, write_table
from benchmark.report.tables import (ablation_tables, cross_dataset_table, few_label_table, macro, main_table,
                                     negation_table, proxy_table, summarise, text_ceiling_table,
                                     zero_shot_class_tables)
from benchmark.results import ResultStore, merge_results
from benchmark.stats.paired import paired_table

log = logging.getLogger("benchmark.report")


def make_report(result_dirs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *,
                title: str | None = None, paired_boot: int = 1000, html: bool = True,
                embed_figures: bool = True) -> Path:
    """Write tables, figures, ``index.md`` and (``html``) a self-contained ``index.html`` for the
    merged result folders; return index.md. ``embed_figures=False`` makes index.html point at the
    PNGs in ``figures/`` instead of carrying them inline (smaller file, needs the folder)."""
    dirs = [Path(d) for d in result_dirs]
    rows = merge_results(dirs)
    if rows.empty:
        raise UserError(f"no result rows in {', '.join(map(str, dirs))}: run `python -m benchmark run` first")
    w = ReportFolder(Path(out_dir))
    before = _snapshot(w.tables_dir, w.figs_dir)  # to drop what an earlier report made and this one does not
    summary = summarise(rows)
    sections = table_sections(w, summary)
    sections += claim_sections(w, rows, summary, dirs, paired_boot)
    sections += figure_sections(w, rows, summary, dirs)
    index = write_index(w.out, dirs, rows, sections, title=title, html=html, embed_figures=embed_figures)
    stale = _stale(before)
    if stale:
        log.info("report: removed %d table/figure file(s) of an earlier report that this one does not make "
                 "(e.g. %s)", len(stale), stale[0])
    log.info("report: %s", index)
    return index


@dataclass
class ReportFolder:
    """Where a report's files go, and how its sections name them (paths relative to ``out``)."""

    out: Path

    @property
    def tables_dir(self) -> Path:
        return self.out / "tables"

    @property
    def figs_dir(self) -> Path:
        return self.out / "figures"

    def rel(self, p: Path) -> str:
        return p.relative_to(self.out).as_posix()

    def table_section(self, title: str, tables: list[Table], absent: str) -> Section:
        """A section of ``tables``, each written as .md/.tex/.csv; ``absent`` when there is none."""
        sec = Section(title)
        for t in tables:
            md, tex, csv = write_table(t, self.tables_dir)
            sec.items.append((self.rel(md), f"{t.caption} ([LaTeX]({self.rel(tex)}), [CSV]({self.rel(csv)}))"))
            sec.inline[self.rel(md)] = table_markdown(t)
            sec.tables[self.rel(md)] = t
        if not tables:
            sec.absent = absent
        return sec

    def csv_item(self, sec: Section, df: pd.DataFrame, name: str, caption: str, inline: str) -> None:
        """Write ``df`` to ``tables/<name>``, list it in ``sec`` with ``caption`` and show
        ``inline`` (its Markdown rendering) beneath it."""
        path = self.tables_dir / name
        atomic_write_csv(df, path)
        rel = self.rel(path)
        sec.items.append((rel, caption))
        sec.inline[rel] = inline

    def figure_item(self, sec: Section, paths: list[Path], caption: str) -> None:
        png = next(p for p in paths if p.suffix == ".png")
        pdf = next(p for p in paths if p.suffix == ".pdf")
        sec.items.append((self.rel(png), f"{caption} ([PDF]({self.rel(pdf)}))"))


# --------------------------------------------------------------------------------------------
# step 1: the tables
# --------------------------------------------------------------------------------------------
def table_sections(w: ReportFolder, summary: pd.DataFrame) -> list[Section]:
    def present(*tables: Table | None) -> list[Table]:
        return [t for t in tables if t]

    return [
        w.table_section("Main comparison", present(main_table(summary)), "no macro AUROC rows"),
        w.table_section("Few-label (label efficiency)", present(few_label_table(summary)), "no few-label rows"),
        w.table_section("Zero-shot per-class AUROC", zero_shot_class_tables(summary),
                        "no zero-shot rows (methods without a text tower, or protocol not run)"),
        w.table_section("Cross-dataset transfer", present(cross_dataset_table(summary)), "no cross-dataset rows"),
        w.table_section("Text-only ceiling",
                        present(text_ceiling_table(summary), proxy_table(summary), negation_table(summary)),
                        "no text-ceiling rows (protocol not run, or no text-tower method)"),
        w.table_section("Ablation of method variants", ablation_tables(summary),
                        "no method was run in more than one variant"),
    ]


# --------------------------------------------------------------------------------------------
# step 2: MIT-BIH AAMI, paired differences, the paper's claims
# --------------------------------------------------------------------------------------------
def claim_sections(w: ReportFolder, rows: pd.DataFrame, summary: pd.DataFrame, dirs: list[Path],
                   paired_boot: int) -> list[Section]:
    """The key results (shown first), MIT-BIH AAMI per-class table, paired differences and the
    paper comparison (:mod:`benchmark.report.claims`)."""
    pc = claims.paper_comparison(rows, summary, n_boot=paired_boot)
    return [key_results_section(w, pc, summary), mitbih_section(w, rows, summary, dirs, paired_boot),
            paired_section(w, rows, summary, paired_boot), paper_section(w, rows, pc)]


def key_results_section(w: ReportFolder, pc: pd.DataFrame, summary: pd.DataFrame) -> Section:
    sec = Section("Key results", lead=True)
    k = key_results.key_results(pc, summary)
    if k.empty:
        sec.absent = "no METS zero-shot against few-label baselines, and no MIT-BIH AAMI rows"
        return sec
    w.csv_item(sec, k, "key_results.csv", "The headline comparisons; every number below is in the sections that "
               "follow.", key_results.key_results_markdown(k))
    return sec


def mitbih_section(w: ReportFolder, rows: pd.DataFrame, summary: pd.DataFrame, dirs: list[Path],
                   paired_boot: int) -> Section:
    nsvf = claims.mitbih_nsvf(rows, n_boot=paired_boot)
    sec = w.table_section("MIT-BIH AAMI (DS1 -> DS2)", claims.mitbih_tables(summary, nsvf, claims.mitbih_scale(rows)),
                          "no MIT-BIH AAMI rows")
    counts = claims.mitbih_counts(dirs, rows)
    if counts is not None and sec.items:
        md = ["| class | " + " | ".join(counts.columns) + " |", "|---" * (len(counts.columns) + 1) + "|"]
        md += [f"| {c} | " + " | ".join(f"{int(v):,}" for v in r) + " |" for c, r in counts.iterrows()]
        w.csv_item(sec, counts.reset_index(), "mitbih_aami_counts.csv",
                   "Beats per AAMI class and split (train/val: DS1 patients, val held out; test: DS2; paced records "
                   "and records without MLII excluded).", "\n".join(md))
    rules = claims.mitbih_rules(dirs, rows)
    if rules is not None and sec.items:
        w.csv_item(sec, rules, "mitbih_decision_rules.csv",
                   "The linear probe's decision rule per job, chosen on DS1 alone (`beat_rule`: argmax of the "
                   "class-weighted model, or offsets where a nested record-wise estimate prefers them; the nested "
                   "out-of-fold macro F1 of both and the fitted offsets are in the CSV), and whether the S-vs-N "
                   "stage on the RR features re-decided its N/S calls (`beat_sn_stage`, also chosen on DS1), beside "
                   "the job's DS2 N, S and V results: how much of a seed's S result is its rule.",
                   claims.mitbih_rules_markdown(rules))
    return sec


def paired_section(w: ReportFolder, rows: pd.DataFrame, summary: pd.DataFrame, paired_boot: int) -> Section:
    paired = paired_table(rows, n_boot=paired_boot, method_key=method_sort_key)
    sec = Section("Paired differences")
    if paired.empty:
        sec.absent = "no two methods were evaluated on the same test examples with saved scores"
        return sec
    ref = claims.headline_reference(paired)
    inline = [claims.headline_markdown(claims.headline_pairs(paired, summary, reference=ref), ref),
              claims.delong_markdown(paired),
              # issue 13: lm_train variants against frozen, merl against mets
              claims.variant_markdown(paired, sorted(rows["method"].unique(), key=method_sort_key))]
    w.csv_item(sec, paired, "paired.csv",
               "Every pair of methods on every setting: metric(method_b) − metric(method_a) per seed "
               "and averaged over seeds, with a 95 % paired-bootstrap CI (the same resampled test units "
               "for both methods: PTB-XL ECGs, MIT-BIH records (`unit`, `n_units`)); the seed-mean row's "
               "interval is seed-aware (seeds resampled too), and `excludes_zero`/`p_value` are decided "
               "on it; `delong_p` cross-checks per-seed AUROC rows with DeLong's test. Headline pairs "
               "below (the reference method minus each other, seed mean).", "\n\n".join(p for p in inline if p))
    return sec


def paper_section(w: ReportFolder, rows: pd.DataFrame, pc: pd.DataFrame) -> Section:
    sec = Section("Paper comparison")
    mac = rows[(rows["metric"] == "auroc") & (rows["class"] == "")]
    scale = "; ".join(f"{DATASET_LABEL.get(d, d)} {t} n = {int(n)}"
                      for (d, t), n in mac.groupby(["dataset", "task"], sort=False)["n"].max().items()
                      if t in ("superdiagnostic", "aami"))
    if pc.empty:
        sec.absent = "no METS zero-shot or MIT-BIH AAMI rows with saved per-example scores"
        return sec
    w.csv_item(sec, pc, "paper_comparison.csv",
               "Each claim of Li et al. (2023) beside the paired difference this run measured "
               f"(scale: {scale or 'see above'}; seeds averaged), with its family of tests and "
               "Holm-adjusted seed-aware p-value.",
               claims.paper_markdown(pc, scale or "this run", claims.label_budgets(rows)))
    return sec


# --------------------------------------------------------------------------------------------
# step 3: the figures
# --------------------------------------------------------------------------------------------
def _figure_section(w: ReportFolder, title: str, groups, draw, absent: str) -> Section:
    """One figure section: ``draw(key, group)`` returns (figure paths, caption), or None to draw
    nothing, for every group; ``absent`` says why when no group drew a figure."""
    sec = Section(title)
    for key, g in groups:
        drawn = draw(key, g)
        if drawn is not None:
            w.figure_item(sec, *drawn)
    if not sec.items:
        sec.absent = absent
    return sec


def figure_sections(w: ReportFolder, rows: pd.DataFrame, summary: pd.DataFrame, dirs: list[Path]) -> list[Section]:
    # local: matplotlib takes a second to import, and every CLI start-up imports this module
    from benchmark.report import figures

    styles = figures.MethodStyles(sorted(rows["method"].unique(), key=method_sort_key))
    m = macro(summary)
    sections = []

    def label_efficiency(key, g):
        dataset, task = key
        zs = m[(m["mode"] == "zero-shot") & (m["dataset"] == dataset) & (m["task"] == task)]
        return (figures.label_efficiency(g, zs, styles, w.figs_dir / f"label_efficiency_{dataset}_{task}",
                                         task=task, dataset=dataset),
                f"Macro AUROC vs labelled fraction ({dataset} {task}); bands: mean 95 % bootstrap CI over seeds; "
                "dotted horizontal lines: zero-shot (no labels).")

    fl = m[(m["protocol"] == FEW_LABEL)]
    sections.append(_figure_section(w, "Figure: label-efficiency curves", fl.groupby(["dataset", "task"], sort=False),
                                    label_efficiency, "no few-label rows"))

    def per_class(key, g):
        dataset, task = key
        g = g.assign(group=np.where(g["class"] == "", "macro", g["class"]))
        groups = list(dict.fromkeys(g.loc[g["class"] != "", "class"])) + ["macro"]
        return (figures.grouped_bars(g, styles, w.figs_dir / f"zero_shot_per_class_{dataset}_{task}", groups=groups,
                                     title=f"Zero-shot AUROC per class, {DATASET_LABEL.get(dataset, dataset)} {task}"),
                f"Zero-shot AUROC per class ({dataset} {task}), whiskers: mean 95 % CI; "
                "'n/a': class absent from the test split; dotted line: chance.")

    z = summary[(summary["mode"] == "zero-shot") & (summary["metric"] == "auroc")]
    sections.append(_figure_section(w, "Figure: zero-shot per-class AUROC", z.groupby(["dataset", "task"], sort=False),
                                    per_class, "no zero-shot rows"))

    def confusion(key, g):
        dataset, task = key
        label = DATASET_LABEL.get(dataset, dataset)
        return (figures.confusion_grid(g, w.figs_dir / f"confusion_{dataset}_{task}",
                                       title=f"{label} {task}: confusion matrices (argmax), counts summed over seeds"),
                f"{label} {task} confusion matrices per method and mode (counts summed over "
                "seeds; shading: fraction of the true class).")

    conf = rows[(rows["metric"] == "confusion") & (rows["protocol"] != TEXT_CEILING)]
    note = "no MIT-BIH confusion rows"
    sec = _figure_section(w, "Figure: confusion matrices (MIT-BIH, CinC 2017)",
                          conf.groupby(["dataset", "task"], sort=False), confusion, note)
    if sec.items and not any("mitbih" in p for p, _ in sec.items):
        sec.items.append(("", f"*absent:* {note}"))
    sections.append(sec)

    def ablation(name, g):
        if g["method"].nunique() < 2:
            return None
        t = main_table(g)
        g = t.cells.assign(group=t.cells["col"])
        return (figures.grouped_bars(g, styles, w.figs_dir / f"ablation_{re.sub(r'[^A-Za-z0-9]+', '_', name)}",
                                     groups=t.col_labels, title=f"Ablation of {name}: macro AUROC per variant"),
                f"Macro AUROC of each {name} variant under the headline settings, whiskers: mean 95 % CI.")

    sections.append(_figure_section(w, "Figure: ablation bars", m.groupby("method_name"), ablation,
                                    "no method was run in more than one variant"))

    sec = Section("Figure: pretraining loss curves")
    hist = load_histories(dirs)
    if not hist.empty and ({"train_loss", "loss"} & set(hist.columns)) and "epoch" in hist.columns:
        paths = figures.loss_curves(hist, styles, w.figs_dir / "pretraining_loss", figures.pretrain_purposes(dirs))
        w.figure_item(sec, paths, "Pretraining loss per epoch, one line per pretraining (solid: training, "
                      "dashed: validation split).")
    else:
        sec.absent = "no pretraining history in the results (history/*.parquet)"
    sections.append(sec)

    sec = Section("Figure: ECG panel")
    panel, where = load_panel(dirs)
    if panel is not None:
        paths = figures.ecg_panel(panel, w.figs_dir / "ecg_panel")
        w.figure_item(sec, paths, "Test ECGs in 12-lead layout with their (English) report, the zero-shot "
                      "top classes and the true labels.")
    else:
        sec.absent = where
    sections.append(sec)
    return sections




# --------------------------------------------------------------------------------------------
# step 4: the index pages
# --------------------------------------------------------------------------------------------
def write_index(out: Path, dirs: list[Path], rows: pd.DataFrame, sections: list[Section], *, title: str | None,
                html: bool, embed_figures: bool) -> Path:
    """``index.html`` (``html``) and ``index.md``; returns index.md."""
    index = out / "index.md"
    heading = title or "ECG benchmark report"
    command = report_command(dirs, out, title=title)
    notes = caveat_lines(rows, dirs)
    if html:
        write_html(out / "index.html", heading, command, notes, sections, out, embed=embed_figures)
    atomic_write_text(index_text(heading, command, notes, sections, html=html), index)
    return index


def write_landing(out: Path, made: list[tuple[Path, Path]], *, html: bool = True) -> Path:
    """``<out>/index.md`` (and ``.html``): one line per report made from a folder of result folders."""
    lines = []
    for d, index in made:
        rows = merge_results([d])
        methods = ", ".join(sorted(rows["method"].unique(), key=method_sort_key))
        seeds = ", ".join(str(s) for s in sorted({int(s) for s in rows["seed"]}))
        rel = index.parent.relative_to(out).as_posix()
        page = f"{rel}/index.html" if html else f"{rel}/index.md"
        lines.append((str(d), rel, page, len(rows), methods, seeds))
    index = out / "index.md"
    atomic_write_text(landing_markdown(f"{made[0][0].parent if made else '.'}", lines), index)
    if html:
        atomic_write_text(landing_html(lines), out / "index.html")
    return index


# --------------------------------------------------------------------------------------------
# reading what the figures need, and cleaning up after an earlier report
# --------------------------------------------------------------------------------------------
def load_histories(dirs: list[Path]) -> pd.DataFrame:
    """The pretraining histories of all folders (latest duplicate epoch wins)."""
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


def load_panel(dirs: list[Path]) -> tuple[dict | None, str]:
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
