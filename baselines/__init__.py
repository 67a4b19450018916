"""Baselines METS is compared with; each module registers its method on import."""

from baselines import checkpoint, clocs, dechazal, random_init, simclr, supervised  # noqa: F401
