"""``benchmark cache``: lists every kind the suite writes (a real prepared store, a real saved
encoder with the settings that made it, real tfidf embeddings under two identities, a bench
synthetic store, an unpacked model folder) with their true sizes, and ``cache clean`` removes
exactly what --kind / --older-than / --all select (--dry-run nothing); what stays still works."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark import cachectl as cachemod
from benchmark.cli import main


@pytest.fixture
def filled(tmp_path, ptbxl_copy):
    """A fresh cache dir holding one entry of every kind, made by the suite's own code."""
    from benchmark.bench.synthetic import synthetic_store
    from benchmark.config import build_config
    from benchmark.data.store import prepare
    from benchmark.engine.runner import Runner
    from methods.embedding_cache import create_text_encoder

    root = ptbxl_copy(tmp_path / "data", n=40)
    cache = tmp_path / "cache"
    prepare("ptbxl", root, cache, fs=100, progress=False)
    cfg = build_config("quick", None, {"methods": "random-init", "method_settings.encoder": "resnet1d-tiny"})
    Runner(cfg, data_root=root, cache_dir=cache, out=tmp_path / "out", progress=False).pretrained("random-init", 0)
    texts = [f"sinus rhythm, report number {i}" for i in range(30)]
    for dim in (4, 8):
        enc = create_text_encoder(f"tfidf[dim={dim}]", cache_dir=cache, fit_texts=texts)
        enc.encode(texts[: 10 * dim // 4])
        enc.close()
    synthetic_store(cache, 16, fs=100)
    (cache / "models" / "fake-lm").mkdir(parents=True)
    (cache / "models" / "fake-lm" / "weights.bin").write_bytes(b"\0" * 5000)
    return cache, root, texts


def _entries(cache, capsys, *extra):
    capsys.readouterr()
    assert main(["cache", "--cache-dir", str(cache), "--json", *extra]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_list_shows_every_kind_with_its_settings_and_size(filled, capsys):
    cache, root, _ = filled
    got = _entries(cache, capsys)
    kinds = sorted(e["kind"] for e in got)
    assert kinds == ["bench", "embeddings", "embeddings", "model", "pretrained", "store"]
    by = {e["kind"]: e for e in got}
    store = by["store"]
    assert store["settings"].startswith("ptbxl 100 Hz") and str(root / "ptb-xl") in store["settings"]
    assert store["bytes"] == sum(f.stat().st_size for f in Path(store["path"]).rglob("*") if f.is_file())
    pre = by["pretrained"]
    assert pre["settings"].startswith("random-init seed=0") and "encoder=resnet1d-tiny" in pre["settings"]
    assert pre["detail"]["method"] == "random-init" and (Path(pre["path"]) / "model.pt").is_file()
    emb = sorted((e for e in got if e["kind"] == "embeddings"), key=lambda e: e["detail"]["dim"])
    assert [e["detail"]["texts"] for e in emb] == [10, 20] and [e["detail"]["dim"] for e in emb] == [4, 8]
    assert all(e["key"].startswith("tfidf-") for e in emb)
    assert by["bench"]["key"] == "synthetic-16x12x1000" and by["bench"]["bytes"] >= 16 * 12 * 1000 * 4
    assert by["model"]["key"] == "fake-lm" and by["model"]["bytes"] == 5000
    assert all(0 <= e["age_s"] < 600 for e in got)

    # the table for people: a header, one line per entry, the total and how to clean
    assert main(["cache", "--cache-dir", str(cache)]) == 0
    text = capsys.readouterr().out
    assert f"cache dir: {cache}" in text and "random-init seed=0" in text and "total " in text
    assert "cache clean" in text
    assert main(["cache", "--cache-dir", str(cache), "--kind", "nope"]) == 2
    assert "unknown cache kind" in capsys.readouterr().err


def test_clean_removes_exactly_what_is_chosen(filled, capsys):
    cache, root, texts = filled
    before = _entries(cache, capsys)
    # nothing without a choice; a dry run removes nothing
    assert main(["cache", "clean", "--cache-dir", str(cache)]) == 2
    assert "say what to remove" in capsys.readouterr().err
    assert main(["cache", "clean", "--cache-dir", str(cache), "--all", "--dry-run"]) == 0
    assert capsys.readouterr().out.count("would remove ") == len(before) + 1
    strip = lambda es: [{k: v for k, v in e.items() if k != "age_s"} for e in es]  # noqa: E731
    assert strip(_entries(cache, capsys)) == strip(before)

    # --older-than: only what was last used before then (here: the bench store, 10 days ago)
    bench = next(e for e in before if e["kind"] == "bench")
    old = time.time() - 10 * 86400
    os.utime(Path(bench["path"]) / "manifest.json", (old, old))
    assert main(["cache", "clean", "--cache-dir", str(cache), "--older-than", "7d"]) == 0
    assert not Path(bench["path"]).exists()
    assert sorted(e["kind"] for e in _entries(cache, capsys)) == ["embeddings", "embeddings", "model", "pretrained",
                                                                  "store"]

    # embeddings are removed per LM identity; the other identity stays readable from disk
    from methods.embedding_cache import create_text_encoder

    entries = cachemod.scan(cache, ["embeddings"])
    next(e for e in entries if e.detail["dim"] == 4).remove()
    left = _entries(cache, capsys, "--kind", "embeddings")
    assert [e["detail"]["dim"] for e in left] == [8]
    enc = create_text_encoder("tfidf[dim=8]", cache_dir=cache, fit_texts=texts)
    enc.encode(texts[:20])
    assert enc.disk_hits == 20 and enc.misses == 0
    enc.close()

    # --kind store: the store goes; prepare rebuilds it on the next use, and re-use refreshes its age
    assert main(["cache", "clean", "--cache-dir", str(cache), "--kind", "stores"]) == 0
    assert not any(e["kind"] == "store" for e in _entries(cache, capsys))
    from benchmark.data.store import prepare

    prepare("ptbxl", root, cache, fs=100, progress=False)
    store = next(e for e in _entries(cache, capsys) if e["kind"] == "store")
    os.utime(Path(store["path"]) / "manifest.json", (old, old))
    prepare("ptbxl", root, cache, fs=100, progress=False)
    assert next(e for e in _entries(cache, capsys) if e["kind"] == "store")["age_s"] < 600

    # --all: empty, and the embeddings file is gone with its last identity
    assert main(["cache", "clean", "--cache-dir", str(cache), "--all"]) == 0
    assert _entries(cache, capsys) == []
    assert not list((cache / "text-embeddings").glob("*.sqlite*"))


def test_incomplete_pretraining_is_listed_as_such(tmp_path, capsys):
    ck = tmp_path / "cache" / "pretrained" / "abc123" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "last.pt").write_bytes(b"x" * 100)
    (ck.parent / "key.json").write_text(json.dumps({"method": "simclr", "seed": 2, "config": {"epochs": 9}}))
    got = _entries(tmp_path / "cache", capsys)
    assert len(got) == 1 and got[0]["settings"].startswith("incomplete") and "simclr seed=2" in got[0]["settings"]


@pytest.mark.parametrize("text,secs", [("7d", 7 * 86400), ("12h", 43200), ("30min", 1800), ("2w", 14 * 86400),
                                       ("1.5", 1.5 * 86400), ("90s", 90)])
def test_parse_age(text, secs):
    assert cachemod.parse_age(text) == pytest.approx(secs)


def test_bench_says_where_its_synthetic_data_is(tmp_path, data_root, capsys):
    from benchmark.bench.synthetic import synthetic_store
    from benchmark.paths import synthetic_dir

    cache = tmp_path / "cache"
    ds = synthetic_store(cache, 32, fs=100)
    assert np.asarray(ds.signals[:2]).shape == (2, 12, 1000)
    size = cachemod.human_size(cachemod.tree_size(synthetic_dir(cache)))
    argv = ["bench", "--skip", "1,2,3,4,5,6,7,8", "--cache-dir", str(cache), "--data-root", str(data_root),
            "--out", str(tmp_path / "out"), "--device", "cpu"]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"synthetic data kept for the next bench: {synthetic_dir(cache)} ({size})" in out
    assert "cache clean --kind bench" in out
    assert main(argv + ["--delete-synthetic"]) == 0
    assert f"synthetic data deleted: {synthetic_dir(cache)} ({size})" in capsys.readouterr().out
    assert not synthetic_dir(cache).exists()
