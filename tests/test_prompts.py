"""Zero-shot prompt files and the open_clip-style classifier weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.data import cinc2017, mitbih, ptbxl
from benchmark.errors import UserError
from benchmark.registry import TEXT_ENCODERS
from methods.embedding_cache import CachedTextEncoder
from methods.prompts import (
    PAPER_TEMPLATE,
    REPORT_TEMPLATE,
    available_prompt_sets,
    load_prompts,
    prompt_templates,
    zero_shot_weights,
)

EXPECTED = {
    ("ptbxl", "superdiagnostic"), ("ptbxl", "subdiagnostic"), ("ptbxl", "form"), ("ptbxl", "rhythm"),
    ("mitbih", "aami"), ("mitbih", "pvc"), ("cinc2017", "rhythm"), ("cinc2017", "af"),
}


@pytest.fixture(scope="module")
def data_classes(data_root) -> dict[tuple[str, str], tuple[str, ...]]:
    """Each task's class list exactly as the data modules define it."""
    tc = ptbxl.task_classes(ptbxl.read_statements(data_root / "ptb-xl"))
    out = {("ptbxl", t): tc[t][0] for t in ("superdiagnostic", "subdiagnostic", "form", "rhythm")}
    out[("mitbih", "aami")] = mitbih.AAMI_CLASSES
    out[("mitbih", "pvc")] = mitbih.PVC_CLASSES
    out[("cinc2017", "rhythm")] = cinc2017.CLASSES
    out[("cinc2017", "af")] = cinc2017.AF_CLASSES
    return out


def test_every_task_has_a_prompt_file():
    assert set(available_prompt_sets()) == EXPECTED


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_prompt_classes_match_the_data_modules(key, data_classes):
    prompts = load_prompts(*key)
    assert tuple(prompts) == tuple(data_classes[key])  # same classes, same canonical order
    assert tuple(load_prompts(*key, classes=data_classes[key])) == tuple(data_classes[key])
    n_templates = len(prompt_templates(*key))
    for cls, items in prompts.items():
        assert len(items) >= n_templates and len(items) % n_templates == 0
        assert len(set(items)) == len(items)
        assert all("{label}" not in p and p.strip() for p in items)


def test_ptbxl_superdiagnostic_sizes(data_classes):
    assert data_classes[("ptbxl", "superdiagnostic")] == ("NORM", "MI", "STTC", "CD", "HYP")
    assert [len(data_classes[("ptbxl", t)]) for t in ("subdiagnostic", "form", "rhythm")] == [23, 19, 12]


def test_template_sets():
    paper = load_prompts("ptbxl", "superdiagnostic", template_set="paper")
    assert paper["MI"][0] == PAPER_TEMPLATE.replace("{label}", "myocardial infarction")
    assert all(p.startswith("The ECG of ") for ps in paper.values() for p in ps)
    report = load_prompts("ptbxl", "superdiagnostic", template_set="report")
    assert all(p.startswith("The report of the ECG is that ") for ps in report.values() for p in ps)
    full = load_prompts("ptbxl", "superdiagnostic")
    assert all(len(full[c]) == len(paper[c]) * len(prompt_templates("ptbxl", "superdiagnostic")) for c in full)
    assert set(paper["NORM"]) | set(report["NORM"]) <= set(full["NORM"])
    assert REPORT_TEMPLATE in prompt_templates("mitbih", "aami")


@pytest.mark.parametrize(
    "args",
    [("nope", "superdiagnostic"), ("ptbxl", "nope"), ("ptbxl", "superdiagnostic", "nope")],
)
def test_unknown_names_are_user_errors(args):
    with pytest.raises(UserError) as err:
        load_prompts(*args)
    assert "\n" not in str(err.value)


def test_missing_class_is_a_user_error():
    with pytest.raises(UserError, match="'XYZ'"):
        load_prompts("ptbxl", "superdiagnostic", classes=("NORM", "XYZ"))


class _Table:
    """A stand-in encoder with hand-picked vectors, to check the arithmetic exactly."""

    def __init__(self, table):
        self.table = table

    def encode(self, texts):
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def test_zero_shot_weights_by_hand():
    enc = _Table({"a1": [3, 4], "a2": [10, 0], "b1": [0, -2]})
    w = zero_shot_weights(enc, {"A": ["a1", "a2"], "B": ["b1"]})
    # A: mean of (0.6, 0.8) and (1, 0) = (0.8, 0.4) -> normalised
    np.testing.assert_allclose(w, [[0.8 / np.hypot(0.8, 0.4), 0.4 / np.hypot(0.8, 0.4)], [0, -1]], atol=1e-6)
    flip = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    wp = zero_shot_weights(enc, {"A": ["a1", "a2"]}, project=lambda x: torch.from_numpy(x) @ flip)
    np.testing.assert_allclose(wp, w[:1, ::-1], atol=1e-6)


def test_zero_shot_weights_with_minilm_point_to_the_right_class(tmp_path):
    enc = CachedTextEncoder(TEXT_ENCODERS.create("minilm", device="cpu"), tmp_path)
    prompts = load_prompts("ptbxl", "superdiagnostic")
    w = zero_shot_weights(enc, prompts)
    assert w.shape == (5, 384)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1, atol=1e-5)
    reports = {
        "NORM": "sinus rhythm. normal ecg.",
        "MI": "q waves in ii, iii, avf consistent with old inferior myocardial infarction.",
        "HYP": "sinus rhythm. left ventricular hypertrophy.",
        "CD": "sinus rhythm. complete right bundle branch block.",
    }
    e = enc.encode(list(reports.values()))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    predicted = [list(prompts)[i] for i in (e @ w.T).argmax(axis=1)]
    assert predicted == list(reports)
    calls = enc.encoder.calls
    np.testing.assert_array_equal(zero_shot_weights(enc, prompts), w)  # prompts come from the cache
    assert enc.encoder.calls == calls
