"""ECG representation-learning benchmark suite (METS and baselines)."""

__version__ = "0.1.0"
