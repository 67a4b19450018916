"""Catalogue-derived prompts: reproducible from the shared data's catalogues, loadable like the hand-written ones."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from benchmark.errors import DataError
from benchmark.protocols.text_ceiling import is_negated
from methods.prompt_catalogue import CATALOGUE_DIR, generate, ptbxl_catalogue
from methods.prompts import available_prompt_sets, load_prompts


def test_committed_files_equal_a_fresh_generation(data_root, tmp_path):
    paths = generate(data_root, tmp_path)
    assert {p.name for p in paths} == {f"{d}_{t}.json" for d, t in available_prompt_sets()}
    for p in paths:
        assert p.read_text() == (CATALOGUE_DIR / p.name).read_text(), f"{p.name}: run python -m methods.prompt_catalogue"


def test_superdiagnostic_classes_hold_their_statements(data_root):
    st = pd.read_csv(data_root / "ptb-xl" / "scp_statements.csv", index_col=0)
    cat = ptbxl_catalogue(st, "superdiagnostic", ["NORM", "MI", "STTC", "CD", "HYP"])
    for cls, desc in cat.items():
        for code in st.index[st["diagnostic_class"] == cls]:
            assert st.loc[code, "description"].lower() in desc, (cls, code)
    assert not any(d.startswith("in ") for v in cat.values() for d in v)
    with pytest.raises(DataError, match="no statement"):
        ptbxl_catalogue(st, "form", ["NO_SUCH_CODE"])


@pytest.mark.parametrize("dataset,task", available_prompt_sets())
def test_catalogue_prompts_load_in_the_callers_order(dataset, task):
    hand = load_prompts(dataset, task)
    order = list(reversed(list(hand)))
    cat = load_prompts(dataset, task, template_set="catalogue", classes=order)
    assert list(cat) == order and all(cat[c] for c in order)
    n_templates = len(json.loads((CATALOGUE_DIR / f"{dataset}_{task}.json").read_text())["templates"])
    assert all(len(v) % n_templates == 0 for v in cat.values())


def test_pvc_catalogue_has_no_negations():
    body = json.loads((CATALOGUE_DIR / "mitbih_pvc.json").read_text())
    assert body["classes"]["V"] == ["premature ventricular contraction"]
    assert not any(is_negated(d) for d in body["classes"]["non-V"])
