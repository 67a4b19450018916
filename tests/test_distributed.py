"""Distributed data parallel on this machine: 2 CPU processes with gloo vs one process.

The engine is PyTorch's own (``torch.distributed`` + ``DistributedDataParallel``, see
``benchmark.distributed``). Two checks, both at the same global batch:

* exact: a model without batch norm trained with the gathered CLIP and NT-Xent losses through
  ``fit`` ends with the same weights and loss history in 2 processes as in 1 (up to float
  summation order) -- this pins the sharding of the seeded permutation, DDP's gradient average
  and the gradient of the cross-rank gather;
* end to end: ``torchrun --nproc-per-node 2 -m benchmark run`` pretrains METS and writes results
  from rank 0 only; its pretraining history and its zero-shot results match a single-process run
  within a tolerance set by batch norm (each rank normalises its own half-batch, as DDP does).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Data:
    """A tiny in-memory ECGSet stand-in: ``batch(idx, device)`` and a text-side table."""

    def __init__(self, n=48, t=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 12, t, generator=g)
        self.txt = torch.randn(n, 16, generator=g)
        self.noise = 0.1 * torch.randn(n, 12, t, generator=g)

    def __len__(self):
        return len(self.x)

    def batch(self, idx, device=None):
        return self.x[torch.as_tensor(idx)].to(device or "cpu")


class _TwoTower(nn.Module):
    """Conv ECG tower and linear text tower, no batch norm (so DDP must match exactly)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(12, 8, 5, padding=2)
        self.ecg = nn.Linear(8, 8)
        self.txt = nn.Linear(16, 8)
        self.proj = nn.Linear(8, 8)  # NT-Xent's projector


def _train(loss_name: str, out: str | None) -> dict:
    from benchmark.losses import clip_loss, nt_xent
    from benchmark.training import fit

    data = _Data()
    model = _TwoTower()
    del model._modules["proj" if loss_name == "clip" else "txt"]  # DDP: every parameter gets a gradient

    def step(batch):
        h = model.ecg(torch.relu(model.conv(batch.x)).mean(-1))
        if loss_name == "clip":
            return clip_loss(h, model.txt(data.txt[torch.as_tensor(batch.idx)]), 10.0)
        # the second view is a fixed per-example perturbation (augmentations drawn from a rank's
        # generator differ from a single process's draws, by design)
        h2 = model.ecg(torch.relu(model.conv(batch.x + data.noise[torch.as_tensor(batch.idx)])).mean(-1))
        return nt_xent(model.proj(h), model.proj(h2), 0.5)

    hist = fit(model, step, data, np.arange(40), np.arange(40, 48), epochs=3, batch_size=8, lr=1e-2,
               seed=3, device="cpu", precision="fp32", progress=False)
    res = {"history": [h["train_loss"] for h in hist], "val": [h["val_loss"] for h in hist],
           "state": {k: v.clone() for k, v in model.state_dict().items()}}
    if out is not None:
        torch.save(res, out)
    return res


def _worker(rank: int, world: int, port: int, loss_name: str, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _train(loss_name, out if rank == 0 else None)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("loss_name", ["clip", "nt_xent"])
def test_two_gloo_processes_match_one_process_exactly(loss_name, tmp_path):
    import torch.multiprocessing as mp

    single = _train(loss_name, None)
    out = str(tmp_path / "rank0.pt")
    mp.spawn(_worker, args=(2, _free_port(), loss_name, out), nprocs=2, join=True)
    dist = torch.load(out)
    np.testing.assert_allclose(dist["history"], single["history"], rtol=1e-5)
    np.testing.assert_allclose(dist["val"], single["val"], rtol=1e-5)
    for k, v in single["state"].items():
        torch.testing.assert_close(dist["state"][k], v, rtol=1e-4, atol=1e-5)


def _bench_run(cmd_prefix: list[str], out: Path, cache: Path, session_cache: Path, data_root: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    for shared in ("stores", "text-embeddings"):  # prepared data and LM cache are shared; models are not
        (session_cache / shared).mkdir(exist_ok=True)
        os.symlink(session_cache / shared, cache / shared)
    args = [
        "-m", "benchmark", "run", "--methods", "mets", "--protocols", "zero-shot", "--tasks", "superdiagnostic",
        "--set", "method_settings.encoder=resnet1d-tiny", "--set", "method_settings.width=8",
        "--set", "method_settings.epochs=2", "--set", "method_settings.batch_size=32",
        "--set", "n_boot=10", "--set", "panel_examples=0", "--device", "cpu",
        "--data-root", str(data_root), "--cache-dir", str(cache), "--out", str(out), "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    res = subprocess.run(cmd_prefix + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.slow
def test_torchrun_two_processes_pretrain_mets_like_one(tmp_path, data_root, session_cache, ptbxl_set):
    """``torchrun --nproc-per-node 2 -m benchmark run`` (gloo): rank 0 alone writes results; the
    METS pretraining history and zero-shot AUROC match the single-process run within the spread
    that per-rank batch norm introduces (each rank normalises its own half of the global batch)."""
    import pandas as pd

    _bench_run([sys.executable], tmp_path / "one", tmp_path / "c1", session_cache, data_root)
    _bench_run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-port", str(_free_port())], tmp_path / "two", tmp_path / "c2", session_cache, data_root)

    def history(out):
        files = sorted((out / "history").glob("*.parquet"))
        assert len(files) == 1, files  # one pretraining, written once (by rank 0)
        return pd.read_parquet(files[0]).sort_values("epoch")

    h1, h2 = history(tmp_path / "one"), history(tmp_path / "two")
    assert len(h1) == len(h2) == 2
    np.testing.assert_allclose(h2["train_loss"], h1["train_loss"], rtol=0.05)
    np.testing.assert_allclose(h2["val_loss"], h1["val_loss"], rtol=0.05)
    r1, r2 = (pd.read_csv(tmp_path / d / "results.csv") for d in ("one", "two"))
    pick = lambda r: r[(r.metric == "auroc") & r["class"].isna()]["value"].to_numpy()  # noqa: E731
    assert len(pick(r2)) == len(pick(r1)) == 1
    assert abs(pick(r2)[0] - pick(r1)[0]) < 0.1
    assert (tmp_path / "two" / "timings.json").is_file()
