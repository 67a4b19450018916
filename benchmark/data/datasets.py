"""Importing this module registers the built-in datasets (``benchmark.registry.DATASETS``), and
declares which run settings (``benchmark.config``) feed each dataset: its ``prepare`` options and,
for the cross-dataset targets, the setting that lists its tasks. The runner asks this table
(:func:`prepare_options`, :func:`run_tasks`) instead of knowing datasets by name."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmark.data import cinc2017, mitbih, ptbxl  # noqa: F401
from benchmark.registry import DATASETS


@dataclass(frozen=True)
class RunSettings:
    """Run settings of one dataset: ``options`` maps a ``default_options`` key of the dataset
    class to the run setting that gives it; ``tasks`` names the run setting listing its tasks
    (set for cross-dataset targets)."""

    options: dict[str, str] = field(default_factory=dict)
    tasks: str | None = None


# in the order the cross-dataset targets are listed
RUN_SETTINGS: dict[str, RunSettings] = {
    "ptbxl": RunSettings(),
    "mitbih": RunSettings(options={"subdir": "mitbih_subdir", "annotator": "mitbih_annotator",
                                   "baseline": "mitbih_baseline", "scale": "mitbih_scale"}, tasks="mitbih_tasks"),
    "cinc2017": RunSettings(options={"n_crops": "cinc_crops"}, tasks="cinc_tasks"),
}

def canonical_dataset(name: str) -> str:
    """The registry name of dataset ``name``: other spellings (the PhysioNet database names,
    ``mitdb`` -> ``mitbih``) are the aliases each dataset registers with ``@register_dataset``;
    the registry name is the one printed, stored and used as the folder key of prepared stores.
    Case and surrounding spaces do not matter; unknown names come back unchanged."""
    key = str(name).strip()
    canon = DATASETS.canonical(key.lower())
    return canon if canon != key.lower() else key


# settings every prepared store depends on, besides the dataset's own options
STORE_SETTINGS = ("fs", "window_s")


def prepare_options(name: str, cfg: dict) -> dict:
    """The ``prepare(name, ...)`` options a run's settings give dataset ``name``."""
    rs = RUN_SETTINGS.get(name, RunSettings())
    return {opt: cfg[key] for opt, key in rs.options.items()}


def run_tasks(name: str, cfg: dict) -> list[str]:
    """The tasks a run evaluates on cross-dataset target ``name``."""
    return cfg[RUN_SETTINGS[name].tasks]


def cross_targets() -> list[str]:
    """Datasets that can be cross-dataset targets (they have a tasks setting)."""
    return [n for n, rs in RUN_SETTINGS.items() if rs.tasks is not None]


def data_settings() -> tuple[str, ...]:
    """Every run setting that changes a prepared store (runs that agree on them share data)."""
    return STORE_SETTINGS + tuple(k for rs in RUN_SETTINGS.values() for k in rs.options.values())
