"""Worked adapters for published ECG models (plug-in encoders whose module names match the authors' weights)."""
