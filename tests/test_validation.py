"""Every input checked before any compute (issue 20): task names per dataset, seeds and fraction
grammar, empty plans, the plan table; and runs that record themselves (config.yaml, command.txt,
--print-config, a run started from its recorded config plans the same jobs)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark.cli import main
from benchmark.config import build_config, parse_fractions, parse_seeds
from benchmark.engine.runner import Runner
from benchmark.errors import UserError
from benchmark.results import ResultStore

REPO = Path(__file__).resolve().parent.parent


def _cli(*argv, env_cache=None):
    env = dict(os.environ)
    if env_cache is not None:
        env["ECGBENCH_CACHE_DIR"] = str(env_cache)
    return subprocess.run([sys.executable, "-m", "benchmark", *argv], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300)


def _one_line_error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.mark.parametrize("dry", [False, True])
def test_task_typo_stops_before_any_data_or_pretraining(tmp_path, data_root, dry):
    cache, out = tmp_path / "cache", tmp_path / "out"
    argv = ["run", "--methods", "mets", "--protocols", "zero-shot", "--tasks", "superdiag", "--seeds", "5",
            "--data-root", str(data_root), "--cache-dir", str(cache), "--out", str(out), "--no-progress"]
    msg = _one_line_error(_cli(*argv, *(["--dry-run"] if dry else []), env_cache=cache))
    assert "superdiag'" in msg and "Did you mean superdiagnostic" in msg
    assert not (cache / "pretrained").exists() and not (cache / "stores").exists()
    assert not any(cache.rglob("*.pt"))
    assert not out.exists()  # nothing recorded for a run that never started


def test_cross_dataset_tasks_are_checked_against_the_dataset_and_its_annotator():
    with pytest.raises(UserError, match=r"unknown cinc2017 task 'rythm'.*Did you mean rhythm"):
        build_config("quick", None, {"cinc_tasks": "rythm"})
    # the quick profile reads MIT-BIH with the PVC annotator, which has no AAMI labels
    with pytest.raises(UserError, match=r"unknown mitbih task 'aami'.*pvc task only"):
        build_config("quick", None, {"mitbih_tasks": "aami"})
    assert build_config("shared", None, {"mitbih_tasks": "aami,pvc"})["mitbih_tasks"] == ["aami", "pvc"]


def test_seed_and_fraction_grammar():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("0-2") == [0, 1, 2]
    assert parse_seeds("0-2,5,1") == [0, 1, 2, 5]
    assert parse_seeds([3, 1]) == [3, 1]
    assert parse_fractions("0.01,0.1,1.0") == [0.01, 0.1, 1.0]
    assert parse_fractions("1%,10%") == [0.01, 0.1]
    assert parse_fractions("1%,0.5,100%") == [0.01, 0.5, 1.0]
    for bad in ("a", "2-0", "0-", "-1", "1.5", ""):
        with pytest.raises(UserError, match="seeds"):
            parse_seeds(bad)
    for bad in ("0", "150%", "1.5", "-0.1", "x%", "ten", "nan", ""):
        with pytest.raises(UserError, match="label fractions"):
            parse_fractions(bad)


@pytest.mark.parametrize("flag,value,culprit", [
    ("--seeds", "0-x", "'0-x' is not a seed"), ("--seeds", "3-1", "3-1"),
    ("--label-fractions", "150%", "150%"), ("--label-fractions", "1%,ten", "'ten'"),
])
def test_bad_seeds_and_fractions_are_one_line_errors(tmp_path, data_root, flag, value, culprit):
    msg = _one_line_error(_cli("run", "--dry-run", flag, value, "--data-root", str(data_root),
                               "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")))
    assert culprit in msg


def test_seed_ranges_and_percentages_plan_the_right_jobs(tmp_path, data_root, capsys):
    argv = ["run", "--dry-run", "--list-jobs", "--methods", "random-init", "--protocols", "few-label",
            "--tasks", "superdiagnostic", "--seeds", "0-2", "--label-fractions", "1%,10%",
            "--data-root", str(data_root), "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    table, jobs = out.split("\njobs:\n", 1)
    jobs = [line.strip() for line in jobs.splitlines() if line.strip()]
    # 3 seeds x 2 fractions x 2 modes (linear-probe, fine-tune)
    assert len(jobs) == 12
    assert {j.split()[1] for j in jobs} == {"seed=0", "seed=1", "seed=2"}
    assert {j.split()[-1] for j in jobs} == {"0.01", "0.1"}
    row = next(line for line in table.splitlines() if line.startswith("few-label"))
    assert row.split()[1:] == ["random-init", "12", "0", "12"]
    assert "no earlier timings" in table
    cfg = build_config("quick", None, {"seeds": "0-2", "label_fractions": "1%,10%"})
    assert cfg["seeds"] == [0, 1, 2] and cfg["label_fractions"] == [0.01, 0.1]


@pytest.mark.parametrize("dry", [False, True])
def test_a_plan_with_nothing_to_run_is_an_error(tmp_path, data_root, dry):
    cache = tmp_path / "cache"
    # random-init has no text tower: zero-shot plans nothing for it
    msg = _one_line_error(_cli("run", "--methods", "random-init", "--protocols", "zero-shot",
                               "--data-root", str(data_root), "--cache-dir", str(cache),
                               "--out", str(tmp_path / "o"), *(["--dry-run"] if dry else []), env_cache=cache))
    assert "nothing to run" in msg and "random-init" in msg and "text tower" in msg
    assert not (cache / "stores").exists()


def test_unknown_cross_dataset_and_the_mitdb_alias():
    with pytest.raises(UserError, match="Did you mean cinc2017"):
        build_config("quick", None, {"cross_datasets": "cinc2071"})
    assert build_config("quick", None, {"cross_datasets": "mitdb"})["cross_datasets"] == ["mitbih"]


def test_print_config_is_yaml_of_the_resolved_config(capsys):
    assert main(["run", "--print-config", "--seeds", "0-1", "--label-fractions", "10%",
                 "--set", "n_boot=7", "--tasks", "rhythm"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    cfg = build_config("quick", None, {"seeds": "0-1", "label_fractions": "10%", "n_boot": "7",
                                       "zero_shot_tasks": "rhythm", "few_label_tasks": "rhythm"})
    assert printed == cfg
    assert printed["seeds"] == [0, 1] and printed["label_fractions"] == [0.1] and printed["n_boot"] == 7


TINY = ["--no-progress", "--methods", "random-init", "--protocols", "few-label", "--tasks", "superdiagnostic",
        "--label-fractions", "10%", "--seeds", "0", "--set", "few_label_modes=linear-probe",
        "--set", "method_settings.encoder=resnet1d-tiny", "--set", "n_boot=20", "--set", "panel_examples=0",
        "--device", "cpu"]


def test_a_run_records_its_config_and_command_and_replays_from_them(tmp_path, data_root, session_cache, capsys):
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        argv = ["run", *TINY, "--profile", "quick", "--data-root", str(data_root),
                "--cache-dir", str(session_cache), "--out", str(out)]
        assert main(argv) == 0
        rows = ResultStore(out).load_rows()
        assert len(rows) > 0
        for name in ("config.yaml", "command.txt"):
            mode = stat.S_IMODE((out / name).stat().st_mode)
            assert mode == 0o644, (name, oct(mode))
        recorded = yaml.safe_load((out / "config.yaml").read_text())
        commands = (out / "command.txt").read_text()
        assert commands.count("python -m benchmark run ") == 1
        assert f"cd {os.getcwd()}" in commands or f"cd '{os.getcwd()}'" in commands
        assert "--label-fractions 10%" in commands and "few_label_modes=linear-probe" in commands

        # the recorded config is the resolved one, and a run started from it plans the same jobs
        first = Runner(build_config("quick", None, {
            "methods": "random-init", "protocols": "few-label", "zero_shot_tasks": "superdiagnostic",
            "few_label_tasks": "superdiagnostic", "label_fractions": "10%", "seeds": "0",
            "few_label_modes": "linear-probe", "method_settings.encoder": "resnet1d-tiny", "n_boot": "20",
            "panel_examples": "0", "device": "cpu"}), data_root=data_root, out=out, progress=False)
        assert recorded == first.cfg
        replay_cfg = build_config(None, out / "config.yaml")
        assert replay_cfg == first.cfg
        replay = Runner(replay_cfg, data_root=data_root, out=out, progress=False)
        assert [replay.job_id(j) for j in replay.plan()] == [first.job_id(j) for j in first.plan()]

        # replaying through the command line: nothing left to run, a second command recorded
        capsys.readouterr()
        assert main(["run", "--config", str(out / "config.yaml"), "--no-progress", "--data-root", str(data_root),
                     "--cache-dir", str(session_cache), "--out", str(out)]) == 0
        assert len(ResultStore(out).load_rows()) == len(rows)
        commands = (out / "command.txt").read_text()
        assert commands.count("python -m benchmark run ") == 2 and "--config" in commands.splitlines()[-1]
        assert yaml.safe_load((out / "config.yaml").read_text()) == recorded

        # the dry run of the finished folder: everything done, an estimate from its timings
        capsys.readouterr()
        assert main(["run", "--config", str(out / "config.yaml"), "--dry-run", "--data-root", str(data_root),
                     "--cache-dir", str(session_cache), "--out", str(out)]) == 0
        table = capsys.readouterr().out
        row = next(line for line in table.splitlines() if line.startswith("few-label"))
        assert row.split()[1:] == ["random-init", "1", "1", "0"]
        assert "estimate: about" in table
    finally:
        os.umask(old)
