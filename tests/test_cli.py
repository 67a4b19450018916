"""The command line as a user meets it: help, listing, one-line errors."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import COMMANDS, main

REPO = Path(__file__).resolve().parent.parent


def test_help_lists_every_subcommand_without_importing_torch():
    code = (
        "import sys; from benchmark.cli import build_parser; p = build_parser(); "
        "print(p.format_help()); print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in COMMANDS:
        assert name in out
    assert out.strip().endswith("NO-TORCH"), "python -m benchmark --help must stay light"


def test_list_json_has_methods_encoders_and_tasks(capsys):
    assert main(["list", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"mets", "simclr", "clocs", "supervised", "random-init"} <= set(info["methods"])
    assert info["encoders"]["resnet1d-18"]["parameters"] > 1_000_000
    assert {"minilm", "tfidf", "random-bert"} <= set(info["text-encoders"])
    assert "superdiagnostic" in info["datasets"]["ptbxl"]["tasks"]
    assert set(info["profiles"]) == {"quick", "shared", "paper"}


def test_bad_data_root_is_one_line_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "benchmark", "run", "--data-root", str(tmp_path / "nope"),
                        "--out", str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data root") and "nope" in lines[0]


def test_dry_run_plans_grid_variants(capsys):
    assert main(["run", "--dry-run", "--methods", "mets[lm=minilm|tfidf],random-init",
                 "--protocols", "zero-shot,few-label", "--tasks", "superdiagnostic",
                 "--label-fractions", "0.1", "--seeds", "0,1", "--list-jobs"]) == 0
    out = capsys.readouterr().out
    plan = out.split("\njobs:\n", 1)[1].splitlines()  # the job list after the plan table
    assert sum("mets[lm=tfidf]" in line for line in plan) == 2 * (1 + 2)  # 2 seeds x (zero-shot + probe + fine-tune)
    assert not any("random-init" in line and "zero-shot" in line for line in plan)


@pytest.mark.parametrize("command", [["run", "--methods", "random-init"], ["ablate", "mitbih-input", "--arm", "default"]])
def test_list_jobs_alone_lists_and_runs_nothing(tmp_path, data_root, command, capsys):
    """--list-jobs without --dry-run once ran the whole plan (ablate ignored it): it implies --dry-run."""
    out = tmp_path / "o"
    assert main([*command, "--list-jobs", "--profile", "quick", "--seeds", "0", "--data-root", str(data_root),
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "to do" in printed and "linear-probe" in printed  # the plan table and the job list
    assert not out.exists() or not any(out.rglob("*.parquet"))  # no job ran, no row written
    assert not (tmp_path / "cache" / "pretrained").exists()


def test_log_lines_never_glue_onto_a_progress_bar():
    code = (
        "import logging, sys\nfrom tqdm import tqdm\nfrom benchmark.cli import setup_logging\nsetup_logging()\n"
        "for i in tqdm(range(3), file=sys.stderr, desc='jobs', mininterval=0):\n"
        "    logging.getLogger('benchmark.run').info('message %d', i)\n"
    )
    err = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stderr
    logged = [line for line in err.split("\n") if "INFO benchmark.run: message" in line]
    assert len(logged) == 3
    for line in logged:  # what the terminal shows of the line: the text after the last carriage return
        assert re.match(r"\d\d:\d\d:\d\d INFO benchmark\.run: message \d$", line.rsplit("\r", 1)[-1]), repr(line)


def test_summary_is_the_headline_table_without_nan_or_text_ceiling():
    import pandas as pd

    from benchmark.engine.summary import headline_table

    def row(method, protocol, mode, dataset, task, frac, value, seed=0, cls=""):
        return dict(method=method, protocol=protocol, mode=mode, dataset=dataset, task=task, label_fraction=frac,
                    value=value, seed=seed, metric="auroc", **{"class": cls})

    nan = float("nan")
    rows = pd.DataFrame([
        row("mets", "text-ceiling", "report", "ptbxl", "superdiagnostic", nan, 0.99),
        row("simclr", "few-label", "linear-probe", "ptbxl", "superdiagnostic", 0.1, 0.70),
        row("simclr", "few-label", "linear-probe", "ptbxl", "superdiagnostic", 0.1, 0.80, seed=1),
        row("mets", "few-label", "linear-probe", "ptbxl", "superdiagnostic", 0.01, 0.6512),
        row("mets", "zero-shot", "zero-shot", "ptbxl", "rhythm", nan, 0.7),
        row("mets", "zero-shot", "zero-shot", "ptbxl", "superdiagnostic", nan, 0.75),
        row("mets", "zero-shot", "zero-shot", "ptbxl", "superdiagnostic", nan, 0.2, cls="NORM"),
        row("mets", "cross-dataset", "zero-shot", "mitbih", "pvc", 1.0, 0.61),
    ])
    text = headline_table(rows, ["mets", "simclr"], ["superdiagnostic", "rhythm"])
    lines = text.splitlines()
    header = lines[0].split()
    assert header[:3] == ["method", "zs", "superdiagnostic"]  # zero-shot first, in the run's task order
    assert lines[0].index("zs superdiagnostic") < lines[0].index("zs rhythm") < lines[0].index("probe 1%")
    assert lines[0].index("probe 1%") < lines[0].index("probe 10%")
    assert "NaN" not in text and "nan" not in text and "0.990" not in text  # text-ceiling excluded
    mets = next(line for line in lines if line.startswith("mets"))
    simclr = next(line for line in lines if line.startswith("simclr"))
    assert mets.split()[1:] == ["0.750", "0.700", "0.651", "-"]
    assert simclr.split()[1:] == ["-", "-", "-", "0.750"]  # mean over seeds
    assert "mitbih/pvc zs" in text  # cross-dataset in its own table
    assert headline_table(rows[rows.protocol == "text-ceiling"]) is None


def test_help_shows_every_default_and_the_singular_aliases():
    from benchmark.cli import build_parser
    from benchmark.protocols import protocols_in_order

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in ("run", "ablate", "tune"):
        for action in subs[name]._actions:
            if action.option_strings and action.help != argparse.SUPPRESS and "-h" not in action.option_strings:
                assert action.help, (name, action.option_strings)
                assert "default" in action.help or action.dest in ("list", "list_space", "summary_only",
                                                                   "dry_run", "list_jobs", "print_config"), \
                    (name, action.option_strings, action.help)
    run_help = subs["run"].format_help()
    for proto in protocols_in_order():
        assert proto.name in run_help  # text-ceiling too: the profile plans it
    assert "$ECGBENCH_CACHE_DIR" in run_help
    ns = parser.parse_args(["run", "--method", "mets", "--seed", "1", "--task", "rhythm", "--protocol", "zero-shot",
                            "--label-fraction", "1%"])
    assert (ns.methods, ns.seeds, ns.tasks, ns.protocols, ns.label_fractions) == ("mets", "1", "rhythm", "zero-shot",
                                                                                 "1%")
    ns = parser.parse_args(["tune", "--methods", "mets", "--seeds", "2", "--tasks", "rhythm"])
    assert (ns.method, ns.seed, ns.task) == ("mets", "2", "rhythm")
    assert "median" in subs["tune"].format_help().split("--pruner", 2)[-1]


def test_tune_plural_flags_take_one_value(capsys):
    for argv, word in ((["--methods", "mets,simclr"], "one method"), (["--methods", "mets[lm=tfidf|minilm]"], "2"),
                       (["--methods", "mets", "--seeds", "0-2"], "one seed"),
                       (["--methods", "mets", "--tasks", "superdiagnostic,rhythm"], "one task"),
                       (["--methods", "mets", "--tasks", "superdiag"], "Did you mean superdiagnostic")):
        assert main(["tune", *argv]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and word in err, (argv, err)


def test_console_script_is_ours_alone():
    """`ecgbench` is a PyPI package's command too (dataset splits, 2026): ours is named after the project."""
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    scripts = meta["project"]["scripts"]
    assert scripts == {meta["project"]["name"]: "benchmark.cli:main"} and "ecgbench" not in scripts
