"""The one place that turns ``--device auto|cpu|cuda[:N]`` into a torch device."""

from __future__ import annotations

from benchmark.errors import UserError, unknown_name

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device=None):
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU and unknown names are one-line
    ``UserError``s. Returns a ``torch.device`` (torch is imported here, not at module import, so
    the CLI can check a device name without loading torch)."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device or "auto").lower()
    if name not in DEVICES and not name.startswith("cuda:"):
        raise unknown_name("device", str(device), DEVICES)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"device '{device}' requested but CUDA is not available (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda}): use --device cpu or install a CUDA build of torch"
        )
    return torch.device(name)


__all__ = ["DEVICES", "resolve_device"]
