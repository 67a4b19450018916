"""Plug-ins as a contributor meets them: a file path or a module name for ``--plugin``, from any
directory; an unknown name that says how to load a plug-in; and the conformance suites run on a
plug-in by the command ``docs/plugins.md`` documents."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.registry import METHODS, load_plugin
from benchmark.results import ResultStore

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "docs" / "examples"


def _env(data_root, cache) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(ECGBENCH_DATA_ROOT=str(data_root), ECGBENCH_CACHE_DIR=str(cache), PYTHONPATH=str(REPO))
    return env


def _copy_examples(dest: Path) -> tuple[Path, Path]:
    """The two docs examples as files outside the repository (a contributor's own folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    method = shutil.copy(EXAMPLES / "my_method.py", dest / "byol_lite.py")
    encoder = shutil.copy(EXAMPLES / "my_encoder.py", dest / "my_encoder.py")
    return Path(method), Path(encoder)


def test_run_takes_a_plugin_file_from_another_directory(tmp_path, data_root, session_cache, ptbxl_set):
    method_file, _ = _copy_examples(tmp_path / "work" / "plugins")
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "benchmark", "run", "--plugin", "plugins/byol_lite.py", "--methods", "noisy-views",
           "--protocols", "few-label", "--tasks", "superdiagnostic", "--label-fractions", "1.0", "--seeds", "0",
           "--profile", "quick", "--no-progress", "--out", str(out), "--data-root", str(data_root),
           "--set", "method_settings.encoder=resnet1d-tiny", "--set", "method_settings.epochs=1",
           "--set", "method_settings.max_steps_per_epoch=3", "--set", "few_label_modes=linear-probe",
           "--set", "n_boot=20", "--set", "panel_examples=0"]
    proc = subprocess.run(cmd, cwd=tmp_path / "work", env=_env(data_root, session_cache), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = ResultStore(out).load_rows()
    assert set(rows["method"]) == {"noisy-views"} and (rows["protocol"] == "few-label").all()
    assert str(method_file.resolve()) in (out / "command.txt").read_text() or "byol_lite" in (out / "command.txt").read_text()


def test_plugin_by_path_or_module_name_and_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"plug-in file 'nope/byol\.py' not found .*--plugin path/to/file\.py"):
        load_plugin("nope/byol.py")
    with pytest.raises(UserError, match=r"no file .*no_such_plugin and no module 'no_such_plugin'"):
        load_plugin("no_such_plugin")
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("import no_such_dependency_xyz\n")
    with pytest.raises(UserError, match=r"'broken_plugin\.py' failed to import: .*no_such_dependency_xyz"):
        load_plugin("broken_plugin.py")
    (tmp_path / "pkg_mod").mkdir()
    (tmp_path / "pkg_mod" / "__init__.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_plugin("pkg_mod") == "pkg_mod" and sys.modules["pkg_mod"].LOADED


def test_unknown_method_encoder_and_protocol_mention_plugin(tmp_path, capsys):
    for args in (["run", "--methods", "byol-lite", "--dry-run"],
                 ["run", "--methods", "simclr[encoder=convnet-small]", "--dry-run"],
                 ["run", "--methods", "simclr", "--protocols", "beat-readout", "--dry-run"]):
        assert main([*args, "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert "unknown" in err and "--plugin" in err, err
    with pytest.raises(UserError, match="--plugin"):
        METHODS.create("byol-lite")


def test_conformance_suites_run_on_a_plugin_by_the_documented_command(tmp_path, data_root, session_cache, ptbxl_set):
    method_file, encoder_file = _copy_examples(tmp_path / "mine")
    cmd = [sys.executable, "-m", "pytest", "tests/test_methods_conformance.py", "tests/test_encoder_conformance.py",
           "--ecgbench-plugin", str(method_file), "--ecgbench-plugin", str(encoder_file), "--plugin-only",
           "-q", "-p", "no:cacheprovider", "-rA"]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(data_root, session_cache), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    passed = [ln for ln in out.splitlines() if ln.startswith("PASSED")]
    assert any("noisy-views" in ln for ln in passed) and any("convnet-small" in ln for ln in passed), out[-3000:]
    assert all("noisy-views" in ln or "convnet-small" in ln for ln in passed)  # --plugin-only kept only theirs
    assert "deselected" in out
