"""``data info`` reads without building (on the real shared data, with an empty cache), builds
only when asked (``--prepare``), and MIT-BIH has one name (``mitbih``) with ``mitdb`` as alias."""

from __future__ import annotations

import json
import time

import pytest

from benchmark.cli import main
from benchmark.data.download import ALIASES, SOURCES
from tests.test_download import mitdb_server, server  # noqa: F401  (fixtures: a local PhysioNet)


def _records(folder):
    return sorted(ln.strip() for ln in (folder / "RECORDS").read_text().splitlines() if ln.strip())


def test_info_builds_nothing_and_is_fast(data_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    t0 = time.perf_counter()
    assert main(["data", "info", "--json", "--data-root", str(data_root), "--cache-dir", str(cache)]) == 0
    took = time.perf_counter() - t0
    out = json.loads(capsys.readouterr().out)
    assert not cache.exists() or not any(cache.rglob("*")), "data info wrote into the cache"
    assert took < 30, f"data info took {took:.0f} s with an empty cache"
    mit = out["mitbih"]["_summary"]
    assert mit["status"] == "not prepared" and mit["prepared"] is False
    assert mit["records"] == len(_records(data_root / "mitdb")) and mit["path"].endswith("mitdb")
    assert mit["missing"] == 0 and mit["bytes"] > 0 and mit["store"].startswith(str(cache))
    import pandas as pd

    n_ptb = len(pd.read_csv(data_root / "ptb-xl" / "ptbxl_database.csv"))
    assert out["ptbxl"]["_summary"]["records"] == n_ptb
    # the text form says what is missing and how to build it, and still builds nothing
    assert main(["data", "info", "--data-root", str(data_root), "--cache-dir", str(cache)]) == 0
    text = capsys.readouterr().out
    assert f"ptbxl: {n_ptb} records in" in text and "is not in the cache" in text
    assert "data prepare --datasets mitbih" in text
    assert not (cache / "stores").exists()


def test_info_prepare_builds_then_info_reads_the_store(ptbxl_copy, tmp_path, capsys):
    root = ptbxl_copy(tmp_path / "data", n=4)
    cache = tmp_path / "cache"
    args = ["data", "info", "--datasets", "ptbxl", "--data-root", str(root), "--cache-dir", str(cache), "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["ptbxl"]["_summary"]["status"] == "not prepared"
    assert not (cache / "stores").exists()
    assert main(args + ["--prepare", "--no-progress"]) == 0
    built = json.loads(capsys.readouterr().out)["ptbxl"]
    assert built["_summary"]["status"] == "ok" and "superdiagnostic" in built
    stores = list((cache / "stores").iterdir())
    assert len(stores) == 1
    # now plain info opens that store (no rebuild: same directory, same manifest mtime)
    mtime = (stores[0] / "manifest.json").stat().st_mtime_ns
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)["ptbxl"]
    assert again["_summary"]["store"] == str(stores[0]) and again["superdiagnostic"] == built["superdiagnostic"]
    assert again["_summary"]["source"]["records"] == 4 and again["_summary"]["store_bytes"] > 0
    assert (stores[0] / "manifest.json").stat().st_mtime_ns == mtime
    assert main(args[:-1]) == 0
    assert "ptbxl: 4 examples at 100 Hz" in capsys.readouterr().out


@pytest.mark.parametrize("spelling", ["mitbih", "mitdb", "MITDB"])
def test_datasets_accepts_both_mitbih_spellings(data_root, tmp_path, capsys, spelling):
    assert main(["data", "info", "--json", "--datasets", spelling, "--data-root", str(data_root),
                 "--cache-dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["mitbih"] and out["mitbih"]["_summary"]["path"].endswith("mitdb")


def test_both_spellings_named_once(data_root, tmp_path, capsys):
    assert main(["data", "info", "--json", "--datasets", "mitdb,mitbih", "--data-root", str(data_root),
                 "--cache-dir", str(tmp_path)]) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["mitbih"]


def test_download_names():
    assert "mitbih" in SOURCES and "mitdb" not in SOURCES and ALIASES["mitdb"] == "mitbih"
    assert SOURCES["mitbih"].folder == "mitdb" and SOURCES["mitbih"].path.startswith("mitdb/")


@pytest.mark.parametrize("spelling", ["mitbih", "mitdb"])
def test_download_accepts_both_spellings_into_mitdb(mitdb_server, tmp_path, capsys, spelling):  # noqa: F811
    srv, files = mitdb_server
    assert main(["data", "download", spelling, "--to", str(tmp_path / "dl"), "--base-url", srv.url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mitbih: downloaded to") and str(tmp_path / "dl" / "mitdb") in out
    for name, src in files.items():
        assert (tmp_path / "dl" / "mitdb" / name).read_bytes() == src.read_bytes()
