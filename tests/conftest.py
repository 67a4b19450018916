"""Shared fixtures: the real data root and throw-away cache directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmark.paths import default_data_root


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = default_data_root()
    if not (root / "ptb-xl" / "ptbxl_database.csv").is_file():
        pytest.fail(
            f"real data not found at {root}: set ECGBENCH_DATA_ROOT or put the shared data at ../shared/data"
        )
    return root


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One cache dir for the whole test session (prepared stores are built once)."""
    return tmp_path_factory.mktemp("ecgbench-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(session_cache, monkeypatch):
    """Code that falls back to the default cache dir writes into the session's temp cache."""
    monkeypatch.setenv("ECGBENCH_CACHE_DIR", str(session_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield


def pytest_addoption(parser):
    group = parser.getgroup("ecgbench", "ECG benchmark plug-ins")
    group.addoption("--ecgbench-plugin", action="append", default=[], metavar="FILE.py|MODULE",
                    help="load a plug-in (as `run --plugin` does) before collection, so the conformance suites "
                    "(tests/test_methods_conformance.py, tests/test_encoder_conformance.py) run on what it "
                    "registers; also ECGBENCH_PLUGINS=a.py:b.py (os.pathsep-separated)")
    group.addoption("--plugin-only", action="store_true",
                    help="keep only the tests whose parameters name something a plug-in registered")


def _plugin_specs(config) -> list[str]:
    env = [p for p in os.environ.get("ECGBENCH_PLUGINS", "").split(os.pathsep) if p.strip()]
    return list(config.getoption("--ecgbench-plugin") or []) + env


def pytest_collection_modifyitems(config, items):
    """``--plugin-only``: deselect every test that does not run on a name a plug-in registered."""
    if not config.getoption("--plugin-only"):
        return
    from benchmark.registry import plugin_names

    names = {n for ns in plugin_names().values() for n in ns}
    if not names:
        raise pytest.UsageError("--plugin-only needs a plug-in that registers something: --ecgbench-plugin FILE.py")
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        hit = any(isinstance(v, str) and v.split("[")[0] in names for v in params.values())
        (keep if hit else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


def pytest_configure(config):
    specs = _plugin_specs(config)
    if specs:  # before collection: the conformance suites parametrise over the registries at import
        from benchmark.errors import UserError
        from benchmark.registry import load_plugin

        try:
            for spec in specs:
                load_plugin(spec)
        except UserError as exc:
            raise pytest.UsageError(f"--ecgbench-plugin: {exc}") from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except Exception:
        pass


@pytest.fixture(scope="session")
def ptbxl_set(data_root, session_cache):
    """The shared PTB-XL slice prepared once per session at 100 Hz, 10 s (an ``ECGSet``)."""
    from benchmark.data.store import prepare

    return prepare("ptbxl", data_root, session_cache, fs=100, progress=False)


@pytest.fixture
def ptbxl_copy(data_root):
    """Factory: ``ptbxl_copy(dest, n=6, hr=False)`` copies the first ``n`` PTB-XL records (CSV rows,
    scp_statements.csv, 100 Hz files and with ``hr=True`` the 500 Hz files) into ``dest/ptb-xl`` and
    returns ``dest`` (a data root). Use it to damage files without touching the shared data."""
    import shutil

    import pandas as pd

    def make(dest: Path, n: int = 6, hr: bool = False) -> Path:
        src = data_root / "ptb-xl"
        out = Path(dest) / "ptb-xl"
        out.mkdir(parents=True, exist_ok=True)
        df = pd.read_csv(src / "ptbxl_database.csv").sort_values("ecg_id").iloc[:n]
        df.to_csv(out / "ptbxl_database.csv", index=False)
        shutil.copy(src / "scp_statements.csv", out / "scp_statements.csv")
        cols = ["filename_lr"] + (["filename_hr"] if hr else [])
        for col in cols:
            for name in df[col]:
                for ext in (".hea", ".dat"):
                    target = out / f"{name}{ext}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src / f"{name}{ext}", target)
        return Path(dest)

    return make


@pytest.fixture(scope="session")
def reports(data_root) -> list[str]:
    """Real PTB-XL device reports: German, Swedish and English, with repeats."""
    import pandas as pd

    db = pd.read_csv(data_root / "ptb-xl" / "ptbxl_database.csv")
    return db["report"].astype(str).tolist()


@pytest.fixture(scope="session")
def minilm():
    """The default frozen LM (all-MiniLM-L6-v2 from its PyPI package), loaded once."""
    from benchmark.registry import TEXT_ENCODERS, load_builtin_plugins

    load_builtin_plugins()
    return TEXT_ENCODERS.create("minilm", device="cpu")
