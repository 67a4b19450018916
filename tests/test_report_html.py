"""index.html of a report: every section of index.md, every figure, every table cell of the CSVs;
and (slow) the page in a real headless Chromium: no console errors, no request leaving the
machine, every figure decoded, a table sorted by a real mouse click on its header.

The fast tests parse the page with the standard library's HTML parser. The browser test drives
Chromium over its DevTools protocol with ``websocket-client`` (in the ``test`` extra) and is
skipped, saying why, when no Chromium is installed (Debian: ``apt-get install chromium``).
Set ``ECGBENCH_SCREENSHOT=/path/shot.png`` to keep a screenshot of the sorted page.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.report.build import make_report
from test_report import build_results, load_real_labels  # same folder; pytest puts it on sys.path

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# a small parser of the page
# --------------------------------------------------------------------------------------------
class Page(HTMLParser):
    """h2 titles, <img> attributes, <script>/<link>/<a> targets, and every table as
    (name, header texts, rows of (text, data-v) per cell)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.h2: list[str] = []
        self.imgs: list[dict] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.tables: list[dict] = []
        self._text: list[str] | None = None
        self._cell: dict | None = None
        self._row: list | None = None
        self._where = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "h2":
            self._text = []
        elif tag == "img":
            self.imgs.append(a)
        elif tag in ("script", "link", "iframe", "source", "video", "audio") and (a.get("src") or a.get("href")):
            self.srcs.append(a.get("src") or a.get("href"))
        elif tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        elif tag == "table":
            self.tables.append({"name": a.get("data-name"), "head": [], "rows": []})
        elif tag in ("thead", "tbody"):
            self._where = tag
        elif tag == "tr":
            self._row = []
        elif tag in ("th", "td") and self._row is not None:
            self._cell = {"text": [], "v": a.get("data-v"), "class": a.get("class", "")}

    def handle_endtag(self, tag):
        if tag == "h2" and self._text is not None:
            self.h2.append("".join(self._text).strip())
            self._text = None
        elif tag in ("th", "td") and self._cell is not None:
            self._cell["text"] = "".join(self._cell["text"]).strip()
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            t = self.tables[-1]
            if self._where == "thead":
                t["head"] = [c["text"] for c in self._row]
            else:
                t["rows"].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)
        if self._cell is not None:
            self._cell["text"].append(data)


@pytest.fixture(scope="module")
def html_report(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("html")
    store = build_results(root / "results", load_real_labels(data_root), data_root=data_root)
    index = make_report([store.root], root / "report")
    return index


def _csv(report_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(report_dir / "tables" / f"{name}.csv", keep_default_na=False,
                       na_values=["", "nan", "NaN"], dtype={"class": str, "note": str, "row": str, "col": str})


def test_html_holds_every_section_figure_and_table_cell(html_report):
    rep = html_report.parent
    md = html_report.read_text()
    page_path = rep / "index.html"
    assert "[index.html](index.html)" in md
    page = Page(page_path.read_text(encoding="utf-8"))

    # every section of index.md, in the same order
    assert page.h2 == re.findall(r"^## (.+)$", md, flags=re.M)

    # every PNG of index.md is embedded, byte for byte
    pngs = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert len(pngs) >= 8 and len(page.imgs) == len(pngs)
    for img, rel in zip(page.imgs, pngs):
        assert img["src"].startswith("data:image/png;base64,"), rel
        assert base64.b64decode(img["src"].split(",", 1)[1]) == (rep / rel).read_bytes(), rel
        assert img.get("alt") == Path(rel).stem and "loading" not in img

    # self-contained: no script, style sheet or frame from elsewhere; links only to files beside it
    assert page.srcs == []
    for href in page.hrefs:
        assert not re.match(r"^[a-z]+://", href), href
        if not href.startswith("#"):
            assert (rep / href).is_file(), href

    # every table of index.md, and each holds exactly the cells of its CSV
    names = re.findall(r"^- \[([^\]]+)\.md\]\(tables/", md, flags=re.M)
    results_tables = [t for t in page.tables if t["name"]]
    assert [t["name"] for t in results_tables] == names and len(names) >= 5
    # the Markdown tables inlined under other links (paired differences, ...) are HTML tables too
    md_tables = len(re.findall(r"^\|[-:| ]+\|$", md, flags=re.M)) - len(names)
    assert len(page.tables) - len(results_tables) == md_tables
    for t in results_tables:
        csv = _csv(rep, t["name"])
        cols = t["head"][1:]
        cells = {}
        for row in t["rows"]:
            label = row[0]["text"]
            for col, cell in zip(cols, row[1:]):
                cells[(label, col)] = cell
        assert len({r[0]["text"] for r in t["rows"]}) == csv["row"].nunique() == len(t["rows"])
        assert set(csv["col"]) <= set(cols)
        for _, r in csv.iterrows():
            cell = cells[(r["row"], r["col"])]
            if pd.isna(r["mean"]):
                assert cell["v"] == "", (t["name"], r["row"], r["col"])
            else:
                assert float(cell["v"]) == pytest.approx(r["mean"], abs=1e-12), (t["name"], r["row"], r["col"])
                assert cell["text"].startswith(f"{r['mean']:.3f}")
            assert ("best" in cell["class"]) == bool(r["best"])
        # and nothing more: the cells without a CSV line are the empty ones
        extra = [k for k in cells if k[1] in set(csv["col"]) and not
                 ((csv["row"] == k[0]) & (csv["col"] == k[1])).any()]
        assert all(cells[k]["v"] == "" for k in extra)


def test_html_can_be_switched_off_or_link_its_figures(tmp_path, data_root):
    store = build_results(tmp_path / "res", load_real_labels(data_root), methods={"simclr": 0.9}, seeds=(0,),
                          history=False, panel=False, data_root=data_root)
    index = make_report([store.root], tmp_path / "plain", html=False)
    assert not (tmp_path / "plain" / "index.html").exists() and "index.html" not in index.read_text()
    index = make_report([store.root], tmp_path / "linked", embed_figures=False)
    page = Page((tmp_path / "linked" / "index.html").read_text())
    assert page.imgs and all((tmp_path / "linked" / i["src"]).is_file() for i in page.imgs)
    # files are readable like any other file (atomic writes used to leave them 0600)
    mode = (tmp_path / "linked" / "index.html").stat().st_mode & 0o777
    umask = os.umask(0o022)
    os.umask(umask)
    assert mode == 0o666 & ~umask


# --------------------------------------------------------------------------------------------
# the real browser
# --------------------------------------------------------------------------------------------
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class DevTools:
    """Headless Chromium driven over the DevTools protocol (one page)."""

    def __init__(self, exe: str, profile: Path, width: int = 1400, height: int = 1100):
        import websocket

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
             f"--user-data-dir={profile}", "--remote-debugging-port=0", f"--window-size={width},{height}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.time() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"chromium did not start (exit {self.proc.poll()})")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        targets = []
        while not any(t.get("type") == "page" for t in targets):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.load(r)
            if time.time() > deadline:
                raise RuntimeError("chromium has no page")
            time.sleep(0.1)
        url = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.events: list[dict] = []
        self._id = 0

    def send(self, method: str, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(e.get("method") == event for e in self.events):
                return
            self.ws.settimeout(max(0.1, deadline - time.time()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(event)

    def js(self, expression: str):
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression[:80]}...: {res['exceptionDetails']}")
        return res["result"].get("value")

    def click(self, x: float, y: float):
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails"))[:500])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
                out.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description")))
                                                             for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.mark.slow
def test_report_page_in_headless_chromium(tmp_path):
    """The report of the committed quick run, opened from disk in headless Chromium."""
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium): cannot test index.html in a browser")
    pytest.importorskip("websocket", reason="websocket-client (in the test extra) drives Chromium")
    results = REPO / "results" / "quick-3seeds"
    if not (results / "rows").is_dir():
        pytest.skip(f"{results} is not in this checkout")
    index = make_report([results], tmp_path / "report")
    page_file = index.with_name("index.html")
    n_png = len(re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", index.read_text()))

    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    b = DevTools(exe, profile)
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            b.send(f"{domain}.enable")
        b.send("Page.navigate", url=page_file.as_uri())
        b.wait_for("Page.loadEventFired")
        assert b.js("document.readyState") == "complete"

        # every figure decoded and shown
        imgs = b.js("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight,"
                    " i.getBoundingClientRect().width])")
        assert len(imgs) == n_png > 0
        for alt, complete, w, h, shown in imgs:
            assert complete and w > 0 and h > 0 and shown > 0, alt

        # every section and table present
        titles = b.js("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        assert titles == re.findall(r"^## (.+)$", index.read_text(), flags=re.M)
        n_tables = b.js("document.querySelectorAll('table.sortable[data-name]').length")
        assert n_tables == len(list((index.parent / "tables").glob("*.md")))

        # a real mouse click on a numeric header of the main table sorts its rows (best first),
        # a second click reverses them; empty cells stay last
        col = b.js("""(() => {
            const t = document.querySelector('#table-main');
            const heads = Array.from(t.tHead.rows[0].cells);
            const vals = i => Array.from(t.tBodies[0].rows).map(r => r.cells[i].getAttribute('data-v'));
            for (let i = 1; i < heads.length; i++) {
              const v = vals(i).filter(x => x !== '').map(Number);
              const sorted = [...v].sort((a, b) => b - a);
              if (v.length > 2 && JSON.stringify(v) !== JSON.stringify(sorted)) return i;
            }
            return -1; })()""")
        assert col > 0, "no column of the main table is out of order: nothing to show a sort with"
        read = f"""Array.from(document.querySelector('#table-main').tBodies[0].rows).map(r => [
            r.cells[0].textContent, r.cells[{col}].getAttribute('data-v')])"""
        before = b.js(read)

        def click_header():
            box = b.js(f"""(() => {{ const th = document.querySelector('#table-main').tHead.rows[0].cells[{col}];
                th.scrollIntoView({{block: 'center', inline: 'center'}});
                const r = th.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
            b.click(*box)

        def check(rows, descending):
            v = [float(x) for _, x in rows if x != ""]
            assert v == sorted(v, reverse=descending)
            empties = [i for i, (_, x) in enumerate(rows) if x == ""]
            assert empties == list(range(len(rows) - len(empties), len(rows)))
            assert sorted(rows) == sorted(before)  # same rows, only reordered

        click_header()
        after = b.js(read)
        assert after != before
        check(after, descending=True)
        assert b.js(f"document.querySelector('#table-main').tHead.rows[0].cells[{col}]"
                    ".getAttribute('aria-sort')") == "descending"
        click_header()
        check(b.js(read), descending=False)
        click_header()
        check(b.js(read), descending=True)

        # the filter box hides rows that do not match
        b.js("""(() => { const i = document.querySelector('#table-main').parentNode.querySelector('input.filter');
                i.value = 'simclr'; i.dispatchEvent(new Event('input')); })()""")
        shown = b.js("Array.from(document.querySelector('#table-main').tBodies[0].rows)"
                     ".filter(r => !r.hidden).map(r => r.cells[0].textContent)")
        assert shown == ["simclr"]
        b.js("""(() => { const i = document.querySelector('#table-main').parentNode.querySelector('input.filter');
                i.value = ''; i.dispatchEvent(new Event('input')); })()""")

        assert b.errors() == []
        assert all(u.startswith(("file:", "data:")) for u in b.requests()), b.requests()

        shot = os.environ.get("ECGBENCH_SCREENSHOT")
        if shot:
            b.js("""(() => { const t = document.querySelector('#table-main'); t.parentNode.scrollLeft = 0;
                    t.scrollIntoView({block: 'start'}); window.scrollBy(0, -420); })()""")
            png = base64.b64decode(b.send("Page.captureScreenshot", format="png")["data"])
            Path(shot).parent.mkdir(parents=True, exist_ok=True)
            Path(shot).write_bytes(png)
    finally:
        b.close()
