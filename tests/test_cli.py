"""The command line as a user meets it: help, listing, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
