"""Reports: tables hold exactly the numbers of the results, every figure is written, missing
pieces are marked absent, several folders merge, and no model code (torch) is imported.

The results folder is built the way the harness builds it -- rows from ``benchmark.stats.metrics.evaluate``
written through ``ResultStore`` -- on real labels (PTB-XL superdiagnostic folds 9/10, MIT-BIH
PVC beats of record 119, CinC 2017 AF labels) with synthetic scores whose strength depends on
the method, label fraction and seed, plus a real-ECG panel and loss curves.
"""

from __future__ import annotations

import ast
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from benchmark.stats.metrics import choose_thresholds, evaluate
from benchmark.report.build import make_report
from benchmark.results import ResultStore, env_info, make_job_id, scores_frame

SUPER = ["NORM", "MI", "STTC", "CD", "HYP"]
METHODS = {"mets": 1.6, "mets[lm=tfidf]": 1.1, "supervised": 1.3}
TEXT = {"mets", "mets[lm=tfidf]"}
SEEDS = (0, 1, 2)
FRACTIONS = (0.01, 0.1, 1.0)
N_BOOT = 25


@pytest.fixture(scope="module")
def real_labels(data_root):
    return load_real_labels(data_root)


def load_real_labels(data_root):
    import wfdb

    db = pd.read_csv(data_root / "ptb-xl" / "ptbxl_database.csv")
    scp = pd.read_csv(data_root / "ptb-xl" / "scp_statements.csv", index_col=0)
    diag = scp[scp["diagnostic"] == 1]["diagnostic_class"].to_dict()
    y = np.zeros((len(db), len(SUPER)), dtype=int)
    for i, codes in enumerate(db["scp_codes"]):
        for code in ast.literal_eval(codes):
            if code in diag and diag[code] in SUPER:
                y[i, SUPER.index(diag[code])] = 1
    keep = y.sum(axis=1) > 0
    ptb = {"y": y[keep], "fold": db["strat_fold"].to_numpy()[keep], "ids": db["ecg_id"].to_numpy()[keep],
           "reports": db["report"].to_numpy()[keep], "files": db["filename_lr"].to_numpy()[keep]}
    ann = wfdb.rdann(str(data_root / "mitdb-pvc" / "119"), "pvc")
    v = (np.asarray(ann.symbol) == "V")[:600].astype(int)
    pvc = np.stack([1 - v, v], axis=1)
    ref = pd.read_csv(data_root / "cinc2017" / "REFERENCE.csv").head(500)
    af = (ref["class"] == "A").to_numpy().astype(int)
    cinc = np.stack([1 - af, af], axis=1)
    return ptb, pvc, cinc


def _scores(y, strength, rng):
    return strength * y + rng.normal(0, 1, y.shape)


def _write(store, key, y, s, classes, multilabel, y_val=None, s_val=None, created=None):
    thr = choose_thresholds(y_val, s_val) if multilabel and y_val is not None else None
    rows = evaluate(y, s, classes, multilabel=multilabel, thresholds=thr, n_boot=N_BOOT, seed=key["seed"])
    env = env_info("cpu")
    lf = key.get("label_fraction")
    for r in rows:
        r.update(key, method_name=key["method"].split("[")[0], config_hash="test", run_id="test-run",
                 label_fraction=math.nan if lf is None else lf, **env)
        if created:
            r["created"] = created
    jid = make_job_id(key)
    store.write_job(jid, rows, scores_frame([f"e{i}" for i in range(len(y))], classes, y, s))
    return rows


def build_results(out, labels, *, zero_shot=True, methods=METHODS, seeds=SEEDS, history=True, panel=True,
                  data_root=None, shift=0.0, created=None):
    ptb, pvc, cinc = labels
    store = ResultStore(out)
    val, test = ptb["fold"] == 9, ptb["fold"] == 10
    yv, yt = ptb["y"][val], ptb["y"][test]
    for mi, (method, strength) in enumerate(methods.items()):
        for seed in seeds:
            rng = np.random.default_rng(1000 * mi + seed)
            strength_s = strength + shift + 0.1 * rng.normal()
            base = {"method": method, "seed": seed}
            if zero_shot and method in TEXT:
                _write(store, {**base, "protocol": "zero-shot", "mode": "zero-shot", "dataset": "ptbxl",
                               "task": "superdiagnostic"}, yt, _scores(yt, 0.6 * strength_s, rng), SUPER, True,
                       yv, _scores(yv, 0.6 * strength_s, rng), created)
                _write(store, {**base, "protocol": "cross-dataset", "mode": "zero-shot", "dataset": "cinc2017",
                               "task": "af"}, cinc, _scores(cinc, 0.5 * strength_s, rng), ["non-AF", "AF"], False,
                       created=created)
            for frac in FRACTIONS:
                for mode, gain in (("linear-probe", 1.0), ("fine-tune", 1.15)):
                    st = strength_s * gain * (0.5 + 0.5 * frac ** 0.3)
                    _write(store, {**base, "protocol": "few-label", "mode": mode, "dataset": "ptbxl",
                                   "task": "superdiagnostic", "label_fraction": frac},
                           yt, _scores(yt, st, rng), SUPER, True, yv, _scores(yv, st, rng), created)
            for dataset, task, y, classes in (("mitbih", "pvc", pvc, ["non-V", "V"]),
                                              ("cinc2017", "af", cinc, ["non-AF", "AF"])):
                _write(store, {**base, "protocol": "cross-dataset", "mode": "linear-probe", "dataset": dataset,
                               "task": task, "label_fraction": 1.0}, y, _scores(y, strength_s, rng), classes,
                       False, created=created)
            if history:
                ep = np.arange(5)
                store.write_history(f"{method}-s{seed}", pd.DataFrame({
                    "method": method, "method_name": method.split("[")[0], "seed": seed, "epoch": ep,
                    "train_loss": 4 * np.exp(-ep / (2 + mi)) + 0.1 * rng.random(5),
                    "val_loss": 4.2 * np.exp(-ep / (2.5 + mi)) + 0.1 * rng.random(5)}))
    if panel:
        import wfdb

        idx = np.flatnonzero(test)[:3]
        sig = np.zeros((3, 12, 1000), dtype=np.float32)
        for k, i in enumerate(idx):
            rec = wfdb.rdrecord(str(data_root / "ptb-xl" / ptb["files"][i]))
            sig[k] = np.nan_to_num(rec.p_signal.T[:, :1000])
        rng = np.random.default_rng(0)
        store.examples_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(store.examples_dir / "ecg_panel.npz", signals=sig, fs=100,
                            reports=ptb["reports"][idx].astype(str), ids=ptb["ids"][idx].astype(str),
                            classes=np.asarray(SUPER), scores=_scores(ptb["y"][idx], 1.0, rng).astype(np.float32),
                            labels=ptb["y"][idx], method=np.asarray("mets"))
    return store


@pytest.fixture(scope="module")
def full_report(tmp_path_factory, real_labels, data_root):
    root = tmp_path_factory.mktemp("report")
    store = build_results(root / "results", real_labels, data_root=data_root)
    index = make_report([store.root], root / "report")
    return store, index


def _read_table(report_dir, name):
    return pd.read_csv(report_dir / "tables" / f"{name}.csv", keep_default_na=False,
                       na_values=["", "nan", "NaN"], dtype={"class": str, "note": str})


KEY = ["method", "protocol", "mode", "dataset", "task", "label_fraction", "metric", "class"]


def _expected(rows, **filters):
    """Mean/SD over seeds and mean CI bounds, computed independently of the report code."""
    sel = rows
    for k, v in filters.items():
        sel = sel[sel[k] == v]
    sel = sel.assign(label_fraction=sel["label_fraction"].fillna(-1.0))
    g = sel.groupby(KEY)
    return pd.DataFrame({"e_mean": g["value"].mean(), "e_sd": g["value"].std(), "e_lo": g["ci_low"].mean(),
                         "e_hi": g["ci_high"].mean(), "e_seeds": g["seed"].nunique()}).reset_index()


def _check_table_numbers(table, rows, n_seeds=len(SEEDS), **filters):
    exp = _expected(rows, **filters)
    tab = table.assign(label_fraction=table["label_fraction"].fillna(-1.0), **{"class": table["class"].fillna("")})
    both = tab.merge(exp, on=KEY, how="left", validate="one_to_one")
    assert len(both) > 0 and both["e_seeds"].notna().all(), "a table cell has no matching result rows"
    for a, b in (("mean", "e_mean"), ("sd", "e_sd"), ("ci_low", "e_lo"), ("ci_high", "e_hi")):
        np.testing.assert_allclose(both[a].to_numpy(float), both[b].to_numpy(float), rtol=0, atol=1e-12,
                                   equal_nan=True, err_msg=a)
    assert (both["n_seeds"] == both["e_seeds"]).all() and (both["n_seeds"] == n_seeds).all()
    return both


def test_tables_hold_exactly_the_result_numbers(full_report):
    store, index = full_report
    rep = index.parent
    rows = store.load_rows()
    main = _read_table(rep, "main")
    _check_table_numbers(main, rows, **{"class": ""})
    with pytest.raises(AssertionError):  # the check itself can fail: a perturbed table is caught
        _check_table_numbers(main.assign(mean=main["mean"] + 1e-6), rows, **{"class": ""})
    # main: zero-shot + few-label at 100 % only + cross-dataset
    fl = main[main["protocol"] == "few-label"]
    assert set(fl["label_fraction"]) == {1.0}
    assert set(main["protocol"]) == {"zero-shot", "few-label", "cross-dataset"}
    # ZS PTB-XL + ZS CinC for the 2 text methods; LP/FT at 100 % and 2 cross-dataset probes for all
    assert len(main) == 2 * len(TEXT) + 4 * len(METHODS)
    few = _read_table(rep, "few_label")
    _check_table_numbers(few, rows, protocol="few-label", metric="auroc", **{"class": ""})
    assert len(few) == len(METHODS) * len(FRACTIONS) * 2
    zs = _read_table(rep, "zero_shot_per_class_ptbxl_superdiagnostic")
    _check_table_numbers(zs, rows, mode="zero-shot", metric="auroc")
    assert set(zs["class"].fillna("")) == set(SUPER) | {""}
    cross = _read_table(rep, "cross_dataset")
    _check_table_numbers(cross, rows, protocol="cross-dataset", **{"class": ""})
    assert set(cross["metric"]) == {"auroc", "f1"}
    abl = _read_table(rep, "ablation_mets")
    assert set(abl["method"]) == {"mets", "mets[lm=tfidf]"}
    _check_table_numbers(abl, rows, method_name="mets", **{"class": ""})
    # best per column: exactly the max mean of each column is marked
    for tab in (main, few, cross):
        for _, g in tab.groupby("col"):
            if len(g) > 1:
                assert g.loc[g["best"], "mean"].tolist() == [g["mean"].max()]


def test_markdown_and_latex_show_the_numbers_and_bold_the_best(full_report):
    store, index = full_report
    rep = index.parent
    main = _read_table(rep, "main")
    md = (rep / "tables" / "main.md").read_text()
    tex = (rep / "tables" / "main.tex").read_text()
    for _, r in main.iterrows():
        txt = f"{r['mean']:.3f}"
        assert (f"**{txt}**" in md) == bool(r["best"]) or md.count(txt) > 1
        assert txt in md and txt in tex
        assert f"± {r['sd']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" in md
    best = main[main["best"]]
    for _, r in best.iterrows():
        assert f"**{r['mean']:.3f}**" in md and rf"\textbf{{{r['mean']:.3f}}}" in tex
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"mets[lm=tfidf]" in tex
    assert "$\\pm$" in tex and "±" not in tex


def test_every_figure_written_and_indexed(full_report):
    _, index = full_report
    rep = index.parent
    expected = ["label_efficiency_ptbxl_superdiagnostic", "zero_shot_per_class_ptbxl_superdiagnostic",
                "zero_shot_per_class_cinc2017_af", "confusion_mitbih_pvc", "confusion_cinc2017_af",
                "ablation_mets", "pretraining_loss", "ecg_panel"]
    text = index.read_text()
    for name in expected:
        for ext in ("png", "pdf"):
            p = rep / "figures" / f"{name}.{ext}"
            assert p.is_file() and p.stat().st_size > 5000, p
            assert f"figures/{name}.{ext}" in text
    assert (rep / "figures" / "label_efficiency_ptbxl_superdiagnostic.png").read_bytes()[:4] == b"\x89PNG"
    assert (rep / "figures" / "ecg_panel.pdf").read_bytes()[:5] == b"%PDF-"
    # every section is present, except MIT-BIH AAMI (these results hold the PVC task only)
    body = {sec.split("\n", 1)[0]: sec for sec in text.split("\n## ")[1:]}
    # empty sections are not shown: one line each under 'Not in these results' says why
    missing = {line[2:].split(": *absent:*", 1)[0] for line in body.get("Not in these results", "").splitlines()
               if ": *absent:*" in line}
    assert not missing & set(body)  # an empty section has no heading of its own
    # absent: an empty section, or a section that marks a piece of itself absent (a claim not measured)
    absent = missing | {title for title, b in body.items() if "*absent:*" in b and title != "Not in these results"}
    # and the text-only ceiling (no text-ceiling rows here: tests/test_report_text_ceiling.py)
    assert absent == {"MIT-BIH AAMI (DS1 -> DS2)", "Paper comparison", "Text-only ceiling"}, absent
    assert "C1." in body["Paper comparison"] and "C2." in body["Paper comparison"]
    paired = pd.read_csv(rep / "tables" / "paired.csv")
    need = ["method_a", "method_b", "protocol", "mode", "dataset", "task", "label_fraction", "metric", "diff",
            "ci_low", "ci_high"]
    assert set(need) <= set(paired.columns)
    assert {"mets", "supervised"} <= set(paired["method_a"]) | set(paired["method_b"])
    assert "Paired differences" in body and "excludes 0" in body["Paired differences"]
    # every linked file exists
    import re

    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (rep / link).is_file(), link
    # scale and caveats at the top
    head = text.split("## Main comparison")[0]
    from benchmark.report.index import SMALL_N

    ns = pd.read_csv(rep / "tables" / "main.csv")["n"]
    n_test = int(ns.max())
    assert "Data scale and caveats" in head
    # the caveat is there exactly when some evaluation has fewer test examples than SMALL_N
    assert ("small test sets" in head) == bool((ns < SMALL_N).any())
    assert "PTB-XL superdiagnostic: n = " in head and "0, 1, 2 (3)" in head and "mets[lm=tfidf]" in head
    assert n_test > 0


def test_missing_pieces_are_marked_absent(tmp_path, real_labels, data_root):
    only_probe = {"simclr": 0.9, "supervised": 1.3}
    store = build_results(tmp_path / "res", real_labels, zero_shot=False, methods=only_probe, seeds=(0,),
                          history=False, panel=False, data_root=data_root)
    index = make_report([store.root], tmp_path / "rep")
    text = index.read_text()
    for section in ("Zero-shot per-class AUROC", "Figure: zero-shot per-class AUROC", "Ablation of method variants",
                    "Figure: pretraining loss curves", "Figure: ECG panel"):
        missing = text.split("## Not in these results\n", 1)[1].split("\n## ", 1)[0]
        assert f"- {section}: *absent:* " in missing and f"## {section}\n" not in text, section
    assert not list((tmp_path / "rep" / "figures").glob("zero_shot*"))
    assert (tmp_path / "rep" / "figures" / "label_efficiency_ptbxl_superdiagnostic.png").is_file()
    assert "one seed only" in text
    main = _read_table(tmp_path / "rep", "main")
    assert set(main["protocol"]) == {"few-label", "cross-dataset"} and main["sd"].isna().all()


def test_merged_folders_keep_latest(tmp_path, real_labels, data_root):
    m = {"simclr": 0.9}
    old = build_results(tmp_path / "old", real_labels, methods=m, seeds=(0,), history=False, panel=False,
                        data_root=data_root, created="2024-01-01T00:00:00+00:00")
    new = build_results(tmp_path / "new", real_labels, methods=m, seeds=(0,), history=False, panel=False,
                        data_root=data_root, shift=1.5, created="2025-01-01T00:00:00+00:00")
    extra = build_results(tmp_path / "extra", real_labels, methods={"supervised": 1.0}, seeds=(0,),
                          history=False, panel=False, data_root=data_root)
    index = make_report([new.root, old.root, extra.root], tmp_path / "rep")
    main = _read_table(index.parent, "main")
    both = _check_table_numbers(main[main["method"] == "simclr"], new.load_rows(), n_seeds=1, **{"class": ""})
    assert len(both) == len(main[main["method"] == "simclr"])
    assert set(main["method"]) == {"simclr", "supervised"}


def test_report_cli_and_no_torch(tmp_path, real_labels, data_root):
    """The CLI entry point works and the report never imports torch (results only)."""
    store = build_results(tmp_path / "res", real_labels, methods={"mets": 1.0}, seeds=(0,), history=False,
                          panel=False, data_root=data_root)
    code = (
        "import sys; from benchmark.cli import main; "
        f"rc = main(['report', '--results', r'{store.root}', '--out', r'{tmp_path / 'cli'}']); "
        "assert rc == 0, rc; assert 'torch' not in sys.modules, 'report imported torch'; "
        "rc = main(['report', '--results', r'" + str(tmp_path / "nowhere") + "']); assert rc == 2, rc"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "cli" / "index.md").is_file()
    assert "error: results folder" in res.stderr


def test_ablation_reference_is_the_variant_run_with_the_defaults():
    from benchmark.report.claims import comparison_pairs, default_variant

    variants = ["mets[lm=me5,report_text=both]", "mets[lm=me5,report_text=raw]", "mets[report_text=en]",
                "mets[report_text=raw]"]
    assert default_variant(variants) == "mets[report_text=en]"  # report_text=en is METS's default
    assert {ref for _, ref in comparison_pairs(variants)} == {"mets[report_text=en]"}
    # lm_train=frozen is the default too, and the written-out default is the reference
    assert {ref for _, ref in comparison_pairs(["mets[lm_train=all]", "mets[lm_train=frozen]"])} == {"mets[lm_train=frozen]"}
    assert {ref for _, ref in comparison_pairs(["mets", "mets[lm_train=frozen]"])} == {"mets[lm_train=frozen]"}
    assert {ref for _, ref in comparison_pairs(["mets", "mets[proj_dim=64]"])} == {"mets"}
    assert default_variant(["mets[proj_dim=64]", "mets[proj_dim=128]"]) is None  # no variant is the default


def test_variant_comparisons_are_holm_adjusted_as_one_family():
    """Six variant comparisons; one has raw p 0.01 and an interval that excludes 0. Holm (it is the
    second smallest p of six: x5) makes it 0.05: the report must not call it significant. The
    smallest, 0.001, survives (x6: 0.006)."""
    from benchmark.report.claims import variant_markdown

    ref, rows = "mets[report_text=en]", []
    ps = {("mets[report_text=raw]", "rhythm"): 0.01, ("mets[report_text=clean]", "rhythm"): 0.001}
    for v in ("mets[report_text=raw]", "mets[report_text=clean]", "mets[lm=me5,report_text=raw]"):
        for task in ("rhythm", "form"):
            p = ps.get((v, task), 0.5)
            rows.append(dict(method_a=ref, method_b=v, protocol="zero-shot", mode="zero-shot", dataset="ptbxl",
                             task=task, label_fraction=np.nan, metric="auroc", seed="mean",
                             diff=-0.08 if p < 0.05 else 0.01, ci_low=-0.14 if p < 0.05 else -0.03,
                             ci_high=-0.02 if p < 0.05 else 0.05, p_value=p))
    text = variant_markdown(pd.DataFrame(rows), [ref, *{r["method_b"] for r in rows}])
    assert "6 comparisons are one family" in text
    line = next(t for t in text.splitlines() if t.startswith("| mets[report_text=raw] − mets[report_text=en] | ZS PTB-XL rhythm"))
    assert line.endswith("| 0.010 | 0.050 | no |"), line
    line = next(t for t in text.splitlines() if t.startswith("| mets[report_text=clean] − mets[report_text=en] | ZS PTB-XL rhythm"))
    assert line.endswith("| 0.001 | 0.006 | yes: variant worse |"), line


def test_mitbih_decision_rules_come_from_each_jobs_meta_and_rows():
    """On the committed ``results/shared``: one row per MIT-BIH probe job; the rule is the one the
    nested DS1 estimate preferred (``beat_rule=auto``: offsets only where they score higher), argmax
    rows carry zero offsets, and the DS2 S/V numbers are the job's own result rows."""
    from pathlib import Path

    from benchmark.report import claims
    from benchmark.results import merge_results

    folder = Path(__file__).resolve().parents[1] / "results" / "shared"
    rows = merge_results([folder])
    probe = rows[(rows["dataset"] == "mitbih") & (rows["task"] == "aami") & (rows["mode"] == "linear-probe")]
    if probe.empty:
        pytest.skip("results/shared holds no MIT-BIH probe rows")
    t = claims.mitbih_rules([folder], rows)
    assert len(t) == probe["job_id"].nunique()
    assert set(t["rule"]) <= {"argmax", "offsets"}
    offsets = t[["offset_N", "offset_S", "offset_V", "offset_F"]].to_numpy()
    argmax = (t["rule"] == "argmax").to_numpy()
    assert (offsets[argmax] == 0).all() and (offsets[~argmax] != 0).any(axis=1).all()
    assert ((t["ds1_nested_f1_offsets"] > t["ds1_nested_f1_argmax"]) == ~argmax).all()
    for _, r in t.iterrows():
        job = probe[(probe["method"] == r["method"]) & (probe["seed"] == r["seed"])]
        for cls, metric, col in (("S", "f1", "ds2_S_F1"), ("V", "precision", "ds2_V_+P")):
            assert job[(job["class"] == cls) & (job["metric"] == metric)]["value"].iloc[0] == r[col]
    # the S-vs-N stage: used only where its nested DS1 estimate beat the rule alone; jobs from
    # before the stage existed record none
    staged = (t["sn_stage"] == "rr").to_numpy()
    assert t["sn_threshold"][staged].between(0, 1).all() and t["sn_threshold"][~staged].isna().all()
    assert (t["ds1_nested_f1_with_stage"][staged] > t["ds1_nested_f1_without_stage"][staged]).all()
    for _, r in t.iterrows():
        job = probe[(probe["method"] == r["method"]) & (probe["seed"] == r["seed"])]
        assert job[(job["class"] == "N") & (job["metric"] == "recall")]["value"].iloc[0] == r["ds2_N_Se"]
    md = claims.mitbih_rules_markdown(t)
    assert md.count("\n") == 1 + t.groupby(["method", "rule", "sn_stage"]).ngroups
