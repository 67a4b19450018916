"""Encoder weights from files: read (safely), rename keys, load with a report, export.

Formats (``fmt``; ``auto`` tells them apart by the path):

==============  ===============================================  ======================================
format          file                                             how it is read
==============  ===============================================  ======================================
``state_dict``  ``.pt`` / ``.pth`` / ``.bin``: a dict of tensors  ``torch.load(weights_only=True)``: no
                (or one under ``state_dict`` / ``model`` /        pickle that runs code is accepted
                ``encoder``; a suite ``Method.save`` file)
``safetensors`` ``.safetensors``                                 ``safetensors.torch.load_file``
``hf``          a folder with ``model.safetensors`` or           the same, from the folder (no remote
                ``pytorch_model.bin`` (a Hugging Face save)       code is ever run)
``torchscript`` a TorchScript archive whose ``forward`` gives    ``torch.jit.load``; its grid comes from
                time-resolved features [N, D, T']                the archive's ``ecg_contract.json``
==============  ===============================================  ======================================

``key_map`` renames key prefixes before loading (``"backbone.=;module.="`` strips ``backbone.``
and ``module.``; ``old=new`` replaces). Loading is strict by default: a missing or unexpected key
or a shape mismatch is a one-line error naming the first few; ``strict=False`` loads what matches
and reports the rest (:func:`load_into` returns the report either way).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from benchmark.encoders import ECGEncoder
from benchmark.errors import UserError

FORMATS = ("auto", "state_dict", "safetensors", "hf", "torchscript")
CONTRACT_FILE = "ecg_contract.json"
NESTED_KEYS = ("state_dict", "model", "encoder", "model_state_dict")


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint file (of a folder: of its weight files), so results name the exact weights."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "hf"
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix in (".ts", ".torchscript", ".jit"):
        return "torchscript"
    if suffix in (".pt", ".pth", ".bin", ".ckpt"):
        import zipfile

        try:  # TorchScript archives are zip files holding a code/ folder
            with zipfile.ZipFile(path) as z:
                if any("/code/" in n for n in z.namelist()):
                    return "torchscript"
        except zipfile.BadZipFile:
            pass
        return "state_dict"
    raise UserError(f"cannot tell the format of checkpoint '{path}' from its name: pass format=state_dict|safetensors|"
                    "hf|torchscript")


def read_checkpoint(path: str | os.PathLike, fmt: str = "auto"):
    """``(fmt, obj)``: a flat ``{key: tensor}`` state dict, or for ``torchscript`` the pair (module,
    its declared grid)."""
    path = Path(path).expanduser()
    if fmt not in FORMATS:
        from benchmark.errors import unknown_name

        raise unknown_name("checkpoint format", fmt, FORMATS)
    if not path.exists():
        raise UserError(f"checkpoint '{path}' does not exist")
    fmt = detect_format(path) if fmt == "auto" else fmt
    try:
        if fmt == "torchscript":
            extra = {CONTRACT_FILE: ""}
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            return fmt, (module, json.loads(extra[CONTRACT_FILE] or "{}"))
        if fmt == "hf":
            for name in ("model.safetensors", "pytorch_model.bin"):
                if (path / name).is_file():
                    return fmt, read_checkpoint(path / name)[1]
            raise UserError(f"Hugging Face folder '{path}' has no model.safetensors or pytorch_model.bin")
        if fmt == "safetensors":
            from safetensors.torch import load_file

            return fmt, load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except UserError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot read checkpoint '{path}' as {fmt}: {first}") from None
    for key in NESTED_KEYS:  # {"state_dict": {...}} and a suite Method.save file
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"checkpoint '{path}' holds no state dict of tensors (found {type(obj).__name__})")
    return fmt, obj


def parse_key_map(text: str) -> list[tuple[str, str]]:
    """``"backbone.=;module.="`` -> [("backbone.", ""), ("module.", "")]."""
    out = []
    for item in (t.strip() for t in str(text or "").split(";")):
        if not item:
            continue
        if "=" not in item:
            raise UserError(f"key_map entry '{item}' must be old_prefix=new_prefix (new may be empty)")
        old, new = item.split("=", 1)
        out.append((old.strip(), new.strip()))
    return out


def remap(state: dict, key_map: str | list[tuple[str, str]]) -> dict:
    """Rename key prefixes (the first matching rule per key); keys no rule matches are kept."""
    rules = parse_key_map(key_map) if isinstance(key_map, str) else key_map
    out = {}
    for k, v in state.items():
        for old, new in rules:
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = v
    return out


def load_into(module: nn.Module, state: dict, *, strict: bool = True, source: str = "checkpoint") -> dict:
    """Load ``state`` into ``module``; return ``{"loaded", "missing", "unexpected", "mismatched"}``.
    With ``strict`` any missing, unexpected or mis-shaped key is a one-line error."""
    own = module.state_dict()
    mismatched = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    report = {"loaded": len(set(own) & set(state)) - len(mismatched), "missing": missing, "unexpected": unexpected,
              "mismatched": mismatched}
    if strict and (missing or unexpected or mismatched):
        parts = []
        for name, keys in (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", mismatched)):
            if keys:
                parts.append(f"{len(keys)} {name} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
        hint = " a prefix to rename? key_map=old.=new. ;" if unexpected and missing else ""
        raise UserError(f"{source} does not fit the encoder: {'; '.join(parts)} ({report['loaded']} keys fit);{hint} "
                        "strict=false loads what fits")
    module.load_state_dict({k: v for k, v in state.items() if k in own and k not in mismatched}, strict=False)
    return report


class ScriptedEncoder(ECGEncoder):
    """A TorchScript encoder whose ``forward`` returns time-resolved features [N, D, T'], with the
    grid its archive declares (``ecg_contract.json``: dim, stride, offset, receptive_field, in_leads)."""

    def __init__(self, scripted, contract: dict, source: str = "TorchScript archive"):
        super().__init__()
        need = {"dim", "stride", "offset", "receptive_field"}
        if not need <= set(contract):
            raise UserError(f"{source} has no {CONTRACT_FILE} with {sorted(need)}: export it with "
                            "benchmark.checkpoints.export(..., fmt='torchscript')")
        self.scripted = scripted
        self.dim, self.stride = int(contract["dim"]), int(contract["stride"])
        self.offset, self.receptive_field = int(contract["offset"]), int(contract["receptive_field"])
        self.in_leads = int(contract.get("in_leads", 12))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.scripted(x)


class _FeatureMap(nn.Module):
    def __init__(self, encoder: ECGEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        return self.encoder.features(x)


def export(encoder: ECGEncoder, path: str | os.PathLike, fmt: str, *, example_samples: int = 1000) -> Path:
    """Write ``encoder`` as ``state_dict`` (.pt), ``safetensors`` or ``torchscript`` (traced feature map
    plus its grid); written to a temporary name and renamed, so a reader never sees half a file.
    A trace fixes what Python computes from the input's shape: a ResNet1d traces for any length, a
    ViT1d for the ``example_samples`` it was traced at (its padding and positions)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    if fmt == "state_dict":
        torch.save(state, tmp)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(tmp))
    elif fmt == "torchscript":
        was = encoder.training
        encoder.eval()
        try:
            x = torch.zeros(1, int(getattr(encoder, "in_leads", 12)), example_samples)
            traced = torch.jit.trace(_FeatureMap(encoder), x, check_trace=False)
        finally:
            encoder.train(was)
        contract = {**encoder.contract(), "in_leads": int(getattr(encoder, "in_leads", 12))}
        torch.jit.save(traced, str(tmp), _extra_files={CONTRACT_FILE: json.dumps(contract)})
    else:
        raise UserError(f"cannot export as '{fmt}': state_dict | safetensors | torchscript")
    os.replace(tmp, path)
    return path


__all__ = ["FORMATS", "read_checkpoint", "remap", "load_into", "export", "ScriptedEncoder", "file_digest"]
