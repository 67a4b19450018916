"""The beat-level MIT-BIH head on the complete database: the readout is the feature over the beat
of a short beat-centred input plus RR features, every choice is made by record-wise
cross-validation inside DS1, and no DS2 row is read before the final evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.config import build_config
from benchmark.errors import UserError
from benchmark.protocols import beat_level
from benchmark.registry import METHODS, load_builtin_plugins

load_builtin_plugins()


@pytest.fixture(scope="module")
def mitbih(data_root, session_cache):
    from benchmark.data.store import prepare

    return prepare("mitbih", data_root, session_cache, fs=100, progress=False)


@pytest.fixture(scope="module")
def tiny():
    return METHODS.create("random-init", encoder="resnet1d-tiny", device="cpu", seed=0)


def _cfg(**kw):
    return {**build_config("quick", None, {}), **kw}


def test_readout_keywords_follow_the_settings(mitbih):
    half = mitbih.n_samples / mitbih.fs / 2
    kw = beat_level.readout(mitbih, _cfg(beat_readout="beat", beat_window_s=2.0, beat_span_s=0.6))
    assert kw == {"window": (half - 1, half + 1), "at": half, "span": 0.6}
    assert beat_level.readout(mitbih, _cfg(beat_readout="pool", beat_window_s=0)) == {}
    assert beat_level.readout(mitbih, _cfg(beat_readout="pool", beat_window_s=2.0)) == {"window": (half - 1, half + 1)}
    assert beat_level.is_beat_level(mitbih)
    with pytest.raises(UserError, match="unknown beat_readout 'global'"):
        beat_level.validate(_cfg(beat_readout="global"))
    with pytest.raises(UserError, match="beat_cv_folds must be >= 2"):
        beat_level.validate(_cfg(beat_cv_folds=1))


def test_window_crop_reads_only_the_beat_centred_seconds(tiny, mitbih):
    idx = mitbih.split_indices("train")[:8]
    x = mitbih.batch(idx, torch.device("cpu"))
    with torch.no_grad():
        want = tiny.encoder.eval()(x[..., 400:600]).numpy()
    np.testing.assert_allclose(tiny.encode_ecg(mitbih, idx, window=(4.0, 6.0)), want, rtol=1e-5, atol=1e-6)
    local = tiny.encode_ecg(mitbih, idx, window=(4.0, 6.0), at=5.0)  # the position over the beat, inside the crop
    with torch.no_grad():
        fmap = tiny.encoder.eval().features(x[..., 400:600]).numpy()
    np.testing.assert_allclose(local, fmap[:, :, tiny.encoder.position_of(100, 200)], rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match="window=\\(6, 4\\)"):
        tiny.encode_ecg(mitbih, idx, window=(6.0, 4.0))


def test_probe_chooses_on_ds1_folds_and_reads_ds2_once_at_the_end(tiny, mitbih):
    """A spy on the features: every request before the last holds DS1 rows only (the store's guard
    would raise otherwise), the last holds DS2 rows only, and the folds never split a record."""
    split = mitbih.meta["split"].to_numpy()
    calls = []
    feats = beat_level.beat_embed(lambda d, idx, **kw: tiny.encode_ecg(d, idx, **kw), mitbih,
                                  _cfg(beat_readout="beat", beat_window_s=2.0, beat_rr=True))

    def spy(d, idx):
        calls.append(set(split[np.asarray(idx)]))
        return feats(d, idx)

    ev = beat_level.run_beat_probe(spy, mitbih, "aami", Cs=[0.1], folds=4, max_iter=200, n_boot=20, seed=0,
                                   max_eval=3000, extend=1, sn_stage="auto")
    assert len(calls) == 2 and calls[0] <= {"train", "val"} and calls[-1] == {"test"}
    # one C is the grid's edge on both sides: the best so far gets a neighbour a decade beyond it
    # (the lower side first), scored on the same out-of-fold DS1 beats
    assert sorted(ev.info["cv_auroc_by_C"]) == [0.01, 0.1] and ev.info["C"] in (0.01, 0.1)
    assert mitbih.reads.get("test", 0) > 0
    ds1_records = set(mitbih.meta.loc[np.isin(split, ["train", "val"]), "record"])
    assert ev.info["cv_records"] == len(ds1_records) and ev.info["n_train"] == int(np.isin(split, ["train", "val"]).sum())
    assert ev.info["features"] == tiny.embedding_dim + 10  # the readout + the ten RR features
    rows = pd.DataFrame(ev.rows)
    macro = rows[(rows.metric == "auroc") & (rows["class"] == "")]["value"].iloc[0]
    assert 0.5 < macro <= 1  # RR timing alone separates S and V from N well above chance
    q = ev.scores[ev.scores["class"] == "Q"]
    assert len(q) and q["pred"].sum() == 0 and ev.info["offsets"][-1] == -np.inf  # Q (8 DS1 beats) never predicted
    rule = ev.info["decision_rule"]  # chosen on DS1 alone (out-of-fold scores, nested folds)
    assert rule["rule"] == "auto" and rule["chosen"] in ("argmax", "offsets")
    if rule["chosen"] == "argmax":
        assert ev.info["offsets"][:4] == [0.0, 0.0, 0.0, 0.0]
    assert np.isfinite(ev.info["offsets"][:4]).all()
    # the S-vs-N stage, chosen on DS1 too, re-decides only the beats the rule calls N or S
    stage = ev.info["sn_stage"]
    assert stage["stage"] == "auto" and isinstance(stage["chosen"], bool) and 0 < stage["threshold"] < 1
    classes = list(mitbih.task("aami").classes)
    wide = ev.scores.pivot(index="example", columns="class", values="score")[classes].to_numpy()
    made = ev.scores.pivot(index="example", columns="class", values="pred")[classes].to_numpy().argmax(axis=1)
    rule = (np.log(np.clip(wide, 1e-12, 1)) + np.asarray(ev.info["offsets"])).argmax(axis=1)
    ns = np.isin(rule, [classes.index("N"), classes.index("S")])
    assert (made[~ns] == rule[~ns]).all() and np.isin(made[ns], [classes.index("N"), classes.index("S")]).all()
    if not stage["chosen"]:
        assert (made == rule).all()


def _biased_scores(rng, n_per_record=60, records=6, bias=0.0):
    """Three learnable classes and a rare fourth (never predicted); class 1's true beats score a
    little below class 0 in every record unless ``bias`` < 0 -- the kind of miscalibration a
    class-weighted model carries from DS1 to new patients alike."""
    y_idx = rng.integers(0, 3, size=n_per_record * records)
    y_idx[:2] = 3
    p = np.full((len(y_idx), 4), 0.05)
    p[np.arange(len(y_idx)), y_idx] = 0.6
    one = y_idx == 1
    p[one, 0] = 0.6 + 0.1 + bias  # class 1 loses to class 0 by a margin the offsets can undo
    p /= p.sum(axis=1, keepdims=True)
    y = np.eye(4)[y_idx]
    folds = [np.arange(r * n_per_record, (r + 1) * n_per_record) for r in range(records)]
    return y, p, folds


def test_auto_rule_takes_offsets_only_when_nested_folds_agree():
    rng = np.random.default_rng(0)
    base = np.array([0.0, 0.0, 0.0, -np.inf])
    y, p, folds = _biased_scores(rng)
    off, info, nested = beat_level.choose_rule(y, p, folds, base, "auto")
    assert info["chosen"] == "offsets" and info["cv_macro_f1_offsets"] > info["cv_macro_f1_argmax"]
    assert off[3] == -np.inf and off[1] > off[0]  # class 1 raised; the rare class stays out
    pred = (np.log(p) + off).argmax(axis=1)
    assert (pred[y[:, 1] == 1] == 1).all() and not (pred == 3).any()
    y, p, folds = _biased_scores(rng, bias=-0.3)  # calibrated: argmax is already right everywhere
    off, info, nested = beat_level.choose_rule(y, p, folds, base, "auto")
    assert (nested == (np.log(p) + base).argmax(axis=1)).all()  # argmax chosen: the out-of-fold argmax
    assert info["chosen"] == "argmax" and list(off) == list(base)
    assert beat_level.choose_rule(y, p, folds, base, "argmax")[0] is base
    with pytest.raises(UserError, match="unknown beat_rule 'median'"):
        beat_level.validate(_cfg(beat_rule="median"))


def _sn_problem(rng, informative: bool, n_per_record=200, records=6):
    """N/S/V beats. ``informative``: the main-model scores call every S beat N (its morphology looks
    normal) while S beats come early (short pre-RR) in every record; otherwise the scores are right
    about every beat and the timing is noise."""
    y_idx = rng.choice(3, size=n_per_record * records, p=[0.7, 0.15, 0.15])
    p = np.full((len(y_idx), 3), 0.1)
    p[np.arange(len(y_idx)), np.where(y_idx == 1, 0, y_idx) if informative else y_idx] = 0.8
    rr = rng.normal(1.0, 0.1, size=(len(y_idx), 3))
    if informative:
        rr[y_idx == 1, 0] -= 0.4  # premature
    folds = [np.arange(r * n_per_record, (r + 1) * n_per_record) for r in range(records)]
    return np.eye(3)[y_idx], p, rr, folds


def test_sn_stage_redecides_n_and_s_by_rr_only_when_ds1_folds_support_it():
    rng = np.random.default_rng(0)
    base = np.zeros(3)
    y, p, rr, folds = _sn_problem(rng, informative=True)
    _, _, nested = beat_level.choose_rule(y, p, folds, base, "argmax")
    t, info = beat_level.choose_sn_stage(y, nested, rr, folds, base, ["N", "S", "V"], "auto", seed=0, max_iter=200)
    assert info["chosen"] and info["cv_macro_f1_with"] > info["cv_macro_f1_without"] + 0.2 and t in beat_level.SN_THRESHOLDS
    p_s = beat_level.fit_sn_stage(rr, y.argmax(axis=1), 0, 1, seed=0, max_iter=200)(rr)
    staged = beat_level.apply_sn_stage(nested, p_s, 0, 1, t)
    truth = y.argmax(axis=1)
    assert (staged[truth == 1] == 1).mean() > 0.9 and (staged[truth == 0] == 0).mean() > 0.9
    assert (staged[nested == 2] == 2).all()  # V calls are not the stage's to change
    y, p, rr, folds = _sn_problem(rng, informative=False)  # the rule is right, timing is noise: no stage
    _, _, nested = beat_level.choose_rule(y, p, folds, base, "argmax")
    t, info = beat_level.choose_sn_stage(y, nested, rr, folds, base, ["N", "S", "V"], "auto", seed=0, max_iter=200)
    assert t is None and info["chosen"] is False
    assert beat_level.choose_sn_stage(y, nested, rr, folds, base, ["N", "S", "V"], "none", seed=0, max_iter=200)[0] is None
    assert beat_level.choose_sn_stage(y, nested, rr, folds, base, ["N", "V", "F"], "rr", seed=0, max_iter=200)[0] is None
    with pytest.raises(UserError, match="unknown beat_sn_stage 'timing'"):
        beat_level.validate(_cfg(beat_sn_stage="timing"))


def test_fixed_rule_and_balanced_weights():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    assert list(beat_level.decision_rule(labels, 4, min_beats=5)) == [0.0, 0.0, -np.inf, -np.inf]
    w = beat_level.balanced_weights(labels, 4)
    np.testing.assert_allclose(w, [100 / (3 * 90), 100 / (3 * 9), 100 / 3, 0.0])


def test_beat_fine_tune_reads_the_beat_and_rr(tiny, mitbih):
    cfg = _cfg(beat_readout="beat", beat_window_s=2.0, beat_rr=True, finetune_epochs=1, finetune_batch_size=64,
               finetune_patience=1, n_boot=20)
    y, _ = mitbih.labels("aami")
    train = mitbih.split_indices("train")[:256]
    ev = beat_level.run_beat_fine_tune(tiny, mitbih, "aami", train, cfg=cfg, seed=0, progress=False, max_eval=600,
                                       max_val=300)
    assert ev.info["n_train"] == 256 and len(ev.history) == 1
    clf = tiny.fine_tune(mitbih, train[:64], mitbih.split_indices("val")[:32], y, multilabel=False, progress=False,
                         epochs=1, readout=beat_level.readout(mitbih, cfg), extra=np.zeros((len(mitbih), 10), np.float32))
    assert clf.crop == (400, 600) and clf.positions is not None and clf.head.in_features == tiny.embedding_dim + 10
    with pytest.raises(ValueError, match="pass the rows' idx"):
        clf(mitbih.batch(train[:2], torch.device("cpu")))


def test_record_norm_subtracts_the_causal_record_mean(mitbih):
    """beat_norm=record: each beat's readout minus the mean over its record's beats at or before it
    (in sample order), whatever subset is asked for; a later beat never changes an earlier output."""
    meta = mitbih.meta
    rng = np.random.default_rng(0)
    table = rng.normal(size=(len(meta), 3))
    centred = beat_level.record_centred(lambda d, idx: table[np.asarray(idx)], mitbih)
    rec = meta["record"].astype(str).to_numpy()
    samples = meta["sample"].to_numpy()
    first = str(rec[0])
    rows = np.flatnonzero(rec == first)
    rows = rows[np.argsort(samples[rows], kind="stable")]
    other = np.flatnonzero(rec != first)[:5]
    ask = np.r_[rows[[7, 0, 30]], other]  # any order, two records
    got = centred(mitbih, ask)
    for k, i in enumerate(rows[[7, 0, 30]]):
        upto = rows[: int(np.flatnonzero(rows == i)[0]) + 1]
        np.testing.assert_allclose(got[k], table[i] - table[upto].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], 0.0, atol=1e-7)  # a record's first beat: nothing to differ from yet
    table[rows[31:]] += 100.0  # later beats change: earlier outputs do not
    np.testing.assert_allclose(centred(mitbih, rows[[7, 0, 30]]), got[:3], rtol=1e-5, atol=1e-6)
    feats = beat_level.beat_embed(lambda d, idx, **kw: table[np.asarray(idx)], mitbih, _cfg(beat_norm="record"))
    assert feats(mitbih, rows[:4]).shape == (4, 3 + 10)  # centred readout + the (uncentred) RR features
    with pytest.raises(UserError, match="unknown beat_norm 'patient'"):
        beat_level.validate(_cfg(beat_norm="patient"))
