"""``checkpoint``: an ECG encoder loaded from a file, evaluated by every protocol that applies.

No pretraining: the weights come from ``path`` (``benchmark.checkpoints`` reads a plain state dict
``.pt``/``.pth``, ``safetensors``, a Hugging Face folder or a TorchScript archive, always without
running pickled or remote code). ``encoder`` names the suite architecture the state dict loads into
(any registered encoder, a plug-in's included: an adapter for an architecture the suite does not
know is a plug-in encoder); a TorchScript archive brings its own module and grid. ``select`` keeps
only the keys under one prefix (``select=encoder.`` of a whole-model file), ``key_map`` renames key
prefixes (``backbone.=``), ``strict=false`` accepts a partial load (the report of
missing/unexpected keys is kept in the method's stats and logged). The file's SHA-256 enters the
configuration hash, so two files never share cached results::

    python -m benchmark run --methods "checkpoint[path=/models/my_encoder.safetensors,encoder=resnet1d-18]" ...

What the file's model takes is the architecture's declared input contract
(``ECGEncoder.input_contract``: a published model's adapter declares the authors' rate, length,
leads, unit and normalisation), overridden field by field by ``input_fs``, ``input_samples``,
``input_leads`` (``I|II|V1|...``), ``input_unit`` (mV|uV) and ``input_norm`` (dataset|none|record).
The store's batches are adapted to it (``benchmark.data.adapt``: amplitude, leads, rate, length,
per-input normalisation) and the feature grid is mapped back to the store's time. A lead outside
the 12 standard ones, an unknown unit or normalisation is refused before the file is read.

There is no text tower, so zero-shot does not apply; probe and fine-tune do (the fine-tune copies
the loaded encoder, a TorchScript one included).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import ClassVar

from benchmark.checkpoints import ScriptedEncoder, file_digest, load_into, read_checkpoint, remap
from benchmark.data.adapt import InputContract
from benchmark.encoders import AdaptedEncoder, create_encoder
from benchmark.errors import UserError
from benchmark.method import Method, register_method_class

log = logging.getLogger(__name__)


@register_method_class("checkpoint")
class Checkpoint(Method):
    """An ECG encoder loaded from a file (state dict, safetensors, HF folder, TorchScript); no pretraining."""

    needs_pretraining: ClassVar[bool] = False
    architecture_from_file: ClassVar[bool] = True  # a profile's encoder/width never override the spec's
    defaults = {**Method.defaults, "path": "", "format": "auto", "select": "", "key_map": "", "strict": True,
                "input_fs": 0.0, "input_samples": 0, "input_leads": "", "input_unit": "", "input_norm": ""}

    def build(self) -> None:
        path = str(self.settings["path"] or "")
        if not path:
            raise UserError("checkpoint needs path=FILE (e.g. checkpoint[path=enc.safetensors,encoder=resnet1d-18])")
        contract = self.input_contract()  # checked before anything is read
        fmt, obj = read_checkpoint(path, str(self.settings["format"]))
        self.digest = file_digest(path)
        if fmt == "torchscript":
            module, grid = obj
            self.encoder = ScriptedEncoder(module, grid, source=f"TorchScript archive '{path}'")
            self.stats["load"] = {"format": fmt, "loaded": "all (TorchScript)"}
            self._wrap(contract)
            return
        if contract is not None and contract.leads:  # the architecture takes the contract's leads
            self.encoder = create_encoder(str(self.settings["encoder"]), width=self.settings["width"],
                                          in_leads=contract.n_leads)
        select = str(self.settings["select"] or "")
        if select:  # only the keys under one prefix (the encoder of a whole-model checkpoint)
            obj = {k: v for k, v in obj.items() if k.startswith(select)}
            if not obj:
                raise UserError(f"checkpoint '{path}' has no key starting with select='{select}'")
        state = remap(obj, str(self.settings["key_map"]))
        report = load_into(self.encoder, state, strict=bool(self.settings["strict"]), source=f"checkpoint '{path}'")
        self.stats["load"] = {"format": fmt, **{k: (v if k == "loaded" else len(v)) for k, v in report.items()}}
        self._wrap(contract)
        if report["missing"] or report["unexpected"] or report["mismatched"]:
            log.warning("checkpoint '%s' loaded partly (strict=false): %d keys loaded, %d missing, %d unexpected, "
                        "%d shape-mismatched", path, report["loaded"], len(report["missing"]),
                        len(report["unexpected"]), len(report["mismatched"]))

    def input_contract(self) -> InputContract | None:
        """The file's model's input: the architecture's declared contract (``ECGEncoder.input_contract``;
        a published model's adapter declares the authors' one) with the fields the spec gives
        overriding it (``input_fs``, ``input_samples``, ``input_leads`` = ``I|II|V1|...``,
        ``input_unit`` = mV|uV, ``input_norm`` = dataset|none|record); None when nothing is given
        (the architecture's own contract then applies, as for every method)."""
        from dataclasses import replace

        s = self.settings
        leads = tuple(x.strip() for x in str(s["input_leads"] or "").split("|") if x.strip())
        given = {k: v for k, v in {"fs": float(s["input_fs"] or 0), "samples": int(s["input_samples"] or 0),
                                   "leads": leads, "unit": str(s["input_unit"] or ""),
                                   "normalisation": str(s["input_norm"] or "")}.items() if v}
        if not given:
            return None
        base = getattr(self.encoder, "input_contract", InputContract())
        return replace(base, **given).check(f"checkpoint '{s['path']}'")

    def _wrap(self, contract) -> None:
        if contract is not None:
            self.encoder = AdaptedEncoder(self.encoder, contract)
            self.stats["input"] = contract.describe()

    def config_hash(self) -> str:
        """The settings' hash with the weights' SHA-256: another file under the same path is another model."""
        base = super().config_hash()
        return hashlib.sha256(json.dumps([base, self.digest]).encode()).hexdigest()[:16]

    @classmethod
    def example_settings(cls, folder) -> dict:
        """Settings that build this method in the conformance suite: a seeded resnet1d-tiny written to
        ``folder`` as safetensors (the suite cannot ship a published checkpoint)."""
        import torch

        from benchmark.checkpoints import export
        from benchmark.encoders import create_encoder

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            enc = create_encoder("resnet1d-tiny")
        path = export(enc, Path(folder) / "conformance_encoder.safetensors", "safetensors")
        return {"path": str(path), "encoder": "resnet1d-tiny"}
