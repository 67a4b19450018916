"""One contract for every registered ECG encoder (a plug-in's too: ``--ecgbench-plugin FILE.py``).

The time-resolved features API: ``features(x)`` is [N, D, T'] with T' = ``n_positions(T)``, its
mean over time is ``forward(x)`` (the pooled features every protocol reads), ``forward(x,
pooled=False)`` is the map, and the declared grid is true: the input samples whose gradient
reaches position ``j`` lie inside the declared receptive field, centred on ``offset + j * stride``
(measured with float64 gradients summed over random inputs, so a wrong stride, offset or field
fails). ``position_of`` inverts ``centre_of`` and clips at the edges.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.encoders import ECGEncoder, check_encoder, create_encoder
from benchmark.errors import UserError
from benchmark.registry import ECG_ENCODERS, load_builtin_plugins

load_builtin_plugins()


def gradient_magnitude(model, j: int, n_samples: int, draws: int = 3) -> np.ndarray:
    """|d position j / d input sample|, summed over leads, channels and ``draws`` random inputs."""
    acc = torch.zeros(n_samples, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    for _ in range(draws):
        x = torch.randn(1, model.in_leads, n_samples, dtype=torch.float64, generator=gen, requires_grad=True)
        model.features(x)[0, :, j].sum().backward()
        acc += x.grad.abs().sum(dim=(0, 1))
    return acc.numpy()


def gradient_support(model, j: int, n_samples: int, draws: int = 3) -> np.ndarray:
    """Input samples whose value moves feature position ``j`` (union over ``draws`` inputs)."""
    return np.flatnonzero(gradient_magnitude(model, j, n_samples, draws) > 0)


@pytest.mark.parametrize("name", ECG_ENCODERS.list())
def test_time_resolved_features_pool_to_forward(name):
    torch.manual_seed(0)
    model = create_encoder(name).eval()
    assert isinstance(model, ECGEncoder) and int(model.stride) >= 1 and int(model.receptive_field) >= 0
    for n in (1000, 250):  # 10 s and 2.5 s at 100 Hz
        x = torch.randn(2, model.in_leads, n)
        with torch.no_grad():
            h = model.features(x)
            pooled = model(x)
            again = model(x, pooled=False)
        assert h.shape == (2, model.dim, model.n_positions(n))
        assert torch.equal(h, again)
        torch.testing.assert_close(h.mean(dim=-1), pooled, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ECG_ENCODERS.list())
def test_declared_grid_matches_the_gradients(name):
    torch.manual_seed(0)
    model = create_encoder(name).double().eval()
    if not model.receptive_field:  # attention: every sample moves every position; the position's own
        n = 24 * model.stride      # stretch of input (its patch) moves it most, through the residual path
        j = model.n_positions(n) // 2
        g = np.convolve(gradient_magnitude(model, j, n), np.ones(model.stride), mode="valid")
        centre = int(np.argmax(g)) + (model.stride - 1) / 2
        assert abs(centre - model.centre_of(j)) <= model.stride / 2, (
            f"position {j} is moved most by samples centred on {centre:g}, the declared grid says {model.centre_of(j)}")
        return
    n = int(2 * model.receptive_field + 8 * model.stride)
    j = model.n_positions(n) // 2  # a middle position: its field lies inside the input
    support = gradient_support(model, j, n)
    lo, hi = model.field_of(j)
    assert 0 <= lo and hi < n, "test input too short for the declared field"
    assert len(support) and lo <= support.min() and support.max() <= hi, (
        f"position {j} is moved by samples {support.min()}..{support.max()}, outside the declared field {lo}..{hi}")
    centre = (support.min() + support.max()) / 2
    assert abs(centre - model.centre_of(j)) <= model.stride / 2, (
        f"position {j} is centred on sample {centre:g}, the declared grid says {model.centre_of(j)}")


@pytest.mark.parametrize("name", ECG_ENCODERS.list())
def test_position_of_inverts_centre_of(name):
    model = create_encoder(name)
    n = max(1000, 8 * int(model.stride))  # at least 8 positions (ECGFounder's stride is 256 samples)
    positions = np.arange(model.n_positions(n))
    assert np.array_equal(model.position_of(model.centre_of(positions), n), positions)
    assert model.position_of(-10**6, n) == 0 and model.position_of(10**6, n) == positions[-1]
    inside = model.positions_within(model.centre_of(2), model.centre_of(4), n)
    assert list(inside) == [2, 3, 4]


def test_an_encoder_without_the_contract_is_refused_in_one_line():
    class Pooled(torch.nn.Module):  # an old-style encoder: [N, 12, T] -> [N, D] only
        dim = 8

        def forward(self, x):
            return x.mean(-1)[:, :8]

    with pytest.raises(UserError, match="lacks the encoder contract.*features"):
        check_encoder(Pooled(), "pooled-only")
