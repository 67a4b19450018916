"""ResultStore: atomic, resumable writes; job ids; merging keeps the latest duplicate."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.errors import UserError
from benchmark.stats.metrics import evaluate
from benchmark.results import (
    ROW_COLUMNS,
    ResultStore,
    env_info,
    make_job_id,
    merge_results,
    scores_frame,
    scores_matrix,
)


def _job_rows(method="mets", seed=0, value_shift=0.0, n=200, created=None):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 2)) < [0.3, 0.5]).astype(int)
    s = y + rng.normal(0, 1, y.shape) + value_shift
    rows = evaluate(y, s, ["a", "b"], multilabel=True, thresholds=None, n_boot=20)
    for r in rows:
        r.update(method=method, method_name=method.split("[")[0], seed=seed, protocol="zero-shot",
                 mode="zero-shot", dataset="ptbxl", task="super", label_fraction=math.nan)
        if created:
            r["created"] = created
    return rows, y, s


def test_job_id_is_safe_unique_and_readable():
    key = {"method": "mets[lm=tfidf,temperature=0.1]", "protocol": "few-label", "mode": "linear-probe",
           "dataset": "ptbxl", "task": "super", "label_fraction": 0.1, "seed": 2}
    a = make_job_id(key)
    assert a.startswith("mets_lm=tfidf_temperature=0.1_few-label_linear-probe_ptbxl_super_0.1_s2-")
    assert "/" not in a and "[" not in a and "," not in a
    assert make_job_id(dict(reversed(list(key.items())))) == a  # order-independent
    assert make_job_id({**key, "seed": 3}) != a
    evil = make_job_id({"method": "../../x y/z"})
    assert "/" not in evil and not evil.startswith(".") and " " not in evil


def test_write_and_load_roundtrip(tmp_path):
    store = ResultStore(tmp_path / "out")
    rows, y, s = _job_rows()
    jid = make_job_id({"method": "mets", "seed": 0})
    assert not store.job_done(jid)
    sc = scores_frame([f"ex{i}" for i in range(len(y))], ["a", "b"], y, s)
    store.write_job(jid, rows, scores=sc, meta={"thresholds": [0.1, math.inf], "subset": np.arange(3)})
    assert store.job_done(jid) and store.done_jobs() == [jid]
    df = store.load_rows()
    assert list(df.columns[: len(ROW_COLUMNS)]) == list(ROW_COLUMNS)
    assert (df["job_id"] == jid).all() and (df["created"] != "").all()
    assert len(df) == len(rows)
    # saved per-example scores reproduce the reported AUROC with scikit-learn
    ex, classes, y2, s2 = scores_matrix(store.load_scores(jid))
    assert classes == ["a", "b"] and len(ex) == len(y)
    macro = df[(df.metric == "auroc") & (df["class"] == "")]["value"].item()
    assert macro == pytest.approx(roc_auc_score(y2, s2, average="macro"), abs=1e-12)
    assert store.load_meta(jid)["thresholds"] == [0.1, "inf"]
    # results.csv holds the same table
    csv = pd.read_csv(store.csv_path, keep_default_na=False, na_values=[""])
    assert len(csv) == len(df) and set(csv["metric"]) == {"auroc"}
    with pytest.raises(UserError):
        store.load_scores("nope")
    with pytest.raises(ValueError):
        store.rows_path("../evil")


def test_half_written_temp_is_ignored_and_job_not_done(tmp_path):
    store = ResultStore(tmp_path)
    rows, *_ = _job_rows()
    jid = make_job_id({"method": "mets", "seed": 1})
    store.rows_dir.mkdir(parents=True)
    # what a kill -9 during the rows write leaves behind: a truncated temp file
    (store.rows_dir / f".{jid}.parquet.abc123.tmp").write_bytes(b"PAR1\x00\x01 truncated")
    assert not store.job_done(jid)
    assert store.load_rows().empty and store.done_jobs() == []
    store.write_job(jid, rows)
    assert store.job_done(jid) and len(store.load_rows()) == len(rows)


def test_failed_write_leaves_no_rows_file(tmp_path, monkeypatch):
    """If writing fails mid-way (scores unwritable), the rows file -- the 'done' marker -- is absent."""
    store = ResultStore(tmp_path)
    rows, *_ = _job_rows()
    jid = make_job_id({"method": "mets", "seed": 2})
    with pytest.raises(ValueError):
        store.write_job(jid, rows, scores=pd.DataFrame({"example": [1]}))
    assert not store.job_done(jid)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_resume_overwrites_not_duplicates(tmp_path):
    store = ResultStore(tmp_path)
    rows, *_ = _job_rows()
    jid = make_job_id({"method": "mets", "seed": 0})
    store.write_job(jid, rows)
    store.write_job(jid, rows)
    assert len(store.load_rows()) == len(rows)


def test_history(tmp_path):
    store = ResultStore(tmp_path)
    assert store.load_history().empty
    h = pd.DataFrame({"method": "simclr", "seed": 0, "epoch": [1, 2, 3], "loss": [3.0, 2.0, 1.5]})
    p = store.write_history("simclr/seed 0", h)
    assert p.parent == store.history_dir and "/" not in p.name[:-8]
    out = store.load_history()
    assert list(out["loss"]) == [3.0, 2.0, 1.5] and set(out["key"]) == {"simclr/seed 0"}


def test_merge_keeps_latest_duplicate(tmp_path):
    old, new = ResultStore(tmp_path / "old"), ResultStore(tmp_path / "new")
    r_old, *_ = _job_rows(value_shift=0.0, created="2024-01-01T00:00:00+00:00")
    r_new, *_ = _job_rows(value_shift=0.0, created="2025-01-01T00:00:00+00:00")
    for r in r_new:  # same keys, different numbers
        r["value"] = 0.123
    r_other, *_ = _job_rows(method="simclr", created="2023-01-01T00:00:00+00:00")
    old.write_job("job-a", r_old)
    old.write_job("job-b", r_other)
    new.write_job("job-a", r_new)
    for order in ([tmp_path / "new", tmp_path / "old"], [tmp_path / "old", tmp_path / "new"]):
        m = merge_results(order)
        mets = m[m.method == "mets"]
        assert len(mets) == len(r_new) and (mets["value"] == 0.123).all()
        assert (mets["results_dir"] == str(tmp_path / "new")).all()
        assert len(m[m.method == "simclr"]) == len(r_other)
    with pytest.raises(UserError):
        merge_results([tmp_path / "missing"])


def test_merge_reads_csv_only_folder(tmp_path):
    store = ResultStore(tmp_path / "a")
    rows, *_ = _job_rows()
    for i, r in enumerate(rows):
        r["git_dirty"] = i == 0
    store.write_job("job-a", rows)
    csv_only = tmp_path / "b"
    csv_only.mkdir()
    os.replace(store.csv_path, csv_only / "results.csv")
    m = merge_results([csv_only])
    assert len(m) == len(rows)
    assert m["git_dirty"].tolist() == [True] + [False] * (len(rows) - 1)
    assert m["label_fraction"].isna().all() and (m["class"].isin(["", "a", "b"])).all()


def test_env_info():
    info = env_info("cpu")
    assert set(info) >= {"git_commit", "git_dirty", "device", "torch_version", "python_version", "host"}
    assert len(info["git_commit"]) in (0, 40) and info["device"].startswith("cpu")
    assert info["python_version"].count(".") == 2
    assert env_info(repo="/")["git_commit"] == ""


def test_code_version_is_read_once_per_process(tmp_path):
    """A commit or an edit made while a run goes on must not relabel its later rows."""
    import subprocess

    from benchmark.results import code_version

    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (repo / "f.txt").write_text("a")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    first = env_info(repo=repo)
    (repo / "f.txt").write_text("b")  # an edit after the run began
    assert env_info(repo=repo)["git_commit"] == first["git_commit"] and env_info(repo=repo)["git_dirty"] is False
    code_version.cache_clear()
    assert env_info(repo=repo)["git_dirty"] is True  # a new process would see it


def test_results_written_into_the_checkout_leave_the_code_clean(tmp_path):
    """Resuming into a tracked ``results/`` (or regenerating ``reports/``) changes no code: the rows
    must not be labelled ``-dirty``; a changed code file still is."""
    import subprocess

    from benchmark.results import code_version

    repo = tmp_path / "repo"
    for d in ("results/shared", "reports/shared", "benchmark"):
        (repo / d).mkdir(parents=True)
    run = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    for f in ("results/shared/results.csv", "reports/shared/index.md", "benchmark/x.py"):
        (repo / f).write_text("a")
    run("add", ".")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    (repo / "results/shared/results.csv").write_text("b")
    (repo / "reports/shared/index.md").write_text("b")
    code_version.cache_clear()
    assert env_info(repo=repo)["git_dirty"] is False
    (repo / "benchmark/x.py").write_text("b")
    code_version.cache_clear()
    assert env_info(repo=repo)["git_dirty"] is True


def test_a_job_rewritten_under_new_settings_supersedes_the_old_one(tmp_path):
    """The same job (method, seed, protocol, mode, dataset, task, fraction) written under another
    id -- its settings changed, e.g. a new default -- moves the old job's files to superseded/:
    the folder then holds one row set per job, and nothing computed is deleted."""
    store = ResultStore(tmp_path)
    rows, y, s = _job_rows()
    other, *_ = _job_rows(seed=1)
    old_id, new_id = make_job_id({"method": "mets", "seed": 0, "config": "a"}), make_job_id(
        {"method": "mets", "seed": 0, "config": "b"})
    keep_id = make_job_id({"method": "mets", "seed": 1, "config": "a"})
    store.write_job(old_id, rows, scores=scores_frame([f"e{i}" for i in range(len(y))], ["a", "b"], y, s),
                    meta={"config": "a"})
    store.write_job(keep_id, other)
    store.write_job(new_id, rows)
    assert set(store.done_jobs()) == {new_id, keep_id}  # another seed is another job: kept
    assert set(store.load_rows()["job_id"]) == {new_id, keep_id}
    assert set(pd.read_csv(store.csv_path)["job_id"]) == {new_id, keep_id}
    moved = sorted(p.relative_to(store.superseded_dir).as_posix() for p in store.superseded_dir.rglob("*.*"))
    assert moved == [f"meta/{old_id}.json", f"rows/{old_id}.parquet", f"scores/{old_id}.parquet"]
