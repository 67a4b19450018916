"""The text-ceiling protocol: reports classified with the class prompts, in the trained tower and the bare LM."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.errors import UserError
from benchmark.protocols import text_ceiling
from benchmark.registry import METHODS, load_builtin_plugins

load_builtin_plugins()

TINY = dict(encoder="resnet1d-tiny", epochs=1, batch_size=8, max_steps_per_epoch=2, device="cpu", seed=0)


@pytest.fixture(scope="module")
def mets(ptbxl_set, tmp_path_factory):
    m = METHODS.create("mets", **TINY, cache_dir=str(tmp_path_factory.mktemp("c")))
    m.pretrain(ptbxl_set, ptbxl_set.split_indices("train")[:24], ptbxl_set.split_indices("val")[:8], progress=False)
    return m


def _macro(ev):
    return next(r["value"] for r in ev.rows if r["metric"] == "auroc" and r["class"] == "")


def test_negation_detector():
    for d in ("no premature ventricular contraction", "non-ventricular beat", "no atrial fibrillation",
              "rhythm without p waves"):
        assert text_ceiling.is_negated(d), d
    for d in ("normal beat", "premature ventricular contraction", "sinus rhythm", "atrial fibrillation",
              "normal or other rhythm", "notched p wave"):
        assert not text_ceiling.is_negated(d), d


def test_bare_lm_reads_the_reports(mets, ptbxl_set):
    """MiniLM alone, reports vs prompts, on the real test reports: clearly above chance (the
    measured value on the shared slice is ~0.75); the untrained tower of a 2-step model is
    evaluated on the same rows."""
    bare = text_ceiling.run(mets, ptbxl_set, "superdiagnostic", mode="bare-lm", n_boot=20)
    tower = text_ceiling.run(mets, ptbxl_set, "superdiagnostic", mode="text-tower", n_boot=20)
    assert _macro(bare) > 0.65
    assert np.isfinite(_macro(tower))
    n_test = len(ptbxl_set.split_indices("test"))
    assert bare.info["n_test"] + bare.info["empty_reports_excluded"]["test"] <= n_test
    assert bare.info["n_test"] == tower.info["n_test"]


def test_text_scores_rank_a_report_by_its_own_words(mets):
    prompts = {"NORM": ["normal ecg"], "AFIB": ["atrial fibrillation"]}
    s = text_ceiling.text_scores(mets, "bare-lm", ["The report of the ECG is that atrial fibrillation.",
                                                   "The report of the ECG is that normal ecg."], prompts, True)
    assert s[0, 1] > s[0, 0] and s[1, 0] > s[1, 1]
    with pytest.raises(UserError, match="text-ceiling mode"):
        text_ceiling.text_scores(mets, "ecg", ["x"], prompts, True)


def test_pvc_proxy_and_negation_rows(mets, ptbxl_set):
    y, valid = ptbxl_set.labels("form")
    test = ptbxl_set.split_indices("test")
    n_pvc = int(y[test[valid[test]], ptbxl_set.task("form").classes.index("PVC")].sum())
    ev = text_ceiling.run(mets, ptbxl_set, "mitbih-pvc", mode="bare-lm", n_boot=20)
    assert ev.info["n_positive"] <= n_pvc and set(ev.scores["class"]) == {"non-V", "V"}
    no_neg = text_ceiling.run(mets, ptbxl_set, "mitbih-pvc-no-negation", mode="bare-lm", n_boot=20)
    assert not any(text_ceiling.is_negated(p.split("{")[0]) for p in no_neg.info["prompts"]["non-V"]
                   for p in [p.replace("The ECG of", "").replace("The report of the ECG is that", "")])
    cos = text_ceiling.run(mets, ptbxl_set, "mitbih-pvc-negation-cosine", mode="bare-lm")
    by = {r["class"]: r["value"] for r in cos.rows}
    # the negation embeds closer to what it negates than the plain negative description does
    assert by["no premature ventricular contraction"] > by["normal beat"]


def test_single_lead_view_keeps_one_lead(ptbxl_set):
    view = text_ceiling._SingleLead(ptbxl_set, "II")
    x = view.batch(ptbxl_set.split_indices("test")[:3])
    full = ptbxl_set.batch(ptbxl_set.split_indices("test")[:3])
    assert (x[:, 1] == full[:, 1]).all() and x[:, [0] + list(range(2, 12))].abs().sum() == 0


def test_planned_jobs():
    jobs = text_ceiling.planned(["superdiagnostic"], {"mitbih": ["pvc"], "cinc2017": ["rhythm"]})
    assert ("text-tower", "ptbxl", "superdiagnostic") in jobs and ("bare-lm", "ptbxl", "superdiagnostic") in jobs
    assert ("ecg", "mitbih", "pvc-no-negation") in jobs
    assert not any(t.startswith("cinc2017-af") for _, _, t in jobs)  # af is not evaluated cross-dataset here


def test_methods_without_text_tower_are_refused(ptbxl_set, tmp_path):
    m = METHODS.create("simclr", **TINY, cache_dir=str(tmp_path))
    with pytest.raises(UserError, match="no text tower"):
        text_ceiling.run(m, ptbxl_set, "superdiagnostic", mode="bare-lm")
