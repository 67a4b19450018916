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


def pytest_configure(config):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except Exception:
        pass
