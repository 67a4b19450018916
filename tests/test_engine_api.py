"""The seams of the engine refactor, without data: protocols live in the common registry and
answer what config, tune and the runner used to hard-code; METS/MERL declare the text tower."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from benchmark.errors import UserError


def test_protocols_are_in_the_common_registry_and_give_the_config_defaults():
    from benchmark.config import DEFAULTS
    from benchmark.protocols import descriptions, get_protocol, protocols_in_order, protocols_in_report_order
    from benchmark.registry import PROTOCOLS

    assert set(PROTOCOLS.names()) == {"zero-shot", "few-label", "cross-dataset", "text-ceiling"}
    assert DEFAULTS["protocols"][0] == [p.name for p in protocols_in_report_order()]
    assert DEFAULTS["protocols"][0] == ["zero-shot", "few-label", "cross-dataset", "text-ceiling"]
    assert list(descriptions()) == [p.name for p in protocols_in_order()]
    assert get_protocol("few-label") is get_protocol("few-label")  # one instance per protocol
    with pytest.raises(UserError, match="unknown protocol"):
        get_protocol("few-labels")


def test_objectives_come_from_the_protocols():
    from benchmark.protocols import objectives, protocol_for_objective
    from benchmark.tune.spaces import OBJECTIVES

    assert objectives() == OBJECTIVES == ("zero-shot", "linear-probe")
    assert protocol_for_objective("zero-shot").name == "zero-shot"
    assert protocol_for_objective("linear-probe").name == "few-label"
    with pytest.raises(UserError, match="unknown objective"):
        protocol_for_objective("fine-tune")


def test_applies_replaces_the_text_ceiling_special_case():
    from benchmark.protocols import Job, get_protocol

    data = SimpleNamespace(tasks={"superdiagnostic": None})
    job = Job("mets", 0, "zero-shot", "zero-shot", "ptbxl", "superdiagnostic")
    assert get_protocol("zero-shot").applies(job, data)
    proxy = Job("mets", 0, "text-ceiling", "bare-lm", "ptbxl", "mitbih-pvc")
    assert not get_protocol("few-label").applies(proxy, data)
    assert get_protocol("text-ceiling").applies(proxy, data)


def test_protocols_validate_their_own_settings():
    from benchmark.config import build_config

    with pytest.raises(UserError, match="few-label mode"):
        build_config("quick", None, {"few_label_modes": "probe"})
    with pytest.raises(UserError, match="cross-dataset target"):
        build_config("quick", None, {"cross_datasets": "ptbxl"})
    with pytest.raises(UserError, match="label fraction"):
        build_config("quick", None, {"label_fractions": "0"})


def test_text_tower_is_declared():
    from benchmark.method import TextTower
    from benchmark.registry import METHODS, load_builtin_plugins

    load_builtin_plugins()
    declared = {n for n in METHODS.names() if issubclass(METHODS.entry(n).meta.get("cls") or object, TextTower)}
    assert {"mets", "merl"} <= declared
    assert not declared & {"simclr", "clocs", "supervised", "random-init"}


def test_datasets_declare_their_run_settings():
    from benchmark.config import build_config
    from benchmark.data.datasets import cross_targets, prepare_options, run_tasks

    cfg = build_config("quick")
    assert cross_targets() == ["mitbih", "cinc2017"]
    assert prepare_options("mitbih", cfg) == {"subdir": "mitdb-pvc", "annotator": "pvc", "baseline": "none", "scale": "none"}
    assert prepare_options("cinc2017", cfg) == {"n_crops": 3} and prepare_options("ptbxl", cfg) == {}
    assert run_tasks("mitbih", cfg) == ["pvc"] and run_tasks("cinc2017", cfg) == ["rhythm", "af"]


def test_the_runner_imports_no_dask():
    """The executor is handed to the runner; importing the runner loads no Dask (a fresh process)."""
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, benchmark.engine.runner; print('dask' in sys.modules or 'distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout.strip()
    assert out == "False"
