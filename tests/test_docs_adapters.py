"""The worked-adapter commands of docs/checkpoints.md run as written, on files the tests write in
the authors' layouts (the published files are not shipped), with the tiny variants of the same
architectures and a small CinC 2017 evaluation."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from benchmark.cli import main
from benchmark.registry import ECG_ENCODERS, load_plugin
from benchmark.results import ResultStore

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "checkpoints.md").read_text()


def _commands(section: str) -> list[str]:
    """The shell commands of the code block under ``### section``."""
    body = DOC.split(f"### {section}", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"```\n(.*?)\n```", body, re.S).group(1)
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _run_documented(cmd: str, files: dict[str, str], tiny: str, out: Path, data_root, session_cache) -> None:
    args = shlex.split(cmd)
    assert args[:4] == ["python", "-m", "benchmark", "run"], cmd
    for name, path in files.items():
        args = [a.replace(name, path) for a in args]
    args = [re.sub(r"encoder=([a-z0-9-]+)", lambda m: f"encoder={tiny}", a) for a in args]
    args = [str(ROOT / a) if a.startswith("docs/examples/") else a for a in args]
    i = args.index("--protocols")
    args[i + 1] = "cross-dataset"  # the documented few-label,cross-dataset, kept small: CinC 2017 only
    rc = main([*args[3:], "--profile", "quick", "--seeds", "0", "--data-root", str(data_root), "--cache-dir",
               str(session_cache), "--out", str(out), "--no-progress", "--set", "cross_datasets=cinc2017",
               "--set", "cross_max_train=60", "--set", "cross_max_eval=60", "--set", "n_boot=20"])
    assert rc == 0
    rows = ResultStore(out).load_rows()
    assert len(rows) and rows["method"].str.startswith("checkpoint[").all()


def test_st_mem_documented_command_runs(tmp_path, data_root, session_cache):
    from test_adapters import ST_MEM, save_as_st_mem_pretrain

    load_plugin(str(ST_MEM))
    torch.manual_seed(0)
    enc = ECG_ENCODERS.create("st-mem-vit-tiny")
    path = save_as_st_mem_pretrain(dict(enc.state_dict()), tmp_path / "st_mem_vit_base_encoder.pth")
    (cmd,) = _commands("ST-MEM")
    _run_documented(cmd, {"st_mem_vit_base_encoder.pth": str(path)}, "st-mem-vit-tiny", tmp_path / "out",
                    data_root, session_cache)


def test_ecgfounder_documented_commands_run(tmp_path, data_root, session_cache):
    from test_adapter_ecgfounder import ADAPTER, _authors_file

    load_plugin(str(ADAPTER))
    torch.manual_seed(0)
    pth = _authors_file(tmp_path / "12_lead_ECGFounder.pth", ECG_ENCODERS.create("ecgfounder-tiny"))
    convert, run = _commands("ECGFounder")
    files = {"12_lead_ECGFounder.pth": str(pth), "12_lead_ECGFounder.safetensors": str(tmp_path / "w.safetensors")}
    args = shlex.split(convert)
    for name, path in files.items():
        args = [a.replace(name, path) for a in args]
    done = subprocess.run([sys.executable, *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    _run_documented(run, files, "ecgfounder-tiny", tmp_path / "out", data_root, session_cache)
