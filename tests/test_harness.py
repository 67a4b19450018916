"""The real entry point, end to end, at toy scale on the shared data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.results import ResultStore

REPO = Path(__file__).resolve().parent.parent

TINY = [
    "--profile", "quick", "--no-progress", "--seeds", "0",
    "--set", "method_settings.encoder=resnet1d-tiny", "--set", "method_settings.epochs=1",
    "--set", "method_settings.batch_size=64", "--set", "n_boot=50", "--set", "finetune_epochs=1",
    "--set", "cross_max_train=400", "--set", "cross_max_eval=400", "--set", "panel_examples=2",
]


def _run(out, cache, methods, protocols, extra=()):
    return main(["run", "--methods", methods, "--protocols", protocols, "--tasks", "superdiagnostic",
                 "--label-fractions", "0.1,1.0", "--out", str(out), "--cache-dir", str(cache), *TINY, *extra])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("cache")
    rc = _run(out, cache, "mets[lm=tfidf],random-init", "zero-shot,few-label,cross-dataset",
              ["--set", "cross_datasets=mitbih"])
    assert rc == 0
    return out, cache


def test_run_writes_tidy_rows_for_every_protocol(tiny_run):
    out, _ = tiny_run
    rows = ResultStore(out).load_rows()
    macro = rows[(rows.metric == "auroc") & (rows["class"] == "")]
    got = set(zip(macro.method, macro.protocol, macro["mode"], macro.dataset))
    assert ("mets[lm=tfidf]", "zero-shot", "zero-shot", "ptbxl") in got
    assert ("random-init", "few-label", "linear-probe", "ptbxl") in got
    assert ("random-init", "few-label", "fine-tune", "ptbxl") in got
    assert ("mets[lm=tfidf]", "cross-dataset", "linear-probe", "mitbih") in got
    assert ("mets[lm=tfidf]", "cross-dataset", "zero-shot", "mitbih") in got
    assert not any(m == "random-init" and p == "zero-shot" for m, p, _, _ in got)
    assert macro["value"].between(0, 1).all()
    assert (macro["ci_low"] <= macro["value"] + 1e-9).all() and (macro["value"] <= macro["ci_high"] + 1e-9).all()
    assert rows["git_commit"].notna().all() and rows["config_hash"].str.len().gt(0).all()
    assert (out / "examples" / "ecg_panel.npz").is_file()


def test_auroc_recomputes_from_saved_scores(tiny_run):
    from sklearn.metrics import roc_auc_score

    out, _ = tiny_run
    store = ResultStore(out)
    rows = store.load_rows()
    checked = 0
    for job_id, g in rows[(rows.metric == "auroc") & (rows["class"] != "")].groupby("job_id"):
        scores = store.load_scores(job_id)
        for _, r in g.iterrows():
            if not np.isfinite(r["value"]):
                continue
            s = scores[scores["class"] == r["class"]]
            assert roc_auc_score(s["label"], s["score"]) == pytest.approx(r["value"], abs=1e-9)
            checked += 1
    assert checked > 10


def test_second_run_skips_everything(tiny_run):
    out, cache = tiny_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.parquet")}
    rows_before = ResultStore(out).load_rows()
    t0 = time.perf_counter()
    assert _run(out, cache, "mets[lm=tfidf],random-init", "zero-shot,few-label,cross-dataset",
                ["--set", "cross_datasets=mitbih"]) == 0
    assert time.perf_counter() - t0 < 30
    after = {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.parquet")}
    assert before == after
    pd.testing.assert_frame_equal(rows_before, ResultStore(out).load_rows())


def test_unknown_names_are_one_line_errors(tmp_path, capsys):
    assert main(["run", "--methods", "metz", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown method 'metz'") and "mets" in err and "\n" not in err
    assert main(["run", "--methods", "mets[temprature=0.1]", "--out", str(tmp_path)]) == 2
    assert "temprature" in capsys.readouterr().err
    assert main(["run", "--set", "epochz=3", "--out", str(tmp_path)]) == 2
    assert "epochz" in capsys.readouterr().err


@pytest.mark.slow
def test_kill_and_resume_gives_identical_results(tmp_path):
    """kill -9 mid-run, re-run: the final results equal those of an uninterrupted run."""
    args = ["--methods", "simclr,random-init", "--protocols", "few-label", "--tasks", "superdiagnostic",
            "--label-fractions", "0.1,1.0", *TINY, "--set", "method_settings.epochs=3"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def cmd(out, cache):
        return [sys.executable, "-m", "benchmark", "run", *args, "--out", str(out), "--cache-dir", str(cache)]

    subprocess.run(cmd(tmp_path / "a", tmp_path / "ca"), check=True, env=env, cwd=REPO, capture_output=True)
    proc = subprocess.Popen(cmd(tmp_path / "b", tmp_path / "cb"), env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = tmp_path / "cb" / "pretrained"
    deadline = time.time() + 300
    while time.time() < deadline and not list(ckpts.glob("*/checkpoints/last.pt")):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(cmd(tmp_path / "b", tmp_path / "cb"), check=True, env=env, cwd=REPO, capture_output=True)
    key = ["method", "seed", "protocol", "mode", "dataset", "task", "label_fraction", "metric", "class"]
    a = ResultStore(tmp_path / "a").load_rows().sort_values(key).reset_index(drop=True)
    b = ResultStore(tmp_path / "b").load_rows().sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a["value"].to_numpy(float), b["value"].to_numpy(float), rtol=0, atol=1e-6)


def test_run_ends_with_the_report_command_that_works(tiny_run, tmp_path, monkeypatch, capsys):
    import shlex

    out, cache = tiny_run
    capsys.readouterr()
    assert _run(out, cache, "mets[lm=tfidf],random-init", "zero-shot,few-label,cross-dataset",
                ["--set", "cross_datasets=mitbih"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1].strip()
    argv = shlex.split(last)
    assert argv[:4] == ["python", "-m", "benchmark", "report"] and argv[argv.index("--results") + 1] == str(out)
    monkeypatch.chdir(tmp_path)
    assert main(argv[3:]) == 0
    assert (tmp_path / "reports" / out.name / "index.md").is_file()
    assert (tmp_path / "reports" / out.name / "index.html").is_file()


def test_next_step_of_an_ablation_names_one_report_after_its_parent_folder():
    from benchmark.cli.common import next_step_text

    outs = ["results/ablation-prompts/prompt_templates=all", "results/ablation-prompts/prompt_templates=paper"]
    text = next_step_text(*outs)
    assert "in reports/ablation-prompts/" in text
    assert text.strip().endswith(
        "--results results/ablation-prompts/prompt_templates=all "
        "--results results/ablation-prompts/prompt_templates=paper --out reports/ablation-prompts")
    assert next_step_text("results/quick").strip().endswith("--results results/quick --out reports/quick")
    nested = ["results/ablation-mitbih-input/default", "results/ablation-mitbih-input/beat_window_s=0/beat_rr=False"]
    assert next_step_text(*nested).strip().endswith("--out reports/ablation-mitbih-input")


def test_every_setting_that_changes_numbers_changes_the_job_id():
    """Settings hashed later (beat-level heads, MIT-BIH conditioning, head sizes) change the job id
    when they differ from the value old rows were computed under, and leave the ids of such rows
    alone: a resumed folder never serves a row of another setting."""
    from benchmark.config import build_config
    from benchmark.engine.runner import JOB_SETTINGS, LATER_JOB_SETTINGS, config_hash
    from benchmark.paths import stable_hash
    from benchmark.protocols import Job

    base = build_config("shared", None, {})
    cfg = {**base, **{k: v for k, v in LATER_JOB_SETTINGS.items()}}  # every later setting at its legacy value
    legacy = stable_hash({"cfg": {k: v for k, v in cfg.items() if k in JOB_SETTINGS}, "method": "mets"})
    assert config_hash(cfg, "mets") == legacy  # the ids of rows computed before these settings were hashed stand
    for key, value in {"beat_rr": False, "beat_window_s": 0, "beat_norm": "record", "beat_rule": "argmax",
                       "beat_C_extend": 2, "beat_sn_stage": "rr", "mitbih_baseline": "median", "mitbih_scale": "record",
                       "probe_hidden": 64}.items():
        assert key in LATER_JOB_SETTINGS
        assert config_hash({**cfg, key: value}, "mets") != legacy, key
    assert config_hash({**cfg, "beat_window_s": 2}, "mets") == legacy  # 2 == 2.0 as the config reads it
    # scoped to the jobs they change: a PTB-XL job or MIT-BIH zero-shot keeps its id under a new beat head
    ptbxl = Job("mets", 0, "few-label", "linear-probe", "ptbxl", "superdiagnostic", 1.0)
    zs = Job("mets", 0, "cross-dataset", "zero-shot", "mitbih", "aami")
    lp = Job("mets", 0, "cross-dataset", "linear-probe", "mitbih", "aami", 1.0)
    ft = Job("mets", 0, "cross-dataset", "fine-tune", "mitbih", "aami", 1.0)  # reads the raw window
    head = Job("mets", 0, "few-label", "mlp-probe", "ptbxl", "superdiagnostic", 1.0)
    norm = {**cfg, "beat_norm": "record"}
    assert config_hash(norm, "mets", ptbxl) == config_hash(norm, "mets", zs) == legacy != config_hash(norm, "mets", lp)
    assert config_hash(norm, "mets", ft) == legacy != config_hash({**cfg, "beat_rr": False}, "mets", ft)
    filt = {**cfg, "mitbih_baseline": "median"}  # the data changes: MIT-BIH zero-shot too, PTB-XL not
    assert config_hash(filt, "mets", zs) != legacy == config_hash(filt, "mets", ptbxl)
    small = {**cfg, "probe_hidden": 64}
    assert config_hash(small, "mets", head) != legacy == config_hash(small, "mets", lp)
    # today's defaults are the legacy values but the S-vs-N stage (beat_sn_stage=auto, the linear
    # probe's alone): only the MIT-BIH probe jobs got new ids when it became the default
    assert {k for k, v in LATER_JOB_SETTINGS.items() if base[k] != v} == {"beat_sn_stage"}
    assert all(config_hash(base, "mets", j) == legacy for j in (ptbxl, zs, ft, head))
    assert config_hash(base, "mets", lp) != legacy
    # the stage reads the RR features: with beat_rr off it is off, and its setting stays out of the
    # hash, so the RR ablation arm's rows from before the stage keep their ids
    from benchmark.protocols.beat_level import sn_stage

    no_rr = {**cfg, "beat_rr": False}
    assert config_hash({**no_rr, "beat_sn_stage": "auto"}, "mets", lp) == config_hash(no_rr, "mets", lp) != legacy
    assert sn_stage({**base, "beat_rr": False}) == "none" and sn_stage(base) == "auto"
