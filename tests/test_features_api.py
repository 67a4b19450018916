"""The time-resolved features API end to end on real data: the ResNet1d grid is exact (the samples
that move a position are exactly its declared field), a time in a beat-centred MIT-BIH window
reads the feature at the beat, the run's embedding memo keys readouts apart, and bad readouts get
one line before any compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.config import build_config
from benchmark.encoders import create_encoder
from benchmark.engine.runner import Runner
from benchmark.errors import UserError
from benchmark.registry import METHODS, load_builtin_plugins

from test_encoder_conformance import gradient_support

load_builtin_plugins()


@pytest.mark.parametrize("name", ["resnet1d-tiny", "resnet1d-18"])
def test_resnet_field_is_exactly_the_declared_one(name):
    torch.manual_seed(0)
    model = create_encoder(name).double().eval()
    n = int(2 * model.receptive_field + 8 * model.stride)
    for j in (model.n_positions(n) // 2, model.n_positions(n) // 2 + 1):
        lo, hi = model.field_of(j)
        assert model.centre_of(j) == j * 32
        assert np.array_equal(gradient_support(model, j, n), np.arange(lo, hi + 1))


@pytest.fixture(scope="module")
def tiny():
    return METHODS.create("simclr", encoder="resnet1d-tiny", device="cpu", seed=0)


def test_a_beat_centred_window_reads_the_feature_at_the_beat(tiny, data_root, session_cache):
    """MIT-BIH windows are centred on their beat: at=window/2 is the position over the R peak, and it
    differs from the global mean (the readout is not the pool in disguise)."""
    from benchmark.data.store import prepare

    ds = prepare("mitbih", data_root, session_cache, fs=100, progress=False)
    idx = ds.split_indices("train")[:16]
    half = ds.n_samples / ds.fs / 2
    grid = tiny.feature_grid(ds.n_samples, ds.fs)
    beat = int(np.argmin(np.abs(np.asarray(grid["centres_s"]) - half)))
    fmap = tiny.encode_ecg(ds, idx, pooled=False)
    np.testing.assert_allclose(tiny.encode_ecg(ds, idx, at=half), fmap[:, :, beat], rtol=1e-5, atol=1e-6)
    span = tiny.encode_ecg(ds, idx, at=half, span=0.5)
    around = [j for j, c in enumerate(grid["centres_s"]) if abs(c - half) <= 0.25]
    assert len(around) >= 2
    np.testing.assert_allclose(span, fmap[:, :, around].mean(-1), rtol=1e-5, atol=1e-6)
    assert not np.allclose(tiny.encode_ecg(ds, idx, at=half), tiny.encode_ecg(ds, idx), atol=1e-3)


def test_bad_readouts_are_one_line_errors(tiny, ptbxl_set):
    idx = ptbxl_set.split_indices("val")[:2]
    with pytest.raises(UserError, match="at=12 s must lie in the 10 s window"):
        tiny.encode_ecg(ptbxl_set, idx, at=12.0)
    with pytest.raises(UserError, match="span= needs at="):
        tiny.encode_ecg(ptbxl_set, idx, span=1.0)
    with pytest.raises(UserError, match="pooled=True"):
        tiny.encode_ecg(ptbxl_set, idx, at=1.0, pooled=False)


def test_the_run_memo_keeps_pooled_maps_and_readouts_apart(tiny, ptbxl_set, data_root, session_cache, tmp_path):
    runner = Runner(build_config("quick", None, {}), data_root=data_root, cache_dir=session_cache, out=tmp_path,
                    progress=False)
    calls = []
    real = tiny.encode_ecg

    def counting(data, idx, **kw):
        calls.append((len(idx), tuple(sorted(kw))))
        return real(data, idx, **kw)

    tiny.encode_ecg = counting
    try:
        embed = runner.embed_fn(tiny, "h")
        a, b = ptbxl_set.split_indices("test")[:6], ptbxl_set.split_indices("test")[3:9]
        z = embed(ptbxl_set, a)
        m = embed(ptbxl_set, a, pooled=False)
        r = embed(ptbxl_set, a, at=5.0)
        assert z.shape == (6, tiny.embedding_dim) and m.ndim == 3 and r.shape == z.shape
        np.testing.assert_allclose(m.mean(-1), z, rtol=1e-5, atol=1e-6)
        assert not np.allclose(r, z)
        z2 = embed(ptbxl_set, b)  # rows 3-5 memoised: only 3 new rows are encoded
        np.testing.assert_array_equal(z2[:3], z[3:])
        assert calls == [(6, ()), (6, ("pooled",)), (6, ("at",)), (3, ())]
    finally:
        del tiny.encode_ecg
