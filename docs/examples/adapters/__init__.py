"""Worked adapters for published ECG models (plug-in encoders; see docs/checkpoints.md)."""
