"""Report sections added for issue 13: the text-only ceiling beside zero-shot, and paired differences
of variants computed from the saved per-example scores (checked against the rows' own numbers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.report.build import make_report
from benchmark.report.claims import comparison_pairs
from benchmark.results import load_results_dir
from tests.test_report import SUPER, _scores, _write, build_results, load_real_labels

METHODS = {"mets[lm_train=frozen]": 1.6, "mets[lm_train=last-2]": 1.2, "merl": 1.4, "mets": 1.5}


def test_comparison_pairs():
    assert comparison_pairs(["mets[lm_train=frozen]", "mets[lm_train=last-2]", "mets[lm_train=all]"]) == [
        ("mets[lm_train=last-2]", "mets[lm_train=frozen]"), ("mets[lm_train=all]", "mets[lm_train=frozen]")]
    assert ("merl", "mets") in comparison_pairs(["mets", "merl"])
    assert comparison_pairs(["mets", "simclr"]) == []


@pytest.fixture(scope="module")
def report(tmp_path_factory, data_root):
    labels = load_real_labels(data_root)
    ptb = labels[0]
    root = tmp_path_factory.mktemp("tc")
    store = build_results(root / "results", labels, zero_shot=False, methods=METHODS, seeds=(0, 1), history=False,
                          panel=False)
    yv, yt = ptb["y"][ptb["fold"] == 9], ptb["y"][ptb["fold"] == 10]
    for mi, method in enumerate(METHODS):
        for seed in (0, 1):
            rng = np.random.default_rng(50 + 10 * mi + seed)
            for protocol, mode, strength in (("zero-shot", "zero-shot", METHODS[method]),
                                             ("text-ceiling", "text-tower", 2.5), ("text-ceiling", "bare-lm", 1.0)):
                _write(store, {"method": method, "seed": seed, "protocol": protocol, "mode": mode,
                               "dataset": "ptbxl", "task": "superdiagnostic"},
                       yt, _scores(yt, strength, rng), SUPER, True, yv, _scores(yv, strength, rng))
    index = make_report([store.root], root / "report", paired_boot=50)  # few resamples: a quick test
    return store, index


def _macro(rows, **f):
    r = rows[(rows["metric"] == "auroc") & (rows["class"] == "")]
    for k, v in f.items():
        r = r[r[k] == v]
    return r


def test_text_ceiling_table_sits_beside_zero_shot(report):
    store, index = report
    rows = load_results_dir(store.root)
    t = pd.read_csv(index.parent / "tables" / "text_ceiling.csv")
    for method in METHODS:
        for col, f in (("ECG zero-shot", {"protocol": "zero-shot"}), ("text tower (ceiling)", {"mode": "text-tower"}),
                       ("bare LM", {"mode": "bare-lm"})):
            want = _macro(rows, method=method, dataset="ptbxl", task="superdiagnostic", **f)["value"].mean()
            got = t[(t["row"] == f"{method} · superdiagnostic") & (t["col"] == col)]["mean"]
            assert got.iloc[0] == pytest.approx(want)
    text = index.read_text()
    assert "## Text-only ceiling" in text and "text tower (ceiling)" in text
    main = pd.read_csv(index.parent / "tables" / "main.csv")
    assert "text-ceiling" not in set(main["protocol"])


def test_variant_comparisons_match_the_rows(report):
    store, index = report
    rows = load_results_dir(store.root)
    text = index.read_text()
    assert "**Variant comparisons**" in text
    for a, b in (("mets[lm_train=last-2]", "mets[lm_train=frozen]"), ("merl", "mets")):
        va = _macro(rows, method=a, protocol="zero-shot", task="superdiagnostic").sort_values("seed")["value"]
        vb = _macro(rows, method=b, protocol="zero-shot", task="superdiagnostic").sort_values("seed")["value"]
        want = f"| {a} − {b} | ZS PTB-XL superdiagnostic | {(va.to_numpy() - vb.to_numpy()).mean():+.3f} ["
        assert want in text, want
