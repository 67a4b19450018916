"""Protocol honesty on the real PTB-XL slice: seeded label subsets, selection on validation only."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.data.base import SplitAccessError
from benchmark.protocols import few_label
from benchmark.protocols.common import task_indices


def _features(data, idx):
    """Cheap hand-made ECG features (per-lead mean |x|, std, max) - a stand-in encoder."""
    x = data.raw(idx)
    return np.concatenate([np.abs(x).mean(-1), x.std(-1), x.max(-1)], axis=1)


def test_subset_is_seeded_stratified_and_sized(ptbxl_set):
    y, valid = ptbxl_set.labels("superdiagnostic")
    tr = ptbxl_set.split_indices("train")
    tr = tr[valid[tr]]
    a = few_label.draw_subset(y, tr, 0.01, seed=0)
    b = few_label.draw_subset(y, tr, 0.01, seed=0)
    c = few_label.draw_subset(y, tr, 0.01, seed=1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c), "the labelled subset must change with the seed"
    assert set(a) <= set(tr)
    classes_in_train = y[tr].sum(0) > 0
    for s in (a, c):
        assert len(s) >= math.ceil(0.01 * len(tr))
        assert (y[s].sum(0)[classes_in_train] > 0).all(), "every class keeps a positive"
    ten = few_label.draw_subset(y, tr, 0.1, seed=0)
    assert len(ten) == max(math.ceil(0.1 * len(tr)), classes_in_train.sum())
    assert np.array_equal(few_label.draw_subset(y, tr, 1.0, seed=3), np.sort(tr))


def test_forbid_blocks_test_reads(ptbxl_set):
    test = ptbxl_set.split_indices("test")[:3]
    with ptbxl_set.forbid("test"):
        ptbxl_set.batch(ptbxl_set.split_indices("val")[:3])
        with pytest.raises(SplitAccessError):
            ptbxl_set.batch(test)
    ptbxl_set.batch(test)  # allowed again outside the block


def test_probe_choices_do_not_depend_on_test_labels(ptbxl_set, monkeypatch):
    """Shuffling the test labels must leave C and the thresholds unchanged (they come from val),
    while the reported test AUROC changes (the test labels are used - for reporting only)."""
    data = ptbxl_set
    y, valid = data.labels("superdiagnostic")
    tr = data.split_indices("train")
    subset = few_label.draw_subset(y, tr[valid[tr]], 1.0, seed=0)

    def run():
        before = data.reads["test"]
        ev = few_label.run_linear_probe(_features, data, "superdiagnostic", subset, Cs=(0.01, 1.0),
                                        max_iter=300, n_boot=20, seed=0)
        n_test = len(task_indices(data, "superdiagnostic", "test"))
        assert data.reads["test"] - before == n_test, "test split read exactly once"
        return ev

    ev1 = run()
    labels = data._labels["superdiagnostic"].copy()
    test = data.split_indices("test")
    shuffled = labels.copy()
    shuffled[test] = labels[np.random.default_rng(0).permutation(test)]
    monkeypatch.setitem(data._labels, "superdiagnostic", shuffled)
    ev2 = run()
    assert ev1.info["C"] == ev2.info["C"]
    assert ev1.info["thresholds"] == ev2.info["thresholds"]
    auc = lambda ev: next(r["value"] for r in ev.rows if r["metric"] == "auroc" and r["class"] == "")  # noqa: E731
    assert auc(ev1) != auc(ev2)
