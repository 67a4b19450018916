"""``python -m benchmark bench``: the table, the CSV, and the measurements behind them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.cli import main as cli_main


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x)) and np.isfinite(float(x))


def test_flop_count_of_one_conv_is_analytic():
    """FlopCounterMode's forward+backward count of a bias-free conv equals 2*Cin*Cout*k*L*B per
    pass, three passes (forward, grad of input, grad of weight)."""
    from benchmark.bench import train_step_flops

    conv = torch.nn.Conv1d(4, 6, 3, padding=1, bias=False)
    x = torch.randn(2, 4, 50, requires_grad=True)
    flops = train_step_flops(conv, x, "fp32", torch.device("cpu"))
    assert flops == 3 * 2 * 4 * 6 * 3 * 50 * 2


def test_bench_smoke_arithmetic_figure_writes_csv(tmp_path, capsys):
    """Fast: figure 3 only, tiny encoder: one table printed, CSV with finite ratios."""
    out = tmp_path / "bench"
    rc = cli_main(["bench", "--quick", "--skip", "1,2,4,5,6,7", "--encoder", "resnet1d-tiny[width=8]",
                   "--device", "cpu", "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "matmul peak fp32" in printed and "bench.csv" in printed
    df = pd.read_csv(out / "bench.csv")
    assert len(df) == 4  # 100/500 Hz x fp32/bf16
    assert df["ratio"].map(_finite).all() and (df["ratio"] > 0).all()
    assert (out / "bench.json").is_file()


@pytest.mark.slow
def test_bench_quick_has_every_figure(tmp_path, data_root, session_cache):
    """``bench --quick`` end to end (about 4-5 minutes on 2 cores): all seven figures, finite ratios."""
    import os

    cache = tmp_path / "cache"
    cache.mkdir()
    (session_cache / "stores").mkdir(exist_ok=True)
    os.symlink(session_cache / "stores", cache / "stores")
    out = tmp_path / "bench"
    rc = cli_main(["bench", "--quick", "--device", "cpu", "--out", str(out), "--cache-dir", str(cache),
                   "--data-root", str(data_root), "--delete-synthetic"])
    assert rc == 0
    df = pd.read_csv(out / "bench.csv")
    figures = set(df["figure"].str[0])
    assert figures == {"1", "2", "3", "4", "5", "6", "7"}
    measured = df[~df["note"].fillna("").str.startswith("not measured")]
    assert measured["ratio"].map(_finite).all()
    assert len(df[df["figure"].str.startswith("2")]) == 2  # minilm and random-bert
    assert not (cache / "bench").exists()  # --delete-synthetic
