"""The report's table model and its file renderers.

A :class:`Table` holds tidy cells (one summary line per (row, col): ``mean, sd, ci_low, ci_high,
n_seeds, ...``), the row and column labels in display order and along which axis the methods
compete for bold. :meth:`Table.grid` is the one walk over the grid, row by row, that every
renderer uses -- Markdown and LaTeX here, HTML in :mod:`benchmark.report.html`; the CSV is the
tidy cells themselves with the same best flags.

How a cell is written: ``mean ± sd [lo, hi]`` (:func:`cell_parts`); '–' where a setting was not
run, 'absent' where the class has no positives or no negatives in the test split.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from benchmark.io import atomic_write_csv, atomic_write_text

CSV_COLUMNS = ("row", "col", "method", "protocol", "mode", "dataset", "task", "label_fraction", "metric",
               "class", "mean", "sd", "ci_low", "ci_high", "n_seeds", "seeds", "n", "n_pos", "n_classes",
               "note", "best")


@dataclass(frozen=True)
class Cell:
    """One grid position as the renderers see it: ``record`` is the summary line (None: not run),
    ``mean``/``rest`` its text (:func:`cell_parts`), ``best`` whether it is in bold."""

    row: str
    col: str
    record: pd.Series | None
    best: bool
    mean: str = ""
    rest: str = ""


@dataclass(frozen=True)
class GridRow:
    """One table row: its label, the texts of the extra columns and one :class:`Cell` per column."""

    label: str
    extras: list[str]
    cells: list[Cell]


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

    @property
    def headers(self) -> list[str]:
        """Row header, extra columns, then the column labels."""
        return [self.row_header] + list(self.extra_cols) + self.col_labels

    def grid(self) -> Iterator[GridRow]:
        """The table row by row in display order (the walk every renderer shares)."""
        records = {(r["row"], r["col"]): r for _, r in self.cells.iterrows()}
        best = self.best_mask()
        for row in self.row_labels:
            extras = [self.extra_cols[h].get(row, "") for h in self.extra_cols]
            cells = []
            for col in self.col_labels:
                r = records.get((row, col))
                if r is None:
                    cells.append(Cell(row, col, None, False))
                else:
                    cells.append(Cell(row, col, r, (row, col) in best, *cell_parts(r)))
            yield GridRow(row, extras, cells)


def fmt(x: float, digits: int = 3) -> str:
    """A number with ``digits`` decimals; '–' for None or NaN."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def fmt_p(p) -> str:
    """A p-value: three decimals, '<0.001' below that (a Wald p can be 1e-12), '–' for None/NaN."""
    if p is None or (isinstance(p, float) and math.isnan(p)) or pd.isna(p):
        return "–"
    return "<0.001" if float(p) < 0.001 else f"{float(p):.3f}"


def cell_parts(r) -> tuple[str, str]:
    """(mean text, rest) e.g. ('0.812', '± 0.010 [0.781, 0.840]'); absent classes -> ('absent', '')."""
    if pd.isna(r["mean"]):
        return ("absent" if "absent" in str(r.get("note", "")) else "–"), ""
    rest = []
    if r["n_seeds"] > 1 and not pd.isna(r["sd"]):
        rest.append(f"± {fmt(r['sd'])}")
    if not pd.isna(r["ci_low"]):
        rest.append(f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]")
    return fmt(r["mean"]), " ".join(rest)


# --------------------------------------------------------------------------------------------
# Markdown, LaTeX, CSV
# --------------------------------------------------------------------------------------------
def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "±": r"$\pm$", "–": "--", "—": "---"}


def latex_escape(s: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(s))


def _formatted_rows(t: Table, escape, empty: str, cell) -> list[list[str]]:
    """The table's rows as text cells: label and extra columns through ``escape``, a missing cell
    as ``empty``, every other cell through ``cell`` (the one place Markdown and LaTeX differ)."""
    return [[escape(g.label)] + [escape(x) for x in g.extras]
            + [empty if c.record is None else cell(c) for c in g.cells] for g in t.grid()]


def _md_cell(c) -> str:
    mean = f"**{c.mean}**" if c.best else c.mean
    return f"{mean} {c.rest}".strip()


def _latex_cell(c) -> str:
    mean = "--" if c.mean == "–" else latex_escape(c.mean)
    if c.best:
        mean = rf"\textbf{{{mean}}}"
    rest = latex_escape(c.rest)
    return mean + (rf" {{\scriptsize {rest}}}" if rest else "")


def table_markdown(t: Table) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in t.headers) + " |",
             "|" + "|".join([":--"] * (1 + len(t.extra_cols)) + ["--:"] * len(t.col_labels)) + "|"]
    lines += ["| " + " | ".join(out) + " |" for out in _formatted_rows(t, _md_escape, "–", _md_cell)]
    return "\n".join(lines) + "\n"


def table_latex(t: Table) -> str:
    spec = "l" * (1 + len(t.extra_cols)) + "c" * len(t.col_labels)
    body = [" & ".join(out) + r" \\" for out in _formatted_rows(t, latex_escape, "--", _latex_cell)]
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
        " & ".join(latex_escape(h) for h in t.headers) + r" \\",
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
    return df[[c for c in CSV_COLUMNS if c in df.columns]]


def write_table(t: Table, tables_dir: Path) -> list[Path]:
    """``<tables_dir>/<name>.{md,tex,csv}``; returns the three paths."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    md, tex, csv = (tables_dir / f"{t.name}.{ext}" for ext in ("md", "tex", "csv"))
    atomic_write_text(f"**{t.caption}**\n\n" + table_markdown(t) + "\n– : not run or not applicable.\n", md)
    atomic_write_text(table_latex(t), tex)
    atomic_write_csv(table_csv(t), csv)
    return [md, tex, csv]
