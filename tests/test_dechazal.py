"""The de Chazal baseline: its method contract on MIT-BIH, the jobs the protocols plan for it, the
class-weighted linear discriminant and the record-wise cross-validation helpers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from baselines.dechazal import DeChazal, WeightedLD, class_table, macro_f1, record_cv
from benchmark.data.beats import record_folds
from benchmark.data.base import SplitAccessError
from benchmark.data.beats import beat_features, feature_names
from benchmark.data.mitbih import MITBIH
from benchmark.errors import UserError
from benchmark.method import load_method
from benchmark.protocols.base import MethodTraits, get_protocol, unsupported
from benchmark.registry import METHODS, load_builtin_plugins

load_builtin_plugins()


@pytest.fixture(scope="module")
def mitbih(data_root, tmp_path_factory):
    from benchmark.data.store import prepare

    return prepare("mitbih", data_root, tmp_path_factory.mktemp("mitbih-dechazal"), progress=False)


def rows_of(ds, record: str, n: int | None = None) -> np.ndarray:
    idx = np.flatnonzero(ds.meta["record"].astype(str).to_numpy() == record)
    return idx if n is None else idx[:: max(1, len(idx) // n)][:n]


def test_registered_with_its_traits():
    cls = METHODS.entry("dechazal").meta["cls"]
    assert cls is DeChazal and not cls.needs_pretraining and cls.only_datasets == ("mitbih",)
    with pytest.raises(UserError, match="unknown setting"):
        METHODS.create("dechazal[no_such_setting=1]")


def test_encode_matches_the_feature_module_and_reads_only_the_records_asked(mitbih, data_root):
    m = METHODS.create("dechazal", device="cpu")
    idx = np.r_[rows_of(mitbih, "101", 40), rows_of(mitbih, "106", 25)][::-1]  # unsorted, two records
    z = m.encode_ecg(mitbih, idx)
    assert z.shape == (len(idx), m.embedding_dim) and z.dtype == np.float32 and np.isfinite(z).all()
    assert m.embedding_dim == len(feature_names(True))
    # the same as the feature module on each whole record (RR features need every beat of it)
    for rec in ("101", "106"):
        rows = rows_of(mitbih, rec)
        direct, _ = beat_features(mitbih.meta.iloc[rows], lambda r: MITBIH.read_mlii(data_root / "mitdb", r))
        want = {int(r): direct[i] for i, r in enumerate(rows)}
        got = z[np.isin(idx, rows)]
        np.testing.assert_array_equal(got, np.stack([want[int(r)] for r in idx[np.isin(idx, rows)]]))
    cached = next(iter(m._cache.values()))
    computed = np.unique(mitbih.meta["record"].astype(str).to_numpy()[~np.isnan(cached[:, 0])])
    assert computed.tolist() == ["101", "106"]
    rr_only = METHODS.create("dechazal[morphology=false]", device="cpu")
    assert rr_only.encode_ecg(mitbih, idx).shape == (len(idx), len(feature_names(False)))


def test_split_guard_holds_for_the_360_hz_read(mitbih):
    m = METHODS.create("dechazal", device="cpu")
    test_row = mitbih.split_indices("test")[:3]
    with mitbih.forbid("test"):
        m.encode_ecg(mitbih, mitbih.split_indices("train")[:3])
        with pytest.raises(SplitAccessError):
            m.encode_ecg(mitbih, test_row)
    assert np.isfinite(m.encode_ecg(mitbih, test_row)).all()


def test_other_datasets_and_fine_tune_are_one_line_errors(ptbxl_set, mitbih):
    m = METHODS.create("dechazal", device="cpu")
    with pytest.raises(UserError, match="MIT-BIH") as err:
        m.encode_ecg(ptbxl_set, [0, 1])
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="fine-tune"):
        m.ecg_backbone()


def test_save_load_and_determinism(mitbih, tmp_path):
    m = METHODS.create("dechazal", device="cpu", seed=3)
    assert m.pretrain(mitbih, mitbih.split_indices("train")[:10]) == []
    idx = rows_of(mitbih, "101", 30)
    z = m.encode_ecg(mitbih, idx)
    path = m.save(tmp_path / "dechazal.pt")
    assert np.array_equal(load_method(path, device="cpu").encode_ecg(mitbih, idx), z)
    assert np.array_equal(METHODS.create("dechazal", device="cpu", seed=7).encode_ecg(mitbih, idx), z)


def test_source_root_falls_back_to_the_data_root(mitbih, monkeypatch, data_root):
    m = DeChazal(device="cpu")
    moved = SimpleNamespace(manifest={**mitbih.manifest, "data_root": "/nonexistent/mitdb"})
    monkeypatch.setenv("ECGBENCH_DATA_ROOT", str(data_root))
    assert m.source_root(moved) == Path(data_root) / "mitdb"
    monkeypatch.setenv("ECGBENCH_DATA_ROOT", "/nonexistent")
    with pytest.raises(UserError, match="is gone"):
        m.source_root(moved)


def plan(protocol: str, spec: str) -> list:
    from benchmark.config import build_config

    cfg = build_config("shared")
    ctx = SimpleNamespace(cfg=cfg, dataset_tasks=lambda name: ["aami"] if name == "mitbih" else ["rhythm"])
    return get_protocol(protocol).jobs(spec, 0, MethodTraits(False, False), ctx)


def test_protocols_plan_only_the_mitbih_probe(caplog, monkeypatch):
    from benchmark.protocols import base

    monkeypatch.setattr(base, "_told", set())  # the skip is logged once per process: forget earlier plans
    jobs = plan("cross-dataset", "dechazal[lowpass_hz=30]")
    assert [(j.dataset, j.mode, j.task) for j in jobs] == [("mitbih", "linear-probe", "aami")]
    assert plan("few-label", "dechazal") == []
    assert any("skipping" in r.getMessage() and "few-label" in r.getMessage() for r in caplog.records)
    # other methods keep every job
    full = plan("cross-dataset", "random-init")
    assert {(j.dataset, j.mode) for j in full} >= {("mitbih", "fine-tune"), ("cinc2017", "linear-probe")}
    assert unsupported("random-init", "cinc2017", "fine-tune") is None
    assert unsupported("dechazal", "cinc2017", "linear-probe") == "it embeds only mitbih rows"
    assert unsupported("dechazal", "mitbih", "fine-tune") == "it has no encoder to fine-tune"
    assert unsupported("no-such-method", "ptbxl", "fine-tune") is None


def test_weighted_ld_equals_lda_with_equal_priors():
    """The class-weighted pooled covariance is the equal-prior average of the class covariances, which
    is what scikit-learn's LDA computes when told equal priors: the predictions must agree."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rng = np.random.default_rng(0)
    sizes, centres = [2000, 150, 40], np.array([[0, 0, 0], [1.5, 0.5, 0], [0, 2, 1]])
    A = rng.normal(size=(3, 3))
    X = np.concatenate([rng.normal(size=(n, 3)) @ A + c for n, c in zip(sizes, centres)])
    y = np.repeat(["N", "S", "V"], sizes)
    ours = WeightedLD().fit(X, y)
    ref = LinearDiscriminantAnalysis(solver="lsqr", priors=np.ones(3) / 3).fit(X, y)
    Xt = rng.normal(size=(3000, 3)) @ A + np.array([0.5, 1.0, 0.5])
    assert np.array_equal(ours.predict(Xt), ref.predict(Xt))
    np.testing.assert_allclose(ours.predict_proba(Xt).sum(axis=1), 1.0)
    # equal weighting helps the rare classes against a plain majority rule
    plain = LinearDiscriminantAnalysis(solver="lsqr").fit(X, y)
    assert class_table(y, ours.predict(X), "S")["S"]["se"] > class_table(y, plain.predict(X), "S")["S"]["se"] + 10
    with pytest.raises(UserError):
        WeightedLD(shrinkage=2)
    with pytest.raises(UserError):
        WeightedLD().fit(X[:5], np.repeat("N", 5))


def test_class_table_and_macro_f1_by_hand():
    t = class_table(list("NNNNSSV"), list("NNNSSVV"), "NSVF")
    assert t["N"] == {"n": 4, "se": 75.0, "ppv": 100.0, "f1": pytest.approx(200 * 3 / 7)}
    assert t["S"]["se"] == 50.0 and t["S"]["ppv"] == 50.0 and t["V"]["ppv"] == 50.0
    assert t["F"]["n"] == 0 and np.isnan(t["F"]["se"]) and np.isnan(t["F"]["ppv"])
    assert macro_f1(list("NNNNSSV"), list("NNNSSVV"), "NS") == pytest.approx((200 * 3 / 7 + 50) / 2)


def test_record_folds_never_split_a_record_and_cv_uses_only_given_rows():
    records = np.repeat(["101", "106", "108", "109", "112"], [5, 3, 4, 2, 6])
    folds = record_folds(records, 3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(records)))
    for f in folds:
        inside = set(records[f])
        assert all(set(records[g]).isdisjoint(inside) for g in folds if g is not f)
    rng = np.random.default_rng(1)
    y = np.where(rng.random(len(records)) < 0.5, "N", "V")
    X = np.c_[(y == "V") * 3.0 + rng.normal(size=len(y)) * 0.1, rng.normal(size=len(y))]
    best, scores = record_cv(X, y, records, {"ld": WeightedLD, "ld-noise": WeightedLD}, classes="NV", n_folds=3,
                             columns={"ld-noise": np.array([1])})
    assert best == "ld" and scores["ld"] == 100.0 and scores["ld-noise"] < 100.0
    with pytest.raises(UserError):
        record_folds(np.array(["101", "101"]), 2)
