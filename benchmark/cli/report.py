"""``python -m benchmark report``: tables and figures from result folders (see
:mod:`benchmark.report`). A results folder makes one report; a folder of result folders makes
one report each plus a landing page (or, with ``--merge``, one merged report)."""

from __future__ import annotations

import logging
from pathlib import Path

from benchmark.errors import UserError
from benchmark.report.build import make_report, write_landing
from benchmark.results import holds_results, result_folders

log = logging.getLogger("benchmark.report")


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
