"""``index.html`` of a report: one self-contained page with every section of ``index.md``.

No server, no internet, no third-party JavaScript: the figures are embedded as base64 PNGs (or,
with ``embed=False``, linked from ``figures/`` beside the page), the tables are real HTML tables
built from the same :class:`benchmark.report.table.Table` grid as the Markdown/LaTeX/CSV files, and a
small inline script of our own sorts a table when its header is clicked (numbers: best first,
click again to reverse; empty cells always last) and filters its rows by a text box.

Like the rest of the report, this module never imports torch.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

from benchmark.io import atomic_write_text
from benchmark.report.index import MISSING, Section, is_empty
from benchmark.report.table import Table

_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_EM = re.compile(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])")


def inline_markdown(text: str) -> str:
    """The inline Markdown the report writes (code, links, bold, emphasis) as escaped HTML."""
    codes: list[str] = []

    def keep_code(m: re.Match) -> str:
        codes.append(f"<code>{html.escape(m.group(1))}</code>")
        return f"\x00{len(codes) - 1}\x00"

    s = _CODE.sub(keep_code, str(text))
    s = html.escape(s, quote=False)
    s = _LINK.sub(lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', s)
    s = _BOLD.sub(r"<strong>\1</strong>", s)
    s = _EM.sub(r"<em>\1</em>", s)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], s)


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def _num(x) -> str:
    """A cell's sort key for ``data-v``: the full-precision mean, '' when there is none."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(v) else repr(v)


def table_html(t: Table) -> str:
    head = [f'<th data-type="text" scope="col">{html.escape(t.row_header)}</th>']
    head += [f'<th data-type="num" scope="col">{html.escape(h)}</th>' for h in t.extra_cols]
    head += [f'<th data-type="num" scope="col">{html.escape(c)}</th>' for c in t.col_labels]
    body = []
    for g in t.grid():
        tds = [f'<td class="rowh">{html.escape(g.label)}</td>']
        tds += [f'<td data-v="{_num(txt)}">{html.escape(txt)}</td>' for txt in g.extras]
        for c in g.cells:
            if c.record is None:
                tds.append('<td data-v="" class="na">–</td>')
                continue
            m = html.escape(c.mean)
            cls = ""
            if c.best:
                m, cls = f"<strong>{m}</strong>", ' class="best"'
            extra = f' <span class="ci">{html.escape(c.rest)}</span>' if c.rest else ""
            tds.append(f'<td data-v="{_num(c.record["mean"])}"{cls}>{m}{extra}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<div class="tablewrap"><input type="search" class="filter" placeholder="filter rows" '
            f'aria-label="filter rows of {html.escape(t.name)}">\n'
            f'<table class="sortable" id="table-{html.escape(t.name)}" data-name="{html.escape(t.name)}">\n'
            f'<thead><tr>{"".join(head)}</tr></thead>\n<tbody>\n' + "\n".join(body) + "\n</tbody></table></div>")


_LEADING_NUMBER = re.compile(r"^\s*\**\s*([+\-−]?\d[\d,]*(?:\.\d+)?)")


def _cell_key(text: str) -> str | None:
    m = _LEADING_NUMBER.match(text)
    if not m:
        return None
    try:
        return repr(float(m.group(1).replace(",", "").replace("−", "-")))
    except ValueError:
        return None


FOLD_ROWS = 15  # longer tables fold away behind a <details> line (paired differences, claim rows)


def fold(table: str, n_rows: int) -> str:
    """A long table folded behind one line that says what it holds; short ones as they are."""
    if n_rows <= FOLD_ROWS:
        return table
    return f"<details><summary>Show the table ({n_rows} rows)</summary>\n{table}\n</details>"


def markdown_block_html(md: str) -> str:
    """The Markdown the report inlines under a link that is not a results table (paired
    differences, paper comparison, beat counts): pipe tables become sortable HTML tables, other
    paragraphs inline HTML."""
    out = []
    for block in re.split(r"\n\s*\n", md.strip()):
        lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        if all(ln.startswith("|") for ln in lines) and len(lines) >= 2:
            split = lambda ln: [c.strip() for c in ln.strip().strip("|").split("|")]  # noqa: E731
            head = split(lines[0])
            body = [split(ln) for ln in lines[1:] if not re.fullmatch(r"\|?[\s:|-]+\|?", ln)]
            numeric = [sum(_cell_key(r[i]) is not None for r in body if i < len(r)) > len(body) / 2
                       for i in range(len(head))]
            ths = "".join(f'<th data-type="{"num" if n else "text"}" scope="col">{inline_markdown(h)}</th>'
                          for h, n in zip(head, numeric))
            trs = []
            for r in body:
                tds = []
                for i, c in enumerate(r):
                    v = f' data-v="{_cell_key(c) or ""}"' if i < len(numeric) and numeric[i] else ' class="t"'
                    tds.append(f"<td{v}>{inline_markdown(c)}</td>")
                trs.append("<tr>" + "".join(tds) + "</tr>")
            out.append(fold('<div class="tablewrap"><table class="sortable md">'
                            f"<thead><tr>{ths}</tr></thead><tbody>" + "".join(trs) + "</tbody></table></div>",
                            len(trs)))
        else:
            out.append("<p>" + "<br>".join(inline_markdown(ln) for ln in lines) + "</p>")
    return "\n".join(out)


def _img_src(png: Path, rel: str, embed: bool) -> str:
    if not embed:
        return html.escape(rel)
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fff}
main{max-width:1400px;margin:0 auto;padding:1rem 2rem 4rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
nav.toc{font-size:.9rem;background:#f6f8fa;border:1px solid #e1e4e8;border-radius:6px;padding:.5rem 1rem}
nav.toc ol{margin:.2rem 0;padding-left:1.4rem;columns:2}
code{background:#f3f3f3;padding:0 .25em;border-radius:3px;font-size:.9em}
details>summary{cursor:pointer;color:#0645ad;margin:.3rem 0}.absent{color:#777}.caption{margin:.6rem 0 .3rem}
.tablewrap{overflow-x:auto;margin:.3rem 0 1.2rem}
table.sortable{border-collapse:collapse;font-size:.85rem;font-variant-numeric:tabular-nums}
table.sortable th,table.sortable td{border:1px solid #d0d7de;padding:.25rem .45rem;text-align:right;white-space:nowrap}
table.sortable td.rowh,table.sortable th:first-child{text-align:left;position:sticky;left:0;z-index:1}
table.sortable td.rowh{background:#fff}table.sortable th:first-child{z-index:2}
table.sortable th{background:#f6f8fa;cursor:pointer;position:sticky;top:0;user-select:none}
table.sortable th:hover{background:#eaeef2}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2";font-size:.7em}
table.sortable th[aria-sort=descending]::after{content:" \\25BC";font-size:.7em}
table.sortable td.t{text-align:left}td.best{background:#e6f4ea}td.na{color:#999}.ci{color:#666;font-size:.9em}
input.filter{font-size:.85rem;padding:.15rem .4rem;margin-bottom:.3rem;width:16rem}
figure{margin:1rem 0 2rem}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9rem;color:#333;max-width:70rem}
"""

SCRIPT = """
(function () {
  "use strict";
  function key(td) {
    if (!td) { return null; }
    var v = td.getAttribute("data-v");
    if (v !== null) { return v === "" ? null : parseFloat(v); }
    return td.textContent.trim().toLowerCase();
  }
  function sortBy(th) {
    var row = th.parentNode, table = th.closest("table");
    var idx = Array.prototype.indexOf.call(row.children, th);
    var numeric = th.getAttribute("data-type") === "num";
    var first = numeric ? "descending" : "ascending";
    var dir = th.getAttribute("aria-sort") === first ? (numeric ? "ascending" : "descending") : first;
    Array.prototype.forEach.call(row.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[idx]), y = key(b.cells[idx]);
      var xm = x === null || (typeof x === "number" && isNaN(x));
      var ym = y === null || (typeof y === "number" && isNaN(y));
      if (xm || ym) { return xm === ym ? 0 : (xm ? 1 : -1); }
      return x < y ? -sign : (x > y ? sign : 0);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.tabIndex = 0;
    th.title = "click to sort";
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sortBy(th); } });
  });
  document.querySelectorAll("input.filter").forEach(function (inp) {
    var table = inp.parentNode.querySelector("table");
    inp.addEventListener("input", function () {
      var q = inp.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.hidden = q !== "" && r.textContent.toLowerCase().indexOf(q) < 0;
      });
    });
  });
})();
"""


def page_html(heading: str, command: str, notes: list[str], sections: list[Section], out: Path, *,
              embed: bool = True) -> str:
    """The whole page as a string (see the module docstring)."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(heading)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>", "<main>",
             f"<h1>{html.escape(heading)}</h1>",
             f"<p>Generated by <code>{html.escape(command)}</code> from results only (no model is loaded). "
             'Markdown version: <a href="index.md">index.md</a>. Click a table header to sort by it.</p>']
    shown = [sec for sec in sections if not is_empty(sec)]
    missing = [sec for sec in sections if is_empty(sec)]
    lead = [sec for sec in shown if sec.lead]
    rest = [sec for sec in shown if not sec.lead]
    titles = [s.title for s in lead] + ["Data scale and caveats"] + [s.title for s in rest]
    titles += [MISSING] if missing else []
    parts.append('<nav class="toc"><strong>Contents</strong><ol>'
                 + "".join(f'<li><a href="#{slug(t)}">{html.escape(t)}</a></li>' for t in titles) + "</ol></nav>")
    parts += [section_html(sec, out, embed) for sec in lead]
    parts.append(f'<section id="{slug("Data scale and caveats")}"><h2>Data scale and caveats</h2><ul>'
                 + "".join(f"<li>{inline_markdown(n)}</li>" for n in notes) + "</ul></section>")
    parts += [section_html(sec, out, embed) for sec in rest]
    if missing:  # empty sections are not shown: one line each says what is missing and why
        parts.append(f'<section id="{slug(MISSING)}"><h2>{MISSING}</h2><ul>'
                     + "".join(f"<li>{html.escape(sec.title)}: <em>absent:</em> {inline_markdown(sec.absent)}.</li>"
                             for sec in missing)
                     + "</ul></section>")
    parts += ["</main>", f"<script>{SCRIPT}</script>", "</body>", "</html>", ""]
    return "\n".join(parts)


def section_html(sec: Section, out: Path, embed: bool) -> str:
    parts = [f'<section id="{slug(sec.title)}">', f"<h2>{html.escape(sec.title)}</h2>"]
    for path, caption in sec.items:
        if not path:
            parts.append(f'<p class="absent">{inline_markdown(caption)}</p>')
        elif path.endswith(".png"):
            src = _img_src(out / path, path, embed)
            parts.append(f'<figure><img src="{src}" alt="{html.escape(Path(path).stem)}">'
                         f'<figcaption><a href="{html.escape(path)}">{html.escape(Path(path).name)}</a>: '
                         f"{inline_markdown(caption)}</figcaption></figure>")
        else:
            parts.append(f'<p class="caption"><a href="{html.escape(path)}">{html.escape(Path(path).name)}</a>: '
                         f"{inline_markdown(caption)}</p>")
            if path in sec.tables:
                parts.append(fold(table_html(sec.tables[path]), len(sec.tables[path].row_labels)))
            elif path in sec.inline:
                parts.append(markdown_block_html(sec.inline[path]))
    parts.append("</section>")
    return "\n".join(parts)


def write_html(path: Path, heading: str, command: str, notes: list[str], sections: list[Section], out: Path, *,
               embed: bool = True) -> Path:
    atomic_write_text(page_html(heading, command, notes, sections, out, embed=embed), path)
    return path


def landing_html(rows: list[tuple[str, str, str, int, str, str]]) -> str:
    """The page listing the reports made from a folder of result folders: one line per
    ``(results folder, relative report folder, page, rows, methods, seeds)``."""
    rows_html = [f'<tr><td><code>{html.escape(d)}</code></td><td><a href="{html.escape(page)}">'
                 f'{html.escape(rel)}</a> (<a href="{html.escape(rel)}/index.md">Markdown</a>)</td>'
                 f'<td data-v="{n}">{n}</td><td>{html.escape(methods)}</td>'
                 f"<td>{html.escape(seeds)}</td></tr>" for d, rel, page, n, methods, seeds in rows]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ECG benchmark reports</title>"
            f"<style>{STYLE}</style></head><body><main><h1>ECG benchmark reports</h1>"
            "<p>One report per results folder.</p><div class=\"tablewrap\"><table class=\"sortable\" id=\"table-reports\">"
            "<thead><tr><th data-type=\"text\">results folder</th><th data-type=\"text\">report</th>"
            "<th data-type=\"num\">rows</th><th data-type=\"text\">methods</th><th data-type=\"text\">seeds</th></tr>"
            "</thead><tbody>" + "".join(rows_html) + f"</tbody></table></div></main><script>{SCRIPT}</script>"
            "</body></html>\n")
