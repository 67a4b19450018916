"""mets[lm_train=frozen|last-N|all]: which LM weights train, the cache bypass, the LM's own lr."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.errors import UserError
from benchmark.registry import METHODS, load_builtin_plugins
from methods.mets import parse_lm_train, transformer_layers

load_builtin_plugins()

TINY = dict(encoder="resnet1d-tiny", epochs=1, batch_size=8, max_steps_per_epoch=2, device="cpu", seed=0)


@pytest.fixture(scope="module")
def rows(ptbxl_set):
    return ptbxl_set.split_indices("train")[:24], ptbxl_set.split_indices("val")[:8], ptbxl_set.split_indices("test")[:6]


def _lm_before(m):
    return {k: v.detach().clone() for k, v in m.text.module().state_dict().items()}


def test_parse_lm_train():
    assert parse_lm_train("frozen") == 0 and parse_lm_train("all") == -1 and parse_lm_train("last-2") == 2
    for bad in ("last-0", "last-", "last-x", "some", "2"):
        with pytest.raises(UserError, match="lm_train"):
            parse_lm_train(bad)


def test_last_2_trains_only_the_last_two_layers(ptbxl_set, rows, tmp_path):
    tr, va, ev = rows
    m = METHODS.create("mets[lm_train=last-2,lm_lr=0.001]", **TINY, cache_dir=str(tmp_path))
    original = _lm_before(m)
    assert m._text_emb is None
    m.pretrain(ptbxl_set, tr, va, progress=False)
    assert m._text_emb is None  # the cache is bypassed: the trained LM runs on every batch
    n = len(transformer_layers(m.lm))
    after = m.lm.state_dict()
    changed = {k for k in after if not torch.equal(after[k], original[k])}
    trained_prefixes = tuple(f"encoder.layer.{i}." for i in (n - 2, n - 1))
    assert changed, "the last two layers did not train"
    assert all(k.startswith(trained_prefixes) for k in changed), sorted(changed)[:5]
    # every weight matrix of both trained layers moved
    for i in (n - 2, n - 1):
        assert any(k.startswith(f"encoder.layer.{i}.") for k in changed)
    # the frozen, cached LM (the bare LM) is untouched
    now = m.text.module().state_dict()
    assert all(torch.equal(now[k], original[k]) for k in original)
    # the LM has its own learning rate in the optimiser groups
    groups = m.optimizer_params()
    assert groups[1]["lr"] == pytest.approx(1e-3) and "lr" not in groups[0]
    # zero-shot runs through the trained tower, and save -> load keeps it
    prompts = {"NORM": ["normal ecg"], "MI": ["myocardial infarction"]}
    s = m.zero_shot_scores(ptbxl_set, ev, prompts)
    fresh = METHODS.create("mets[lm_train=last-2,lm_lr=0.001]", **TINY, cache_dir=str(tmp_path))
    fresh.load(m.save(tmp_path / "m.pt"))
    assert np.array_equal(fresh.zero_shot_scores(ptbxl_set, ev, prompts), s)
    # the trained tower differs from the frozen LM's projection
    raw = m.lm_embeddings(["sinus rhythm"])
    assert not np.allclose(raw, m.bare_lm_embeddings(["sinus rhythm"]), atol=1e-6)


def test_all_trains_embeddings_too_and_frozen_parts_stay_in_eval(ptbxl_set, rows, tmp_path):
    tr, va, _ = rows
    m = METHODS.create("mets[lm_train=all,lm_lr=0.001,grad_checkpointing=true]", **TINY, cache_dir=str(tmp_path))
    original = _lm_before(m)
    m.pretrain(ptbxl_set, tr, va, progress=False)
    after = m.lm.state_dict()
    assert not torch.equal(after["embeddings.word_embeddings.weight"], original["embeddings.word_embeddings.weight"])
    part = METHODS.create("mets[lm_train=last-1]", **TINY, cache_dir=str(tmp_path)).train()
    layers = transformer_layers(part.lm)
    assert layers[-1].training and not layers[0].training and not part.lm.embeddings.training


def test_lm_train_needs_a_transformer(tmp_path):
    with pytest.raises(UserError, match="needs a transformer"):
        METHODS.create("mets[lm=tfidf,lm_train=last-2]", **TINY, cache_dir=str(tmp_path))
    with pytest.raises(UserError, match="only 6 transformer layers"):
        METHODS.create("mets[lm_train=last-7]", **TINY, cache_dir=str(tmp_path))
