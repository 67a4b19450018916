"""Contrastive losses against hand-computed values, their symmetry, and that each method's loss
falls when optimised on a fixed real PTB-XL batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.losses import clip_loss, clocs_loss, gather_with_grad, nt_xent, supervised_loss

E = torch.eye(2)


def test_clip_loss_hand_computed():
    # identical orthonormal pairs, scale 1: logits = I, each row -log(e / (e + 1))
    assert clip_loss(E, E, 1.0).item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # b's second row is rotated: cos(a0,b1)=0.6, cos(a1,b1)=0.8, cos(a1,b0)=0; scale 2
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    s = 2.0
    # a -> b rows: [2, 1.2] (target 0), [0, 1.6] (target 1)
    ab = (math.log(math.exp(2) + math.exp(1.2)) - 2 + math.log(1 + math.exp(1.6)) - 1.6) / 2
    # b -> a rows: [2, 0] (target 0), [1.2, 1.6] (target 1)
    ba = (math.log(math.exp(2) + 1) - 2 + math.log(math.exp(1.2) + math.exp(1.6)) - 1.6) / 2
    assert clip_loss(a, b, s).item() == pytest.approx((ab + ba) / 2, abs=1e-6)
    # embeddings are normalised inside: scaling an input changes nothing
    assert clip_loss(3 * a, b, s).item() == pytest.approx(clip_loss(a, b, s).item(), abs=1e-6)


def test_clip_loss_is_symmetric_and_prefers_aligned_pairs():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    assert clip_loss(a, b, 10.0).item() == pytest.approx(clip_loss(b, a, 10.0).item(), abs=1e-6)
    assert clip_loss(a, a + 0.01 * b, 10.0) < clip_loss(a, b, 10.0)
    perm = torch.tensor([1, 0, 2, 3, 4, 5])
    assert clip_loss(a, a[perm], 10.0) > clip_loss(a, a, 10.0)


def test_nt_xent_hand_computed():
    # z1 = z2 = I, T = 1: each of 4 rows sees itself (excluded), the other example (cos 0, twice:
    # its two views) and its positive (cos 1): loss = -log(e / (e + 1 + 1))
    assert nt_xent(E, E, 1.0).item() == pytest.approx(math.log(math.e + 2) - 1, abs=1e-6)
    # T = 0.5 with a rotated second view: rows of z1 and z2 written out
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    t = 0.5
    sim = torch.cat([z1, z2]) @ torch.cat([z1, z2]).T / t  # [4, 4]
    rows = []
    for i, pos in enumerate([2, 3, 0, 1]):
        others = [sim[i, j].item() for j in range(4) if j != i]
        rows.append(math.log(sum(math.exp(v) for v in others)) - sim[i, pos].item())
    assert nt_xent(z1, z2, t).item() == pytest.approx(sum(rows) / 4, abs=1e-6)
    assert nt_xent(z1, z2, t).item() == pytest.approx(nt_xent(z2, z1, t).item(), abs=1e-6)


def test_clocs_equals_clip_with_one_positive_and_averages_group_positives():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    assert clocs_loss(a, b, 0.1).item() == pytest.approx(clip_loss(a, b, 10.0).item(), abs=1e-5)
    # two segments pairs from the same patient: rows 0 and 1 have two positives each
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    groups = torch.tensor([7, 7, 3])
    sim = z1 @ z2.T  # T = 1
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    by_row = [-(logp[0, 0] + logp[0, 1]) / 2, -(logp[1, 0] + logp[1, 1]) / 2, -logp[2, 2]]
    expected = sum(v.item() for v in by_row) / 3  # both directions are equal here (z1 == z2)
    assert clocs_loss(z1, z2, 1.0, groups).item() == pytest.approx(expected, abs=1e-6)


def test_gather_is_identity_without_a_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x


def test_supervised_loss_multi_and_single_label():
    logits = torch.tensor([[2.0, -1.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bce = -(math.log(1 / (1 + math.exp(-2))) + math.log(1 - 1 / (1 + math.exp(1))) + math.log(0.5) + math.log(1 / (1 + math.exp(-1)))) / 4
    assert supervised_loss(logits, y, True).item() == pytest.approx(bce, abs=1e-6)
    ce = (math.log(math.exp(2) + math.exp(-1)) - 2 + math.log(1 + math.e) - 1) / 2
    assert supervised_loss(logits, y, False).item() == pytest.approx(ce, abs=1e-6)


# -- the loss falls on a fixed real batch ----------------------------------------------------
@pytest.mark.parametrize("spec", ["mets[lm=tfidf]", "simclr", "clocs", "supervised"])
def test_loss_falls_on_a_fixed_real_batch(spec, ptbxl_set, tmp_path):
    from benchmark.registry import METHODS, load_builtin_plugins
    from benchmark.training import Batch

    load_builtin_plugins()
    torch.manual_seed(0)
    m = METHODS.create(spec, encoder="resnet1d-tiny", device="cpu", seed=0, cache_dir=str(tmp_path))
    train = m.usable_rows(ptbxl_set, ptbxl_set.split_indices("train")[:32])
    m.setup(ptbxl_set, train, None, None)
    idx = train[:8]
    x = ptbxl_set.batch(idx)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    m.train()
    losses = []
    for step in range(10):
        batch = Batch(x, idx, 0, 0, True, torch.Generator().manual_seed(0), torch.device("cpu"))
        loss = m.training_step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
