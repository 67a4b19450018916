"""``report --results DIR`` where DIR is a folder of result folders (like the committed results/):
one report per sub-folder plus a list page by default, one merged report with --merge; folders
that hold no results (an Optuna study) are skipped; a wrong folder is a one-line error that names
the result folders next to it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.results import load_results_dir
from test_report import build_results, load_real_labels  # same folder; pytest puts it on sys.path

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def parent(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("folders") / "results"
    labels = load_real_labels(data_root)
    for name, methods in (("alpha", {"simclr": 0.9}), ("beta", {"supervised": 1.3})):
        build_results(root / name, labels, methods=methods, seeds=(0,), history=False, panel=False,
                      data_root=data_root)
    (root / "study").mkdir()
    (root / "study" / "study.json").write_text("{}")
    return root


def test_folder_of_folders_makes_one_report_each(parent, tmp_path, capsys):
    out = tmp_path / "reports"
    assert main(["report", "--results", str(parent), "--out", str(out)]) == 0
    for name, method in (("alpha", "simclr"), ("beta", "supervised")):
        md = (out / name / "index.md").read_text()
        assert (out / name / "index.html").is_file()
        assert f"Methods: {method}." in md and f"--results {parent / name}" in md
    assert not (out / "study").exists()
    landing = (out / "index.md").read_text()
    assert "(alpha/index.html)" in landing and "(beta/index.html)" in landing and "study" not in landing
    html = (out / "index.html").read_text()
    assert 'href="alpha/index.html"' in html and 'href="beta/index.html"' in html
    n_alpha = len(load_results_dir(parent / "alpha"))
    assert f"| {n_alpha} | simclr | 0 |" in landing


def test_merge_makes_one_report(parent, tmp_path):
    out = tmp_path / "merged"
    assert main(["report", "--results", str(parent), "--merge", "--out", str(out)]) == 0
    md = (out / "index.md").read_text()
    assert "Methods: supervised, simclr." in md
    assert f"--results {parent / 'alpha'} --results {parent / 'beta'}" in md


def test_wrong_folders_are_one_line_errors(parent, tmp_path, capsys):
    assert main(["report", "--results", str(parent / "study")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no results" in err
    assert str(parent / "alpha") in err  # names the result folders next to it
    assert main(["report", "--results", str(parent / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and str(parent / "beta") in err


@pytest.mark.slow
def test_report_on_the_committed_results(tmp_path):
    """`report --results results` on the committed results folder (one report per run)."""
    results = REPO / "results"
    expected = sorted(p.name for p in results.iterdir() if (p / "rows").is_dir() or (p / "results.csv").is_file())
    assert expected, "no committed result folders"
    code = ("import sys; from benchmark.cli import main; "
            f"sys.exit(main(['report', '--results', 'results', '--out', r'{tmp_path}']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    made = sorted(p.parent.name for p in tmp_path.glob("*/index.html"))
    assert made == expected
    assert all(f"({name}/index.html)" in (tmp_path / "index.md").read_text() for name in expected)


def test_rerun_into_the_same_folder_drops_the_earlier_reports_leftovers(parent, tmp_path):
    """alpha's report, then beta's into the same folder: only beta's tables and figures remain
    (no simclr table beside the supervised one), files outside tables/ and figures/ are kept, and
    the page names the exact command, --out included."""
    out = tmp_path / "one"
    assert main(["report", "--results", str(parent / "alpha"), "--out", str(out)]) == 0
    # what an earlier report of other results would have left: a dataset and a variant no longer run
    (out / "tables" / "zero_shot_per_class_oldset_rhythm.md").write_text("| simclr | 0.9 |")
    (out / "figures" / "ablation_simclr.png").write_bytes(b"\x89PNG stale")
    (out / "my-notes.txt").write_text("mine")
    assert main(["report", "--results", str(parent / "beta"), "--out", str(out)]) == 0
    md = (out / "index.md").read_text()
    assert f"`python -m benchmark report --results {parent / 'beta'} --out {out}`" in md
    linked = {m for m in re.findall(r"\]\(([^)]+)\)", md) if not m.startswith(("http", "#"))}
    kept = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
            and p.parts[len(out.parts)] in ("tables", "figures")}
    assert kept == {m for m in linked if m.startswith(("tables/", "figures/"))}  # nothing unlinked remains
    assert (out / "my-notes.txt").read_text() == "mine"
    assert all("simclr" not in (out / k).read_text() for k in kept if k.endswith((".md", ".csv", ".tex")))
    assert not (out / "tables" / "zero_shot_per_class_oldset_rhythm.md").exists()
    assert not (out / "figures" / "ablation_simclr.png").exists()
