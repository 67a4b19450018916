"""Embedding cache: the frozen LM runs once per unique text, ever; no stale hits."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from benchmark.errors import UserError
from benchmark.registry import TEXT_ENCODERS
from methods.embedding_cache import CachedTextEncoder, create_text_encoder




def test_second_pass_and_new_instance_call_the_lm_zero_times(minilm, reports, tmp_path):
    texts = reports[:60]
    k = len(set(texts))
    assert k < len(texts)  # real reports repeat
    cached = CachedTextEncoder(minilm, tmp_path)
    calls = minilm.calls
    first = cached.encode(texts)
    assert minilm.calls - calls == k and cached.misses == k and cached.hits == 0  # dedup: k model calls
    assert first.shape == (60, 384) and first.dtype == np.float32
    for i, t in enumerate(texts):  # input order, equal texts -> equal rows
        np.testing.assert_array_equal(first[i], first[texts.index(t)])
    np.testing.assert_allclose(first, minilm.encode(texts), atol=2e-5)  # same as uncached
    calls = minilm.calls

    second = cached.encode(texts)
    assert minilm.calls == calls and cached.memory_hits == k and cached.disk_hits == 0
    np.testing.assert_array_equal(second, first)

    fresh = CachedTextEncoder(minilm, tmp_path)  # new process-like instance: on-disk hits only
    third = fresh.encode(texts[::-1])
    assert minilm.calls == calls and fresh.disk_hits == k and fresh.misses == 0
    np.testing.assert_array_equal(third, first[::-1])


def test_key_changes_with_lm_pooling_and_text(minilm, reports, tmp_path):
    texts = list(dict.fromkeys(reports))[:10]
    mean = CachedTextEncoder(minilm, tmp_path)
    a = mean.encode(texts)

    cls = CachedTextEncoder(TEXT_ENCODERS.create("minilm[pooling=cls]", device="cpu"), tmp_path)
    b = cls.encode(texts)
    assert cls.misses == 10 and cls.hits == 0 and cls.encoder.calls == 10
    assert not np.allclose(a, b, atol=1e-3)

    other_lm = CachedTextEncoder(TEXT_ENCODERS.create("random-bert[size=tiny]", device="cpu"), tmp_path)
    c = other_lm.encode(texts)
    assert other_lm.misses == 10 and other_lm.hits == 0 and c.shape == (10, 128)

    edited = [t + " " for t in texts[:3]] + [texts[0].upper()]  # any change of the exact text
    before = minilm.calls
    mean.encode(edited)
    assert minilm.calls - before == 4 and mean.misses == 14


def test_tfidf_fit_changes_the_key(reports, tmp_path):
    with pytest.raises(UserError, match="not fitted"):
        create_text_encoder("tfidf[dim=8]", tmp_path).encode(["sinus rhythm"])
    enc = create_text_encoder("tfidf[dim=8]", tmp_path, fit_texts=reports[:150])
    x = enc.encode(reports[150:170])
    assert x.shape == (20, 8) and enc.misses == len(set(reports[150:170]))
    again = create_text_encoder("tfidf[dim=8]", tmp_path, fit_texts=reports[:150])
    np.testing.assert_array_equal(again.encode(reports[150:170]), x)
    assert again.misses == 0 and again.encoder.calls == 0
    enc.fit(reports[100:250])  # refit on other training reports: new identity, recomputed
    misses = enc.misses
    enc.encode(reports[150:170])
    assert enc.misses - misses == len(set(reports[150:170]))


def test_create_text_encoder_passes_settings(tmp_path, reports):
    enc = create_text_encoder("minilm[pooling=cls]", tmp_path, device="cpu")
    assert enc.pooling == "cls" and enc.dim == 384 and enc.encoder.device == "cpu"
    assert enc.encode([]).shape == (0, 384)
    with pytest.raises(UserError):
        create_text_encoder("no-such-lm", tmp_path)


def test_memory_layer_spares_sqlite(minilm, tmp_path, monkeypatch):
    cached = CachedTextEncoder(minilm, tmp_path)
    cached.encode(["sinus rhythm", "normal ecg"])

    def boom(*a, **k):
        raise AssertionError("SQLite read although every text is in memory")

    monkeypatch.setattr(cached, "_load", boom)
    cached.encode(["normal ecg", "sinus rhythm", "normal ecg"])
    assert cached.memory_hits == 2


def test_corrupt_database_is_healed(minilm, tmp_path):
    """Not a database at all: moved aside (a cache miss), the text is embedded again."""
    cached = CachedTextEncoder(minilm, tmp_path)
    cached.db_path.parent.mkdir(parents=True)
    cached.db_path.write_bytes(b"this is not a sqlite database" * 100)
    out = cached.encode(["sinus rhythm"])
    assert out.shape == (1, 384) and cached.misses == 1
    assert len(list(cached.db_path.parent.glob("embeddings.sqlite.corrupt-*"))) == 1


def _worker(cache_dir, fit, texts, q):
    enc = create_text_encoder("tfidf[dim=8]", cache_dir, fit_texts=fit)
    enc.encode(texts)
    q.put(enc.misses)


def test_several_processes_share_one_cache(reports, tmp_path):
    fit = reports[:150]
    a, b = reports[150:260], reports[200:320]  # overlapping sets written concurrently
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), fit, t, q)) for t in (a, b)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    fresh = create_text_encoder("tfidf[dim=8]", tmp_path, fit_texts=fit)
    out = fresh.encode(a + b)
    assert fresh.misses == 0 and fresh.disk_hits == len(set(a + b))
    np.testing.assert_allclose(out, fresh.encoder.encode(a + b), atol=1e-6)


def test_flipped_bit_in_a_stored_vector_is_caught_and_recomputed(reports, tmp_path, caplog):
    """SQLite's page checks do not see a changed float inside a row; the per-row digest does."""
    import sqlite3

    fit, texts = reports[:150], list(dict.fromkeys(reports[150:200]))[:5]
    enc = create_text_encoder("tfidf[dim=8]", tmp_path, fit_texts=fit)
    clean = enc.encode(texts)
    enc.close()
    con = sqlite3.connect(enc.db_path)
    h, blob = con.execute("SELECT text_hash, vec FROM embeddings LIMIT 1").fetchone()
    flipped = bytearray(blob)
    flipped[5] ^= 0x10  # one bit of one float: still finite, still the right size
    assert np.isfinite(np.frombuffer(bytes(flipped), dtype=np.float32)).all()
    con.execute("UPDATE embeddings SET vec = ? WHERE text_hash = ?", (bytes(flipped), h))
    con.commit()
    con.close()

    fresh = create_text_encoder("tfidf[dim=8]", tmp_path, fit_texts=fit)
    with caplog.at_level("WARNING", logger="benchmark.cache"):
        again = fresh.encode(texts)
    np.testing.assert_array_equal(again, clean)  # the damaged row was not served
    assert fresh.damaged == 1 and fresh.misses == 1 and fresh.disk_hits == len(texts) - 1
    assert sum("1 damaged row(s)" in r.getMessage() and str(fresh.db_path) in r.getMessage()
               for r in caplog.records) == 1
    third = create_text_encoder("tfidf[dim=8]", tmp_path, fit_texts=fit)  # the row was rewritten
    np.testing.assert_array_equal(third.encode(texts), clean)
    assert third.damaged == 0 and third.misses == 0


def test_database_from_before_row_digests_is_upgraded_and_its_rows_recomputed(reports, tmp_path):
    import sqlite3

    from methods.embedding_cache import text_hash

    fit, texts = reports[:150], list(dict.fromkeys(reports[150:200]))[:3]
    enc = create_text_encoder("tfidf[dim=8]", tmp_path, fit_texts=fit)
    enc.db_path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(enc.db_path)  # the old schema, with a wrong (but plausible) stored vector
    con.execute("CREATE TABLE embeddings (identity TEXT NOT NULL, text_hash TEXT NOT NULL, dim INTEGER NOT NULL, "
                "vec BLOB NOT NULL, PRIMARY KEY (identity, text_hash)) WITHOUT ROWID")
    con.execute("INSERT INTO embeddings VALUES (?, ?, 8, ?)",
                (enc.identity(), text_hash(texts[0]), np.ones(8, dtype=np.float32).tobytes()))
    con.commit()
    con.close()
    out = enc.encode(texts)
    assert enc.misses == len(texts) and enc.damaged == 0  # undigested rows: recomputed, not 'damaged'
    assert not np.allclose(out[0], 1.0)
    fresh = create_text_encoder("tfidf[dim=8]", tmp_path, fit_texts=fit)
    np.testing.assert_array_equal(fresh.encode(texts), out)
    assert fresh.misses == 0
