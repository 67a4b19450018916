"""One contract, checked for every registered method and every frozen text encoder of METS.

Parametrised over ``METHODS.list()`` (after the built-in plug-ins and entry points are loaded),
so a newly registered method is tested here without anyone writing its test (the idea of timm's
tests/test_models.py and scikit-learn's ``parametrize_with_checks``). A plug-in's methods too:
``python -m pytest tests/test_methods_conformance.py --ecgbench-plugin path/to/file.py --plugin-only``. Each case runs a short
pretraining (2 steps, ``resnet1d-tiny``) on real PTB-XL batches and checks: history, finite
embeddings of the right shape, time-resolved features whose mean is the pooled embedding, that training changed the weights, save -> load gives identical
embeddings, the frozen LM is bit-identical after training, determinism for a fixed seed on CPU,
the text-tower contract, and that unknown settings are rejected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.errors import UserError
from benchmark.method import Method, load_method
from benchmark.registry import METHODS, load_builtin_plugins, parse_spec

load_builtin_plugins()

TINY = dict(encoder="resnet1d-tiny", epochs=1, batch_size=8, max_steps_per_epoch=2, device="cpu", seed=0)
METS_TEXT_ENCODERS = ["tfidf", "random-bert[size=tiny]", "hf:{tiny_bert}", "mpnet"]  # minilm: plain "mets"
CASES = METHODS.list() + [f"mets[lm={lm}]" for lm in METS_TEXT_ENCODERS] + ["mets[lm_train=last-2]"] + [
    "mets[encoder=vit1d-tiny]"]  # every method trains any registered encoder family


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A tiny randomly initialised BERT saved as a local Hugging Face folder (for ``hf:<path>``)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from methods.text_encoders import minilm_path

    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(path)
    BertTokenizerFast(vocab_file=str(minilm_path() / "vocab.txt")).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def rows(ptbxl_set):
    tr = ptbxl_set.split_indices("train")[:24]
    va = ptbxl_set.split_indices("val")[:8]
    ev = ptbxl_set.split_indices("test")[:6]
    return tr, va, ev


def build(spec: str, cache_dir, **extra) -> Method:
    name, own = parse_spec(spec)  # the case's own settings (encoder=...) win over the tiny defaults
    cls = METHODS.entry(name).meta.get("cls")
    if hasattr(cls, "example_settings"):  # a method that needs an input file (checkpoint): its own example
        folder = Path(cache_dir).parent / "example"
        folder.mkdir(parents=True, exist_ok=True)
        own = {**cls.example_settings(folder), **own}
    try:
        return METHODS.create(name, **{**TINY, **own}, cache_dir=str(cache_dir), **extra)
    except UserError as exc:
        if "mpnet" in spec and "not installed" in str(exc):
            pytest.skip(f"optional text encoder not installed: {exc}")
        raise


def lm_state(method) -> dict[str, torch.Tensor] | None:
    module = method.text.module() if getattr(method, "text", None) is not None else None
    if module is None:
        return None
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("case", CASES)
def test_method_contract(case, ptbxl_set, rows, tiny_bert, tmp_path):
    spec = case.replace("{tiny_bert}", tiny_bert) if "{tiny_bert}" in case else case
    only = getattr(METHODS.entry(spec.split("[")[0]).meta.get("cls"), "only_datasets", None)
    if only is not None and "ptbxl" not in only:  # e.g. dechazal: beat features (tests/test_dechazal.py)
        pytest.skip(f"{spec} embeds only {', '.join(only)} rows (its only_datasets trait), not PTB-XL")
    tr, va, ev = rows
    m = build(spec, tmp_path / "cache")
    assert isinstance(m, Method) and m.name == spec.split("[")[0]
    assert set(Method.defaults) <= set(m.config()) and m.config()["method"] == m.name

    lm_before = lm_state(m) if m.has_text_tower else None
    enc_before = {k: v.clone() for k, v in m.encoder.state_dict().items()}
    hist = m.pretrain(ptbxl_set, tr, va, progress=False)

    # history and training effect
    if m.needs_pretraining:
        assert len(hist) == 1 and np.isfinite(hist[0]["train_loss"]) and np.isfinite(hist[0]["val_loss"])
        assert not all(torch.equal(enc_before[k], v) for k, v in m.encoder.state_dict().items())
    else:
        assert hist == []

    # embeddings
    z = m.encode_ecg(ptbxl_set, ev)
    assert z.shape == (len(ev), m.embedding_dim) and z.dtype == np.float32
    assert np.isfinite(z).all()
    assert z.std(axis=0).max() > 0  # not a constant output

    # time-resolved features through the same batching/precision path: their mean is z; a
    # readout at a time is the map's column at the position the encoder's grid names
    zmap = m.encode_ecg(ptbxl_set, ev, batch_size=4, pooled=False)
    grid = m.feature_grid(ptbxl_set.n_samples, ptbxl_set.fs)
    assert zmap.shape == (len(ev), m.embedding_dim, grid["positions"]) and zmap.dtype == np.float32
    np.testing.assert_allclose(zmap.mean(axis=-1), z, rtol=1e-4, atol=1e-5)
    t = ptbxl_set.n_samples / ptbxl_set.fs / 2
    j = int(m.encoder.position_of(t * ptbxl_set.fs, ptbxl_set.n_samples))
    np.testing.assert_allclose(m.encode_ecg(ptbxl_set, ev, at=t), zmap[:, :, j], rtol=1e-4, atol=1e-5)

    # frozen language model: bit-identical, no gradients, not among the trainable parameters
    if lm_before is not None:
        after = lm_state(m)
        assert after.keys() == lm_before.keys()
        assert all(torch.equal(lm_before[k], after[k]) for k in after)
        lm_params = {id(p) for p in m.text.module().parameters()}
        assert not lm_params & {id(p) for p in m.parameters()}
        assert not any(p.requires_grad for p in m.text.module().parameters())

    # text tower contract
    if m.has_text_tower:
        prompts = {"NORM": ["normal ecg", "sinus rhythm, normal ecg"], "MI": ["myocardial infarction"]}
        s = m.zero_shot_scores(ptbxl_set, ev, prompts)
        assert s.shape == (len(ev), 2) and np.isfinite(s).all() and np.abs(s).max() <= 1 + 1e-5
        t = m.encode_text(["sinus rhythm", "atrial fibrillation"])
        assert np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    else:
        with pytest.raises(NotImplementedError, match="no text tower"):
            m.zero_shot_scores(ptbxl_set, ev, {"a": ["x"]})

    # fine-tune backbone: a separate copy mapping [B, 12, T] -> [B, D]
    bb = m.ecg_backbone()
    assert bb is not m.encoder
    with torch.no_grad():
        assert bb.eval()(ptbxl_set.batch(ev[:2])).shape == (2, m.embedding_dim)

    # save -> load: identical embeddings (into a fresh instance, and rebuilt from the file alone)
    path = m.save(tmp_path / "model.pt")
    fresh = build(spec, tmp_path / "cache").load(path)
    assert np.array_equal(fresh.encode_ecg(ptbxl_set, ev), z)
    rebuilt = load_method(path, device="cpu", cache_dir=str(tmp_path / "cache"))
    assert np.array_equal(rebuilt.encode_ecg(ptbxl_set, ev), z)
    if m.has_text_tower:
        assert np.array_equal(rebuilt.zero_shot_scores(ptbxl_set, ev, prompts), s)

    # determinism: a second run with the same seed gives the same embeddings, bit for bit
    again = build(spec, tmp_path / "cache")
    again.pretrain(ptbxl_set, tr, va, progress=False)
    assert np.array_equal(again.encode_ecg(ptbxl_set, ev), z)


@pytest.mark.parametrize("name", METHODS.list())
def test_unknown_settings_are_rejected(name):
    with pytest.raises(UserError, match="unknown setting"):
        METHODS.create(f"{name}[no_such_setting=1]")
    entry = METHODS.entry(name)
    assert entry.accepted_params() is not None  # the registry can check every setting
    assert entry.description  # `benchmark list` has something to show
