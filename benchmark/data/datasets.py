"""Importing this module registers the built-in datasets (``benchmark.registry.DATASETS``)."""

from benchmark.data import cinc2017, mitbih, ptbxl  # noqa: F401
