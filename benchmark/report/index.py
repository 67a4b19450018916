"""``index.md`` of a report: the sections, their items and the caveats at the top; and the shell
command that remakes a report (also shown by ``run`` as the next step).

A :class:`Section` is one heading of the report with its items (a table's ``.md``, a figure's
``.png``, a CSV; each with a caption), the Markdown shown inline under an item and the tables
behind it; :mod:`benchmark.report.html` renders the same sections as one page.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from benchmark.report.order import DATASET_LABEL, method_sort_key
from benchmark.report.table import Table

SMALL_N = 200  # test sets below this many examples get a caveat line
SMALL_POS = 10  # classes with fewer test positives get a caveat line


@dataclass
class Section:
    title: str
    items: list[tuple[str, str]] = field(default_factory=list)  # (relative path, caption)
    absent: str = ""
    inline: dict[str, str] = field(default_factory=dict)  # path -> Markdown shown under its link
    tables: dict[str, Table] = field(default_factory=dict)  # path of the .md -> the table (for HTML)
    lead: bool = False  # shown first, before the data scale and caveats (the key results)


def report_command(dirs: Iterable[str | os.PathLike], out: str | os.PathLike | None = None,
                   title: str | None = None) -> str:
    """The shell command that (re)makes the report of ``dirs`` (into ``out``, with ``title``)."""
    cmd = "python -m benchmark report " + " ".join(f"--results {shlex.quote(str(d))}" for d in dirs)
    cmd += f" --out {shlex.quote(str(out))}" if out is not None else ""
    return cmd + (f" --title {shlex.quote(title)}" if title else "")


def caveat_lines(rows: pd.DataFrame, dirs: list[Path]) -> list[str]:
    """The bullets of 'Data scale and caveats' (Markdown inline text, one per bullet)."""
    lines: list[str] = []
    methods = sorted(rows["method"].unique(), key=method_sort_key)
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
                 "use decision rules chosen without the test split: on the validation split (per-class thresholds; "
                 "argmax offsets for single-label tasks), or for MIT-BIH's beat-level heads on DS1 alone (the probe's "
                 "rule by record-wise cross-validation, `beat_rule`; the other heads' fixed in advance). Differences "
                 "between methods: see the paired differences.")
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


def index_text(heading: str, command: str, notes: list[str], sections: list[Section], *,
                html: bool = False) -> str:
    lines = [f"# {heading}", ""]
    lines += [f"Generated by `{command}` from results only (no model is loaded).", ""]
    if html:
        lines += ["Browsable page: [index.html](index.html) (one self-contained file: opens in any browser "
                  "without a server or internet; tables sort on a click on their header).", ""]
    shown = [sec for sec in sections if not is_empty(sec)]
    lines += _section_lines([sec for sec in shown if sec.lead])
    lines += ["## Data scale and caveats", ""]
    lines += [f"- {n}" for n in notes]
    lines.append("")
    lines += _section_lines([sec for sec in shown if not sec.lead])
    missing = [sec for sec in sections if is_empty(sec)]
    if missing:  # empty sections are not shown: one line each says what is missing and why
        lines += [f"## {MISSING}", ""] + [f"- {sec.title}: *absent:* {sec.absent}." for sec in missing] + [""]
    return "\n".join(lines)


MISSING = "Not in these results"


def is_empty(sec: Section) -> bool:
    return bool(sec.absent) and not sec.items


def _section_lines(sections: list[Section]) -> list[str]:
    lines: list[str] = []
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
    return lines


def landing_markdown(parent: str, rows: list[tuple[str, str, str, int, str, str]]) -> str:
    """``index.md`` listing the reports made from the folder of result folders ``parent``: one line
    per ``(results folder, relative report folder, page, rows, methods, seeds)``."""
    lines = ["# ECG benchmark reports", "",
             "One report per results folder, made by `python -m benchmark report --results "
             f"{parent}` (add `--merge` for one merged report).", "",
             "| results folder | report | rows | methods | seeds |", "|:--|:--|--:|:--|:--|"]
    for d, rel, page, n, methods, seeds in rows:
        lines.append(f"| `{d}` | [{rel}]({page}) ([Markdown]({rel}/index.md)) | {n} | {methods} | {seeds} |")
    return "\n".join(lines) + "\n"
