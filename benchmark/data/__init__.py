"""Data layer: PhysioNet loaders -> prepared store -> ECGSet (batches as tensors)."""

from benchmark.data.base import LEADS, ECGSet, TaskSpec  # noqa: F401
