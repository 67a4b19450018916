"""ResNet1d family: shapes at 100/500 Hz, parameter counts against a hand formula, seeding."""

from __future__ import annotations

import pytest
import torch

from benchmark.encoders import ResNet1d, count_parameters, create_encoder
from benchmark.errors import UserError
from benchmark.registry import ECG_ENCODERS, load_builtin_plugins

load_builtin_plugins()

LAYERS = {"resnet1d-18": (2, 2, 2, 2), "resnet1d-34": (3, 4, 6, 3), "resnet1d-10": (1, 1, 1, 1), "resnet1d-tiny": (1, 1, 1, 1)}
WIDTH = {"resnet1d-18": 64, "resnet1d-34": 64, "resnet1d-10": 64, "resnet1d-tiny": 16}


def expected_params(layers, width, in_leads=12, k=7, stem_k=15) -> int:
    """Conv weights (no bias) + BatchNorm affine parameters, written out by hand."""
    n = in_leads * width * stem_k + 2 * width
    c_in = width
    for i, blocks in enumerate(layers):
        c_out = width * 2**i
        for b in range(blocks):
            ci = c_in if b == 0 else c_out
            n += ci * c_out * k + 2 * c_out + c_out * c_out * k + 2 * c_out
            if b == 0 and (i > 0 or ci != c_out):
                n += ci * c_out + 2 * c_out
        c_in = c_out
    return n


def test_registry_lists_the_family():
    assert set(LAYERS) <= set(ECG_ENCODERS.list("resnet1d-*"))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_shapes_and_parameter_counts(name):
    model = create_encoder(name).eval()
    assert model.dim == 8 * WIDTH[name]
    assert count_parameters(model) == expected_params(LAYERS[name], WIDTH[name])
    with torch.no_grad():
        out = model(torch.randn(3, 12, 1000))
    assert out.shape == (3, model.dim)
    assert torch.isfinite(out).all()


def test_any_length_leads_and_width():
    model = create_encoder("resnet1d-tiny", width=8, in_leads=1).eval()
    assert model.dim == 64
    with torch.no_grad():
        for t in (250, 500, 1000, 5000):  # 2.5 s / 5 s segments, 100 Hz and 500 Hz windows
            assert model(torch.randn(2, 1, t)).shape == (2, 64)
    assert count_parameters(model) == expected_params((1, 1, 1, 1), 8, in_leads=1)


def test_deeper_is_bigger_and_frozen_params_are_not_counted():
    counts = [count_parameters(create_encoder(n)) for n in ("resnet1d-tiny", "resnet1d-10", "resnet1d-18", "resnet1d-34")]
    assert counts == sorted(counts) and len(set(counts)) == 4
    m = create_encoder("resnet1d-tiny")
    total = count_parameters(m)
    m.stem.requires_grad_(False)
    assert count_parameters(m) < total == count_parameters(m, trainable_only=False)


def test_seeded_construction_is_deterministic():
    torch.manual_seed(3)
    a = create_encoder("resnet1d-tiny")
    torch.manual_seed(3)
    b = create_encoder("resnet1d-tiny")
    torch.manual_seed(4)
    c = create_encoder("resnet1d-tiny")
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_bad_input_and_settings():
    model = create_encoder("resnet1d-tiny")
    with pytest.raises(ValueError, match=r"\[N, 12, T\]"):
        model(torch.randn(2, 3, 100))
    with pytest.raises(UserError, match="odd"):
        ResNet1d((1, 1, 1, 1), kernel_size=6)
    with pytest.raises(UserError, match="unknown ECG encoder"):
        create_encoder("resnet1d-999")
