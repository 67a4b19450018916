"""``python -m benchmark data ...``: info (text and JSON), prepare, not-found datasets, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main

REPO = Path(__file__).resolve().parent.parent


def test_info_json_for_ptbxl(ptbxl_set, data_root, session_cache, capsys):
    rc = main(["data", "info", "--json", "--datasets", "ptbxl", "--data-root", str(data_root), "--cache-dir", str(session_cache)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["ptbxl"]
    d = out["ptbxl"]
    summary = ptbxl_set.summary()
    for task in ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm"):
        assert d[task] == summary["tasks"][task]
    sup = d["superdiagnostic"]
    assert list(sup["train"]) == ["NORM", "MI", "STTC", "CD", "HYP"]
    n_train = len(ptbxl_set.split_indices("train"))
    assert sum(sup["train"].values()) >= n_train - sup["unlabelled"]
    s = d["_summary"]
    assert s["status"] == "ok" and s["store"] == str(ptbxl_set.path)
    assert s["splits"] == {k: len(ptbxl_set.split_indices(k)) for k in ("train", "val", "test")}
    assert s["skipped"] == 0
    assert s["languages"] == ptbxl_set.meta["language"].value_counts().to_dict()
    assert sum(s["languages"].values()) == len(ptbxl_set)
    import pandas as pd

    from benchmark.data.reports_text import annotation_counts, detect_language

    db = pd.read_csv(data_root / "ptb-xl" / "ptbxl_database.csv")
    assert s["languages"] == pd.Series([detect_language(r) for r in db["report"].fillna("")]).value_counts().to_dict()
    assert s["info"]["glossary_coverage"]["overall"]["coverage"] >= 0.95
    held = s["info"]["glossary_coverage_out_of_sample"]
    assert held["de"]["coverage"] >= 0.95 and held["sv"]["coverage"] >= 0.95
    assert s["info"]["annotations_removed"] == annotation_counts(db["report"].fillna(""))
    assert 0 < len(s["info"]["untranslated_out_of_sample"]) <= 10


def test_info_text_prepare_and_not_found(ptbxl_copy, tmp_path, capsys):
    root = ptbxl_copy(tmp_path / "data", n=5)
    (root / "ptb-xl" / "records100/00000/00003_lr.dat").unlink()
    cache = tmp_path / "cache"
    assert main(["data", "prepare", "--data-root", str(root), "--cache-dir", str(cache), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ptbxl: 4 examples (1 skipped) ->" in out and str(cache) in out
    assert "mitbih: not found" in out and "cinc2017: not found" in out

    assert main(["data", "info", "--data-root", str(root), "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "ptbxl: 4 examples at 100 Hz" in out and "skipped: 1" in out and "00003_lr" in out
    assert "task superdiagnostic" in out and "report languages:" in out and "glossary coverage, out of sample" in out

    assert main(["data", "info", "--json", "--data-root", str(root), "--cache-dir", str(cache)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mitbih"] == {"_summary": {"status": "not found", "path": str(root / "mitdb")}}
    assert out["ptbxl"]["_summary"]["skipped"] == 1
    assert "missing" in out["ptbxl"]["_summary"]["skipped_examples"][0]["reason"]

    # named explicitly, a missing dataset is an error; --strict turns the skip into one
    assert main(["data", "info", "--datasets", "mitbih", "--data-root", str(root), "--cache-dir", str(cache)]) == 2
    assert "mitdb" in capsys.readouterr().err
    rc = main(["data", "prepare", "--strict", "--datasets", "ptbxl", "--data-root", str(root), "--cache-dir", str(cache)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "00003_lr" in err


def test_unknown_names_are_one_line_errors(tmp_path, capsys):
    assert main(["data", "info", "--datasets", "ptbxl,cinc2071", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown dataset 'cinc2071'") and "cinc2017" in err and err.count("\n") == 1
    # mitbih is the name (mitdb, PhysioNet's, an alias): a typo of it is suggested the name
    assert main(["data", "download", "mitbhi", "--to", str(tmp_path)]) == 2
    assert "Did you mean mitbih" in capsys.readouterr().err


def test_bad_data_root_via_subprocess_has_no_traceback(tmp_path):
    bad = tmp_path / "no-such-root"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark", "data", "info", "--json", "--data-root", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "ECGBENCH_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(bad) in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("action", ["info", "prepare"])
def test_dataset_options_reach_the_store(ptbxl_copy, tmp_path, capsys, action):
    root = ptbxl_copy(tmp_path / "data", n=6)
    args = ["data", action, "--datasets", "ptbxl", "--ptbxl-limit", "3", "--data-root", str(root), "--cache-dir", str(tmp_path / "c")]
    assert main(args + (["--json"] if action == "info" else [])) == 0
    out = capsys.readouterr().out
    if action == "info":
        assert json.loads(out)["ptbxl"]["_summary"]["records"] == 3
    else:
        assert "ptbxl: 3 examples" in out


def test_data_text_on_the_shared_reports(data_root, tmp_path, capsys):
    import pandas as pd

    out_csv = tmp_path / "text.csv"
    rc = main(["data", "text", "--json", "--data-root", str(data_root), "--write", str(out_csv), "--top", "5"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    db = pd.read_csv(data_root / "ptb-xl" / "ptbxl_database.csv")
    assert d["reports"] == len(db) and sum(d["languages"].values()) == len(db)
    assert d["coverage"]["de"] >= 0.95 and d["coverage"]["sv"] >= 0.95  # out of sample
    assert set(d["coverage_detail"]) == {"out_of_sample", "out_of_sample_new_text", "in_sample", "all"}
    held = d["held_out"]
    assert set(held) == {"block", "block_new_phrasing", "rule"} and set(held["block"]) == {"de", "sv"}
    for lang, b in held["block"].items():
        assert b["words"] > 0 and b["rules_below"] < b["from_id"] and b["translated"] <= b["words"]
        assert held["block_new_phrasing"][lang]["reports"] <= b["reports"]
    assert d["annotations_removed"]["edit"] == int(db["report"].fillna("").str.contains("Edit:").sum())
    assert len(d["untranslated"]) <= 5
    w = pd.read_csv(out_csv, keep_default_na=False)
    assert list(w.columns) == ["ecg_id", "language", "clean", "english"] and len(w) == len(db)
    assert not w["clean"].str.contains("edit:").any()
    row = w[w["clean"] == "sinusrytm vänster kammarhypertrofi"].iloc[0]  # its consensus dict is gone
    assert row["english"] == "sinus rhythm left ventricular hypertrophy" and row["language"] == "sv"

    assert main(["data", "text", "--data-root", str(data_root), "--top", "3"]) == 0
    text = capsys.readouterr().out
    assert "translation coverage out of sample" in text and "translation coverage in sample" in text
    assert "labelling annotations removed (reports): edit" in text and "languages: de" in text
    assert "held out by ecg_id block: de" in text and "held out by block, unseen phrasings: de" in text


def test_data_text_on_a_reports_file(tmp_path, capsys):
    import pandas as pd

    f = tmp_path / "reports.csv"
    pd.DataFrame(
        {
            "ecg_id": [900001, 900002, 900003, 1],
            "report": [
                "sinusrhythmus mögl. vorhofhypertrophie Edit: NORM 100, (NORM 100)",
                "sinusrytm vÄnster kammarhypertroficonsensus label derived from: {'LVH': 100.0}",
                "sinusrhythmus xqzvwpfk {'AFIB': 100.0} sonst normales ekg",
                "sinusrhythmus normales ekg",
            ],
            "other": [1, 2, 3, 4],
        }
    ).to_csv(f, index=False)
    assert main(["data", "text", "--json", "--reports", str(f)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["annotations_removed"] == {"edit": 1, "consensus": 1, "code_dict": 1, "code_list": 0}
    assert d["sample"]["out_of_sample"] == 3 and d["sample"]["in_sample"] == 1  # ecg_id 1 was read
    assert d["untranslated"] == [{"language": "de", "word": "xqzvwpfk", "count": 1}]
    assert d["coverage_detail"]["out_of_sample"]["de"]["words"] == 3 + 5
    # the block is the highest-id fifth of the three German reports, rounded up: the last one
    assert d["held_out"]["block"]["de"]["from_id"] == 900003 and d["held_out"]["block"]["de"]["reports"] == 1

    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": [1], "report": ["x"]}).to_csv(bad, index=False)
    assert main(["data", "text", "--reports", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "ecg_id" in err and str(bad) in err and err.count("\n") == 1
    assert main(["data", "text", "--reports", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err
