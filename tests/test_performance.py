"""Issue 7 settings on CPU: mixed precision (bf16 autocast; the fp16 + GradScaler path),
torch.compile, the resident data path, and flat resident memory over a memory-mapped store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.errors import UserError
from benchmark.training import fit, resolve_precision


def _pretrain(method, data, n=32, val=8):
    tr = data.split_indices("train")[:n]
    va = data.split_indices("val")[:val]
    return method.pretrain(data, tr, va, progress=False)


def test_precision_rules():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(UserError, match="fp16"):
        resolve_precision("fp16", cpu)
    # a GPU without bf16 (V100, T4) gets fp16 (with a grad scaler in fit)
    orig = torch.cuda.is_bf16_supported
    try:
        torch.cuda.is_bf16_supported = lambda *a, **k: False
        assert resolve_precision("auto", cuda) == "fp16"
        with pytest.raises(UserError, match="bf16"):
            resolve_precision("bf16", cuda)
        torch.cuda.is_bf16_supported = lambda *a, **k: True
        assert resolve_precision("auto", cuda) == "bf16"
    finally:
        torch.cuda.is_bf16_supported = orig


def test_bf16_method_pretraining_on_cpu_is_close_to_fp32(ptbxl_set):
    """A METS-free method (SimCLR) pretrains in bf16 on CPU: finite losses, weights that moved,
    and a first-epoch loss close to the fp32 run's (autocast, not a different model)."""
    from baselines.simclr import SimCLR

    kw = dict(encoder="resnet1d-tiny", width=8, epochs=1, batch_size=16, device="cpu", seed=0)
    h32 = _pretrain(SimCLR(precision="fp32", **kw), ptbxl_set)
    m16 = SimCLR(precision="bf16", **kw)
    before = {k: v.clone() for k, v in m16.encoder.state_dict().items()}
    h16 = _pretrain(m16, ptbxl_set)
    assert m16.precision == "bf16"
    assert np.isfinite(h16[0]["train_loss"]) and np.isfinite(h16[0]["val_loss"])
    assert abs(h16[0]["train_loss"] - h32[0]["train_loss"]) < 0.05 * h32[0]["train_loss"]
    moved = [k for k, v in m16.encoder.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert moved
    assert all(v.dtype == torch.float32 for v in m16.encoder.state_dict().values() if v.dtype.is_floating_point)


def test_fp16_grad_scaler_path_runs(ptbxl_set, monkeypatch):
    """The fp16 branch (GradScaler: scale, unscale, clip, step, update) exercised on CPU, where
    torch supports fp16 autocast; on a GPU without bf16 it is the 'auto' choice."""
    import benchmark.training as training

    monkeypatch.setattr(training, "resolve_precision", lambda p, d: "fp16")
    torch.manual_seed(0)
    from benchmark.encoders import create_encoder

    enc = create_encoder("resnet1d-tiny", width=8)
    head = torch.nn.Linear(enc.dim, 5)
    model = torch.nn.Sequential(enc, head)
    y, valid = ptbxl_set.labels("superdiagnostic")
    tr = ptbxl_set.split_indices("train")
    tr = tr[valid[tr]][:16]
    yt = torch.from_numpy(y)
    seen = []

    def step(batch):
        logits = model(batch.x)
        seen.append(logits.dtype)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), yt[torch.as_tensor(batch.idx)])

    hist = fit(model, step, ptbxl_set, tr, None, epochs=3, batch_size=8, lr=1e-2, device="cpu",
               precision="fp16", grad_clip=1.0, progress=False)
    assert torch.float16 in seen
    assert all(np.isfinite(h["train_loss"]) for h in hist)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_torch_compile_matches_eager_on_cpu(ptbxl_set):
    """compile=True trains and embeds like the eager model (same seed, tolerance for fused kernels)."""
    from baselines.supervised import Supervised

    kw = dict(encoder="resnet1d-tiny", epochs=1, batch_size=16, device="cpu", seed=0, precision="fp32")
    eager, comp = Supervised(**kw), Supervised(compile=True, **kw)
    h_e, h_c = _pretrain(eager, ptbxl_set), _pretrain(comp, ptbxl_set)
    assert comp._compiled is not None
    assert h_c[0]["train_loss"] == pytest.approx(h_e[0]["train_loss"], rel=1e-3)
    idx = ptbxl_set.split_indices("val")[:8]
    np.testing.assert_allclose(comp.encode_ecg(ptbxl_set, idx), eager.encode_ecg(ptbxl_set, idx), rtol=1e-3, atol=1e-3)


def test_resident_data_matches_the_memory_map(ptbxl_set):
    from benchmark.data.base import SplitAccessError

    idx = np.array([5, 1, 40, 3])
    ref = ptbxl_set.batch(idx)
    try:
        ptbxl_set.to_device("cpu")
        assert ptbxl_set._resident.shape == (len(ptbxl_set), len(ptbxl_set.leads), ptbxl_set.n_samples)
        torch.testing.assert_close(ptbxl_set.batch(idx), ref, rtol=0, atol=0)
        before = dict(ptbxl_set.reads)
        ptbxl_set.batch(idx)
        assert sum(ptbxl_set.reads.values()) == sum(before.values()) + len(idx)  # still counted
        test = ptbxl_set.split_indices("test")[:2]
        with ptbxl_set.forbid("test"), pytest.raises(SplitAccessError):
            ptbxl_set.batch(test)  # the guard still holds
        ptbxl_set.to_device("cpu", dtype=torch.float16)
        assert ptbxl_set.resident_bytes(torch.float16) == ptbxl_set._resident.numel() * 2
        half = ptbxl_set.batch(idx)
        assert half.dtype == torch.float32
        torch.testing.assert_close(half, ref, rtol=2e-3, atol=2e-3)
    finally:
        ptbxl_set.to_device(None)
    torch.testing.assert_close(ptbxl_set.batch(idx), ref, rtol=0, atol=0)


def _rss_growth(ds, batch=32) -> float:
    from benchmark.bench.timing import rss_mb

    order = np.random.default_rng(0).permutation(len(ds))
    ds.batch(order[:batch])
    start, peak = rss_mb(), 0.0
    for s in range(0, len(order), batch):
        ds.batch(order[s : s + batch])
        peak = max(peak, rss_mb())
    return peak - start


def test_resident_memory_stays_flat_over_a_memory_mapped_store(tmp_path, monkeypatch):
    """An epoch's reads over a 115 MB 500 Hz store, right after it was written (page cache full):
    with the page release RSS grows by
    far less than the store; with the release switched off it grows by most of the store (so this
    test can fail; how much of the file the kernel maps around each row depends on its page cache)."""
    import benchmark.data.base as base
    from benchmark.bench.synthetic import synthetic_store
    from benchmark.data.store import open_store

    ds = synthetic_store(tmp_path, 500, fs=500)
    size_mb = ds.signals.nbytes / 2**20
    monkeypatch.setattr(base, "RELEASE_BYTES", 8 * 2**20)  # this store counts as large
    flat = _rss_growth(open_store(ds.path))
    monkeypatch.setattr(base.ECGSet, "release_pages", lambda self: None)
    grows = _rss_growth(open_store(ds.path))
    assert flat < 0.25 * size_mb, (flat, size_mb)
    assert grows > 0.4 * size_mb and grows > 2 * flat, (grows, flat, size_mb)
