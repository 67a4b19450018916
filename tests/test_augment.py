"""Batched, seeded ECG augmentations on real PTB-XL batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.augment import Augment, AugmentConfig, lead_dropout, random_crop_resize, time_mask
from benchmark.errors import UserError


@pytest.fixture(scope="module")
def real_batch(ptbxl_set):
    return ptbxl_set.batch(ptbxl_set.split_indices("train")[:16])


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_shape_and_seeded_determinism(real_batch):
    aug = Augment(fs=100)
    a = aug(real_batch, gen(0))
    b = aug(real_batch, gen(0))
    c = aug(real_batch, gen(1))
    assert a.shape == real_batch.shape and a.dtype == real_batch.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, real_batch)
    assert torch.isfinite(a).all()


def test_all_strengths_zero_is_identity(real_batch):
    off = AugmentConfig(crop_scale=1.0, noise_std=0, scale=0, wander_amp=0, mask_frac=0, lead_drop=0)
    assert torch.equal(Augment(off)(real_batch, gen(0)), real_batch)


def test_crop_resizes_back_to_t_and_stays_inside_the_window():
    t = 1000
    ramp = torch.arange(t, dtype=torch.float32).expand(4, 12, t).clone()
    out = random_crop_resize(ramp, gen(0), 0.5)
    assert out.shape == ramp.shape
    span = out[:, 0, -1] - out[:, 0, 0]
    assert (span >= 0.5 * (t - 1) - 1e-3).all() and (span <= t - 1 + 1e-3).all()
    assert (out.diff(dim=-1) >= 0).all()  # a monotone signal stays monotone (no shuffling)
    assert out.min() >= 0 and out.max() <= t - 1


def test_noise_has_the_requested_strength(real_batch):
    cfg = AugmentConfig(crop_scale=1.0, noise_std=0.2, scale=0, wander_amp=0, mask_frac=0, lead_drop=0)
    diff = Augment(cfg)(real_batch, gen(0)) - real_batch
    assert abs(diff.std().item() - 0.2) < 0.01


def test_time_mask_zeroes_one_short_span():
    x = torch.ones(8, 12, 1000)
    out = time_mask(x, gen(0), 0.1)
    zero = (out[:, 0] == 0).numpy()
    for row in zero:
        n = row.sum()
        assert n <= 100
        if n:
            first = int(np.argmax(row))
            assert row[first : first + n].all()  # one contiguous span
    assert torch.equal(out[:, 0], out[:, 5])  # the same span on every lead


def test_lead_dropout_only_drops_present_leads_and_keeps_one():
    mask = torch.zeros(12, dtype=torch.bool)
    mask[[0, 1]] = True  # e.g. a 2-lead dataset: leads I and II are real, the rest zero
    x = torch.zeros(500, 12, 50)
    x[:, mask] = 1.0
    out = lead_dropout(x, gen(0), 0.9, mask)
    assert (out[:, ~mask] == 0).all()
    kept = (out[:, mask].abs().sum(-1) > 0).sum(1)
    assert (kept >= 1).all()  # never every present lead
    assert (kept == 1).any()  # but it does drop present leads


def test_absent_leads_stay_zero_through_the_full_pipeline(ptbxl_set, real_batch):
    mask = torch.zeros(12, dtype=torch.bool)
    mask[1] = True  # a single-lead (MLII-like) batch
    x = real_batch * mask[None, :, None]
    out = Augment(AugmentConfig(lead_drop=0.5), fs=100, lead_mask=mask)(x, gen(0))
    assert (out[:, ~mask] == 0).all()
    assert (out[:, 1].abs().sum(-1) > 0).all()


def test_bad_config_is_a_user_error():
    with pytest.raises(UserError, match="crop_scale"):
        AugmentConfig(crop_scale=0)
    with pytest.raises(UserError, match="unknown augmentation setting"):
        Augment({"noise": 0.1})
