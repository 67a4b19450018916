"""Caches that heal: a damaged cache entry of each kind (pretrained encoder, epoch checkpoint,
text-embedding database, prepared store) is moved aside with a one-line warning and rebuilt; a
planted pickle that would run code on loading is refused and treated as a miss; ``hf:`` runs no
repository code unless asked."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.heal import SIDECAR, CorruptCacheEntry, atomic_torch_save, safe_torch_load, sha256_bytes
from benchmark.config import build_config
from benchmark.errors import UserError


class _RunsCode:
    """Unpickling this creates ``marker`` (stands for any code an attacker would run)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _plant(path: Path, payload: bytes, *, with_sidecar: bool = True) -> None:
    path.write_bytes(payload)
    side = path.with_name(path.name + SIDECAR)
    if with_sidecar:  # an attacker sharing the cache can write a matching checksum too
        side.write_text(sha256_bytes(payload) + "\n")
    elif side.exists():
        side.unlink()


def _evil_torch_file(marker: Path) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"format": 2, "state_dict": {}, "x": _RunsCode(str(marker))}, buf)
    return buf.getvalue()


def _corruptions(good: bytes, marker: Path):
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    return {
        "truncated": (good[: len(good) // 3], True),
        "bit-flip": (bytes(flipped), False),  # keeps the old sidecar: the checksum catches it
        "garbage": (b"not a torch file" * 64, True),
        "no-sidecar": (good, None),
        "code-on-unpickle": (_evil_torch_file(marker), True),
    }


def _damage(path: Path, kind: str, marker: Path) -> None:
    good = path.read_bytes()
    payload, sidecar = _corruptions(good, marker)[kind]
    if sidecar is None:
        path.with_name(path.name + SIDECAR).unlink()
    elif sidecar:
        _plant(path, payload)
    else:
        path.write_bytes(payload)


def test_safe_load_refuses_code_and_round_trips_plain_data(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    _plant(evil, _evil_torch_file(marker))
    with pytest.raises(CorruptCacheEntry, match="refused by the safe loader"):
        safe_torch_load(evil)
    assert not marker.exists()
    ok = tmp_path / "ok.pt"
    obj = {"w": torch.arange(4.0), "n": 3, "s": "x", "l": [1.5, None], "t": (1, 2), "inf": float("inf")}
    atomic_torch_save(obj, ok)
    back = safe_torch_load(ok)
    assert torch.equal(back["w"], obj["w"]) and back["l"] == [1.5, None] and back["inf"] == float("inf")
    with pytest.raises(pickle.UnpicklingError):  # the unsafe loader is really what we avoid
        torch.load(evil, weights_only=True)
    assert not marker.exists()


# -- pretrained encoder (model.pt) --------------------------------------------------------------
@pytest.fixture(scope="module")
def runner_factory(tmp_path_factory, data_root):
    from benchmark.engine.runner import Runner

    cache = tmp_path_factory.mktemp("heal-cache")
    cfg = build_config("quick", None, {"method_settings.encoder": "resnet1d-tiny", "method_settings.epochs": "1",
                                       "device": "cpu", "seeds": "0"})

    def make():
        return Runner(cfg, data_root=data_root, cache_dir=cache, out=tmp_path_factory.mktemp("out"), progress=False)

    return make


@pytest.mark.parametrize("kind", ["truncated", "bit-flip", "garbage", "no-sidecar", "code-on-unpickle"])
def test_damaged_pretrained_encoder_is_moved_aside_and_rebuilt(runner_factory, kind, tmp_path, caplog):
    model, h = runner_factory().pretrained("random-init", 0)
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    from benchmark.paths import pretrained_dir

    path = pretrained_dir(runner_factory().cache_dir, h) / "model.pt"
    marker = tmp_path / "pwned"
    _damage(path, kind, marker)
    with caplog.at_level(logging.WARNING, logger="benchmark.heal"):
        again, h2 = runner_factory().pretrained("random-init", 0)  # a fresh process's runner
    assert h2 == h and not marker.exists()
    warn = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warn) == 1 and str(path) in warn[0] and "moved aside" in warn[0] and "\n" not in warn[0]
    assert list(path.parent.glob("model.pt.corrupt-*"))
    safe_torch_load(path)  # rebuilt, verified
    assert all(torch.equal(ref[k], again.state_dict()[k]) for k in ref)


def test_user_named_damaged_file_is_an_error_not_healed(tmp_path):
    from benchmark.method import load_method

    path = tmp_path / "mine.pt"
    _plant(path, b"junk" * 100)
    with pytest.raises(UserError, match="damaged or unsafe"):
        load_method(path)
    assert path.is_file()  # user data is never moved


# -- epoch checkpoint (last.pt) -----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["truncated", "bit-flip", "code-on-unpickle"])
def test_damaged_epoch_checkpoint_restarts_training_with_a_warning(ptbxl_set, tmp_path, kind, caplog):
    from benchmark.encoders import create_encoder
    from benchmark.losses import supervised_loss
    from benchmark.training import fit

    y, valid = ptbxl_set.labels("superdiagnostic")
    y = torch.from_numpy(y)
    tr = ptbxl_set.split_indices("train")
    tr = tr[valid[tr]][:16]

    def model():
        torch.manual_seed(0)
        enc = create_encoder("resnet1d-tiny", width=8)
        return torch.nn.Sequential(enc, torch.nn.Linear(enc.dim, y.shape[1]))

    def step(m):
        return lambda b: supervised_loss(m(b.x), y[torch.as_tensor(b.idx)], True)

    kw = dict(epochs=2, batch_size=8, lr=1e-3, seed=1, device="cpu", progress=False, max_steps_per_epoch=1)
    ref = model()
    fit(ref, step(ref), ptbxl_set, tr, None, checkpoint_dir=tmp_path / "ref", **kw)
    m = model()
    fit(m, step(m), ptbxl_set, tr, None, checkpoint_dir=tmp_path / "run", **kw)
    ck = tmp_path / "run" / "last.pt"
    marker = tmp_path / "pwned"
    _damage(ck, kind, marker)
    again, epochs = model(), []
    with caplog.at_level(logging.WARNING, logger="benchmark.heal"):
        fit(again, step(again), ptbxl_set, tr, None, checkpoint_dir=tmp_path / "run",
            on_epoch_end=lambda e, r: epochs.append(e), **kw)
    assert epochs == [0, 1] and not marker.exists()  # trained from scratch
    assert any(str(ck) in r.getMessage() for r in caplog.records)
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), again.state_dict().values()))
    safe_torch_load(ck)


# -- text-embedding database --------------------------------------------------------------------
def _tfidf(cache, reports):
    from methods.embedding_cache import create_text_encoder

    return create_text_encoder("tfidf[dim=8]", cache, fit_texts=reports[:40])


@pytest.mark.parametrize("where", ["header", "pages"])
def test_damaged_embedding_database_is_moved_aside_and_rebuilt(reports, tmp_path, where, caplog):
    texts = list(dict.fromkeys(reports[:40]))
    enc = _tfidf(tmp_path, reports)
    ref = enc.encode(texts)
    enc.close()
    db = enc.db_path
    raw = bytearray(db.read_bytes())
    if where == "header":
        raw[:100] = b"x" * 100
    else:  # every page after the first: the schema survives, the table's b-tree does not
        for i in range(4096, len(raw), 7):
            raw[i] = 0xA5
    db.write_bytes(bytes(raw))
    fresh = _tfidf(tmp_path, reports)
    with caplog.at_level(logging.WARNING, logger="benchmark.heal"):
        out = fresh.encode(texts)
    np.testing.assert_array_equal(out, ref)
    assert fresh.misses == len(texts)  # recomputed
    warn = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warn) == 1 and str(db) in warn[0]
    assert list(db.parent.glob("embeddings.sqlite.corrupt-*"))
    third = _tfidf(tmp_path, reports)
    np.testing.assert_array_equal(third.encode(texts), ref)
    assert third.disk_hits == len(texts)  # the rebuilt database serves them


def test_unopenable_embedding_database_is_a_one_line_error_not_healed(reports, tmp_path):
    """Not damage (here: a folder where the file should be; likewise permissions, a full disk):
    an error naming the file and what to do, and nothing is moved."""
    enc = _tfidf(tmp_path, reports)
    enc.db_path.mkdir(parents=True)
    with pytest.raises(UserError) as err:
        enc.encode(["sinus rhythm"])
    msg = str(err.value)
    assert "\n" not in msg and str(enc.db_path) in msg and "SQLITE_CANTOPEN" in msg
    assert enc.db_path.is_dir() and not list(enc.db_path.parent.glob("*.corrupt-*"))


# -- prepared store -----------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate-signals", "labels-shape"])
def test_damaged_prepared_store_is_moved_aside_and_rebuilt(ptbxl_copy, tmp_path, damage, caplog):
    from benchmark.data.store import prepare

    root = ptbxl_copy(tmp_path / "data", n=4)
    cache = tmp_path / "cache"
    ds = prepare("ptbxl", root, cache, progress=False)
    ref = ds.raw([0, 1]).copy()
    if damage == "truncate-signals":
        p = ds.path / "signals.npy"
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    else:
        np.save(ds.path / "labels" / "superdiagnostic.npy", np.zeros((1, 2), np.uint8))
    with caplog.at_level(logging.WARNING, logger="benchmark.heal"):
        again = prepare("ptbxl", root, cache, progress=False)
    assert again.path == ds.path
    np.testing.assert_array_equal(again.raw([0, 1]), ref)
    assert any(str(ds.path) in r.getMessage() for r in caplog.records)
    assert list(ds.path.parent.glob(ds.path.name + ".corrupt-*"))


# -- hf: remote code ------------------------------------------------------------------------------
def test_hf_runs_no_repository_code_unless_asked(tmp_path):
    from benchmark.registry import TEXT_ENCODERS, load_builtin_plugins

    load_builtin_plugins()
    model = tmp_path / "evil-model"
    model.mkdir()
    marker = tmp_path / "pwned"
    (model / "config.json").write_text(
        '{"model_type": "evil-bert", "hidden_size": 8, '
        '"auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}}'
    )
    (model / "evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    enc = TEXT_ENCODERS.create(f"hf:{model}", device="cpu")
    with pytest.raises(UserError, match="cannot load"):
        enc.encode(["sinus rhythm"])
    assert not marker.exists()
    with pytest.raises(UserError, match="trust_remote_code must be true or false"):
        TEXT_ENCODERS.create(f"hf:{model}[trust_remote_code=1]", device="cpu")
