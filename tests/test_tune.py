"""Optuna tuning: search-space validation, the test-split guard, reproducibility of the best
config, and several worker processes (including one killed with SIGKILL) on one study.

Real data (the shared PTB-XL slice), a tiny METS (TF-IDF text tower, resnet1d-tiny, 1 epoch,
2 steps) so that a trial takes seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.errors import UserError

REPO = Path(__file__).resolve().parent.parent
TINY = {
    "method_settings.encoder": "resnet1d-tiny",
    "method_settings.epochs": "1",
    "method_settings.max_steps_per_epoch": "2",
    "method_settings.batch_size": "32",
    "device": "cpu",
}
# a small space so that trials stay cheap whatever is sampled
SPACE = ["lr=1e-4..1e-2:log", "temperature=0.03..0.2:log", "proj_dim=32|64", "width=8|16",
         "weight_decay=1e-4", "report_text=clean", "learnable_temperature=false"]


def tiny_tuner(tmp_path, data_root, cache, **kw):
    from benchmark.tune.tuner import Tuner

    kw.setdefault("space", SPACE)
    return Tuner("mets[lm=tfidf]", profile="quick", overrides=dict(TINY), out=tmp_path / "study",
                 data_root=data_root, cache_dir=cache, progress=False, sampler_seed=0, **kw)


def cli_args(out: Path, data_root, cache, trials: int, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "benchmark", "tune", "--method", "mets[lm=tfidf]", "--trials", str(trials),
            "--out", str(out), "--data-root", str(data_root), "--cache-dir", str(cache), "--no-progress",
            "--pruner", "none", *extra]
    for k, v in TINY.items():
        args += ["--set", f"{k}={v}"]
    for s in SPACE:
        args += ["--space", s]
    return args


# ------------------------------------------------------------------------------------------
# cheap checks (no data)
# ------------------------------------------------------------------------------------------
def test_unknown_search_parameter_is_an_error(tmp_path):
    from benchmark.tune.tuner import Tuner

    with pytest.raises(UserError, match="unknown search parameter for 'mets' 'temprature'.*temperature"):
        Tuner("mets", space=["temprature=0.01..0.1"], out=tmp_path)
    with pytest.raises(UserError, match="'..'|range|NAME=SPEC|expected"):
        Tuner("mets", space=["lr"], out=tmp_path)


def test_registered_space_with_a_typo_is_an_error(tmp_path, monkeypatch):
    from benchmark.tune import spaces as search_spaces
    from benchmark.tune.spaces import Param
    from benchmark.tune.tuner import Tuner

    monkeypatch.setitem(search_spaces.SPACES, "simclr", lambda: [Param.float("nosie_std", 0.0, 0.2)])
    with pytest.raises(UserError, match="nosie_std.*noise_std"):
        Tuner("simclr", out=tmp_path)


def test_nothing_to_tune(tmp_path):
    from benchmark.tune.tuner import Tuner

    with pytest.raises(UserError, match="nothing to tune for 'random-init'"):
        Tuner("random-init", out=tmp_path)
    with pytest.raises(UserError, match="no text tower"):
        Tuner("simclr", objective="zero-shot", out=tmp_path)


def test_fixed_settings_leave_the_space(tmp_path):
    from benchmark.tune.tuner import Tuner

    t = Tuner("mets[lm=tfidf,proj_dim=128]", space=["width=32", "lr=1e-3..1e-2"], out=tmp_path)
    names = {p.name for p in t.params}
    assert "proj_dim" not in names and "width" not in names and "lm" not in names
    assert t.fixed_method == {"lm": "tfidf", "proj_dim": 128, "width": 32}
    lr = next(p for p in t.params if p.name == "lr")
    assert (lr.low, lr.high, lr.log) == (1e-3, 1e-2, False)
    # the prompt template set only matters to zero-shot
    t2 = Tuner("mets", objective="linear-probe", out=tmp_path)
    assert "prompt_templates" not in {p.name for p in t2.params}


def test_parse_duration():
    from benchmark.cli.tune import parse_duration

    assert parse_duration("2h") == 7200 and parse_duration("90m") == 5400
    assert parse_duration("1h30m") == 5400 and parse_duration("45") == 45 and parse_duration(None) is None
    with pytest.raises(UserError):
        parse_duration("soon")


# ------------------------------------------------------------------------------------------
# real data, one process
# ------------------------------------------------------------------------------------------
def test_tuning_never_reads_test_and_best_config_reproduces(tmp_path, data_root, session_cache):
    from benchmark.config import build_config
    from benchmark.engine.runner import Runner
    from benchmark.paths import pretrained_dir
    from benchmark.tune.objective import validation_score

    tuner = tiny_tuner(tmp_path, data_root, session_cache)
    data = tuner.runner({}).dataset("ptbxl")
    before = dict(data.reads)
    tuner.optimize(2)
    counts = tuner.counts()
    assert counts.get("COMPLETE", 0) == 2, counts
    assert data.reads["test"] == before["test"], "tuning read the test split"
    assert data.reads["train"] > before["train"] and data.reads["val"] > before["val"]
    paths = tuner.write_outputs()
    assert (tuner.out / "trials.csv").is_file() and (tuner.out / "figures" / "optimization_history.png").is_file()

    # the best config, re-run through the harness path from scratch, gives the same val metric
    best = tuner.best_trial()
    cfg = build_config("quick", paths["best config"])
    assert cfg["methods"] == [best.user_attrs["method"]]
    shutil.rmtree(pretrained_dir(Path(session_cache), best.user_attrs["pretrain_hash"]))
    runner = Runner(cfg, data_root=data_root, cache_dir=session_cache, out=tmp_path / "rerun", progress=False)
    runner.store = None
    runner._save_history = lambda *a, **k: None
    model, h = runner.pretrained(cfg["methods"][0], int(cfg["seeds"][0]))
    assert h == best.user_attrs["pretrain_hash"]
    value = validation_score(model, runner.dataset("ptbxl"), objective="zero-shot", task="superdiagnostic",
                             template_set=cfg["prompt_templates"])
    assert value == pytest.approx(best.value, abs=1e-6)


def test_objective_runs_inside_the_test_guard(tmp_path, data_root, session_cache, monkeypatch):
    """A scoring function that reaches for the test split makes the trial raise, not pass."""
    from benchmark.data.base import SplitAccessError
    from benchmark.tune.tuner import Tuner

    def cheating_score(self, runner, method):
        data = runner.dataset("ptbxl")
        data.batch(data.split_indices("test")[:4])
        return 1.0

    monkeypatch.setattr(Tuner, "score", cheating_score)
    tuner = tiny_tuner(tmp_path, data_root, session_cache)
    with pytest.raises(SplitAccessError):
        tuner.optimize(1)


# ------------------------------------------------------------------------------------------
# several worker processes on one embedded (journal file) storage
# ------------------------------------------------------------------------------------------
def _load(out: Path):
    import optuna

    from benchmark.tune.storage import make_storage

    storage = make_storage(str(out / "journal.log"), heartbeat=1, grace=3)
    names = optuna.get_all_study_names(storage)
    assert len(names) == 1, names
    return optuna.load_study(study_name=names[0], storage=storage)


def _env(cache):
    env = dict(os.environ, ECGBENCH_CACHE_DIR=str(cache), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture()
def prepared(tmp_path, data_root, session_cache):
    """Build the prepared store in this process so worker processes only read it."""
    tiny_tuner(tmp_path, data_root, session_cache).runner({}).dataset("ptbxl")
    return session_cache


@pytest.mark.slow
def test_two_workers_complete_exactly_n_trials(tmp_path, data_root, prepared):
    from optuna.trial import TrialState

    out, n = tmp_path / "shared-study", 4
    procs = [subprocess.Popen(cli_args(out, data_root, prepared, n), cwd=REPO, env=_env(prepared),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    study = _load(out)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == n, [(t.number, t.state.name, t.user_attrs) for t in study.trials]
    assert len({t.number for t in done}) == n
    # both workers did trials (each logs its own)
    assert all("val zero-shot macro AUROC" in log for log in logs), logs
    # no trial left running, nothing failed except declined extras (if any)
    for t in study.trials:
        assert t.state != TrialState.RUNNING
        if t.state == TrialState.FAIL:
            assert "skipped" in t.user_attrs, t.user_attrs


@pytest.mark.slow
def test_killed_worker_trial_is_retried(tmp_path, data_root, prepared):
    import optuna
    from optuna.trial import TrialState

    out, n = tmp_path / "kill-study", 2
    # 3 epochs of 2 steps: long enough to be caught mid-trial
    slow = ["--set", "method_settings.epochs=3", "--heartbeat", "1", "--grace", "3"]
    a = subprocess.Popen(cli_args(out, data_root, prepared, n, *slow), cwd=REPO, env=_env(prepared),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = None
    deadline = time.time() + 300
    try:
        while time.time() < deadline and victim is None:
            time.sleep(0.5)
            if not (out / "journal.log").is_file():
                continue
            try:
                study = _load(out)
            except (AssertionError, KeyError, optuna.exceptions.OptunaError):
                continue
            running = study.get_trials(states=(TrialState.RUNNING,))
            # wait for its first heartbeat: the trial is really under way
            if running and "ecgbench:heartbeat" in running[0].system_attrs:
                victim = running[0].number
        assert victim is not None, "no trial started"
        os.kill(a.pid, signal.SIGKILL)
    finally:
        a.wait(timeout=60)
    time.sleep(4)  # beyond the grace period: the victim is now stale
    b = subprocess.run(cli_args(out, data_root, prepared, n, *slow), cwd=REPO, env=_env(prepared),
                       capture_output=True, text=True, timeout=600)
    assert b.returncode == 0, b.stdout + b.stderr
    study = _load(out)
    trials = {t.number: t for t in study.trials}
    assert trials[victim].state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim]
    assert retries and retries[0].params == trials[victim].params
    assert retries[0].state == TrialState.COMPLETE
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == n
    assert not study.get_trials(states=(TrialState.RUNNING,))
