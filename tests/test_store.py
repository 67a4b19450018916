"""Prepared store: cache key and reuse, atomic builds, counted skips of bad records, one-line errors.

Bad files are made in small copies of PTB-XL records under tmp_path (``ptbxl_copy`` fixture);
the shared data is never touched.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from benchmark.data import store
from benchmark.data.store import list_stores, open_store, prepare
from benchmark.errors import DataError, UserError


def _prep(root, cache, **kw):
    kw.setdefault("progress", False)
    return prepare("ptbxl", root, cache, **kw)


def test_fast_reuse_and_new_key_when_a_parameter_changes(ptbxl_set, data_root, session_cache, tmp_path):
    created = ptbxl_set.manifest["created"]
    t0 = time.perf_counter()
    again = _prep(data_root, session_cache)
    assert time.perf_counter() - t0 < 1.0
    assert again.path == ptbxl_set.path and again.manifest["created"] == created

    a = _prep(data_root, tmp_path, limit=20)
    b = _prep(data_root, tmp_path, limit=20, window_s=5.0)
    assert a.path != b.path and a.path != ptbxl_set.path
    assert b.raw([0]).shape == (1, 12, 500)
    np.testing.assert_array_equal(b.raw([3])[0], a.raw([3])[0][:, :500])
    assert {s["key"] for s in list_stores(tmp_path)} == {a.manifest["key"], b.manifest["key"]}
    # rebuild=True builds the same key again
    c = _prep(data_root, tmp_path, limit=20, rebuild=True)
    assert c.path == a.path and (c.path / "manifest.json").is_file()


def test_source_file_changes_give_a_new_key(ptbxl_copy, tmp_path):
    root = ptbxl_copy(tmp_path / "data", n=4)
    cache = tmp_path / "cache"
    first = _prep(root, cache)
    dat = root / "ptb-xl" / "records100/00000/00002_lr.dat"
    st = dat.stat()
    os.utime(dat, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new mtime
    second = _prep(root, cache)
    assert second.path != first.path
    csv = root / "ptb-xl" / "ptbxl_database.csv"
    csv.write_text(csv.read_text().replace("sinusrhythmus", "sinusrhythmus "))
    third = _prep(root, cache)
    assert third.path not in (first.path, second.path)
    assert first.path.is_dir() and second.path.is_dir()  # old stores stay until rebuild/GC


def test_stats_fitted_on_training_rows_and_batch_is_normalised(ptbxl_set):
    train = ptbxl_set.split_indices("train")
    x = ptbxl_set.raw(train).astype(np.float64)
    np.testing.assert_allclose(ptbxl_set.mean, x.mean(axis=(0, 2)), atol=1e-5)
    np.testing.assert_allclose(ptbxl_set.std, x.std(axis=(0, 2)), rtol=1e-4)
    all_mean = ptbxl_set.raw(np.arange(len(ptbxl_set))).mean(axis=(0, 2))
    assert not np.allclose(all_mean, ptbxl_set.mean, atol=1e-7)  # really train-only
    idx = [5, 2, 400]
    b = ptbxl_set.batch(idx).numpy()
    assert b.shape == (3, 12, 1000)
    expect = (ptbxl_set.raw(idx) - ptbxl_set.mean[None, :, None]) / ptbxl_set.std[None, :, None]
    np.testing.assert_allclose(b, expect, atol=1e-5)


def test_store_without_manifest_is_not_trusted(ptbxl_copy, tmp_path):
    root = ptbxl_copy(tmp_path / "data", n=3)
    cache = tmp_path / "cache"
    ds = _prep(root, cache)
    (ds.path / "manifest.json").unlink()
    (ds.path / "signals.npy").write_bytes(b"garbage")  # a half-written store
    with pytest.raises(DataError, match="not a complete prepared store"):
        open_store(ds.path)
    again = _prep(root, cache)
    assert again.path == ds.path and len(again) == 3
    assert again.raw([0]).shape == (1, 12, 1000)


def test_crash_during_build_leaves_nothing_trusted(ptbxl_copy, tmp_path, monkeypatch):
    root = ptbxl_copy(tmp_path / "data", n=3)
    cache = tmp_path / "cache"
    cls = store.dataset_class("ptbxl")
    real = cls.read_group.__func__
    calls = {"n": 0}

    def crashing(klass, r, rows, params):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of a build
        return real(klass, r, rows, params)

    monkeypatch.setattr(cls, "read_group", classmethod(crashing))
    with pytest.raises(KeyboardInterrupt):
        _prep(root, cache)
    stores = cache / "stores"
    assert not [p for p in stores.iterdir()]  # neither a store nor a temp folder remains
    # a temp folder left by a killed process (pid gone) is removed by the next build
    monkeypatch.undo()
    stale = stores / ".ptbxl-deadbeef.tmp-999999999-abcd@nohost"
    stale.mkdir()
    old = time.time() - 2 * 86400
    os.utime(stale, (old, old))
    ds = _prep(root, cache)
    assert len(ds) == 3 and [s["path"] for s in list_stores(cache)] == [str(ds.path)]
    assert store.remove_stale(cache) == [str(stale)] and not stale.exists()
    assert ds.path.is_dir()


def test_concurrent_builder_discards_its_copy(ptbxl_copy, tmp_path):
    root = ptbxl_copy(tmp_path / "data", n=2)
    cache = tmp_path / "cache"
    ds = _prep(root, cache)
    cls = store.dataset_class("ptbxl")
    params = store.make_params(cls, 100, 10.0, {})
    r = cls.root(root, params)
    fp = store.fingerprint(cls.source_files(r, params), r)
    # a second process finishing the same build after the first renamed its store into place
    store._build("ptbxl", cls, r, params, ds.path, ds.manifest["key"], fp, strict=False, progress=False)
    assert sorted(p.name for p in ds.path.parent.iterdir()) == [ds.path.name]
    assert open_store(ds.path).manifest["created"] == ds.manifest["created"]


def _damage(root):
    rec = root / "ptb-xl" / "records100/00000"
    dat = rec / "00002_lr.dat"
    dat.write_bytes(dat.read_bytes()[:5000])  # truncated
    (rec / "00003_lr.dat").write_bytes(np.full(12 * 1000, -32768, "<i2").tobytes())  # all NaN in wfdb
    (rec / "00004_lr.dat").write_bytes(np.zeros(12 * 1000, "<i2").tobytes())  # flat
    hea = rec / "00005_lr.hea"
    hea.write_text(hea.read_text().replace("00005_lr 12 100 1000", "00005_lr 12 250 1000", 1))
    (rec / "00006_lr.dat").unlink()


def test_bad_records_are_skipped_and_counted(ptbxl_copy, tmp_path):
    root = ptbxl_copy(tmp_path / "data", n=8)
    _damage(root)
    ds = _prep(root, tmp_path / "cache")
    skipped = {s.get("source", "").split("/")[-1]: s["reason"] for s in ds.manifest["skipped"]}
    assert set(skipped) == {"00002_lr", "00003_lr", "00004_lr", "00005_lr", "00006_lr"}
    assert "truncated" in skipped["00002_lr"] or "cannot read" in skipped["00002_lr"]
    assert skipped["00003_lr"] == "NaN or inf in signal"
    assert skipped["00004_lr"] == "flat signal"
    assert "250" in skipped["00005_lr"] and "expected 100 Hz" in skipped["00005_lr"]
    assert "missing" in skipped["00006_lr"]
    assert ds.meta["id"].tolist() == ["1", "7", "8"] and len(ds) == 3
    assert ds.summary()["skipped"] == 5
    y, valid = ds.labels("superdiagnostic")
    assert y.shape == (3, 5)
    # strict: the same store (or a fresh build) stops with a one-line error naming the record
    with pytest.raises(DataError) as exc:
        _prep(root, tmp_path / "cache", strict=True)
    assert "\n" not in str(exc.value) and "0000" in str(exc.value)
    with pytest.raises(DataError) as exc:
        _prep(root, tmp_path / "cache2", strict=True)
    assert "\n" not in str(exc.value) and "00002_lr" in str(exc.value)


def test_missing_root_csv_dataset_option_and_task_are_one_line_user_errors(ptbxl_set, tmp_path):
    with pytest.raises(UserError, match="nowhere") as e:
        _prep(tmp_path / "nowhere", tmp_path / "c")
    assert "\n" not in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="ptb-xl"):
        _prep(tmp_path / "empty", tmp_path / "c")
    (tmp_path / "nocsv" / "ptb-xl").mkdir(parents=True)
    with pytest.raises(DataError, match="ptbxl_database.csv"):
        _prep(tmp_path / "nocsv", tmp_path / "c")
    with pytest.raises(UserError, match="Did you mean ptbxl"):
        prepare("ptbx", tmp_path, tmp_path / "c")
    with pytest.raises(UserError, match="limit"):
        _prep(tmp_path, tmp_path / "c", limt=3)
    with pytest.raises(UserError, match="Did you mean superdiagnostic"):
        ptbxl_set.labels("superdiagnostc")


def test_manifest_records_what_was_done(ptbxl_set):
    m = json.loads((ptbxl_set.path / "manifest.json").read_text())
    assert m["dataset"] == "ptbxl" and m["params"] == {"fs": 100, "window_s": 10.0, "options": {"limit": 0}}
    assert m["stats_fitted_on"] == "train" and m["records_kept"] == len(ptbxl_set)
    fp = m["source_fingerprint"]
    # metadata/annotation files are content-hashed (database, statements, glossary, glossary_seen.txt);
    # each record's .hea/.dat only by (size, mtime)
    assert fp["content_hashed"] == 4 and fp["stat_only"] == 2 * len(ptbxl_set) and fp["missing"] == 0
    assert m["tasks"]["superdiagnostic"]["classes"] == ["NORM", "MI", "STTC", "CD", "HYP"]
    assert ptbxl_set.path.name == f"ptbxl-{m['key']}"


def test_measure_read_throughput_runs_on_the_store(ptbxl_set):
    r = store.measure_read_throughput(ptbxl_set, n=32, batch_size=16, repeats=1)
    assert r["records"] == 32 and r["store_ecgs_per_s"] > 0 and r["wfdb_ecgs_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["store_ecgs_per_s"] / r["wfdb_ecgs_per_s"], rel=0.05)
