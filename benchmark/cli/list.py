"""``python -m benchmark list``: what the suite can run, with parameter counts."""

from __future__ import annotations

import importlib
import json

from benchmark.config import PROFILE_DOCS, PROFILES
from benchmark.protocols import descriptions as protocol_descriptions
from benchmark.cli.common import add_plugin, load_plugins
from benchmark.registry import DATASETS, ECG_ENCODERS, METHODS, TEXT_ENCODERS, load_builtin_plugins


def add_arguments(p) -> None:
    p.add_argument("what", nargs="?", default="all",
                   choices=["all", "methods", "encoders", "text-encoders", "datasets", "protocols", "profiles"])
    p.add_argument("--pattern", default="*", help="glob over names, e.g. 'res*'")
    add_plugin(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def collect(pattern: str = "*") -> dict:
    """What is registered (after the built-in plug-ins load), by section, for ``list`` and ``list --json``."""
    load_builtin_plugins()
    out: dict = {"methods": {}, "encoders": {}, "text-encoders": {}, "datasets": {}, "protocols": protocol_descriptions(),
                 "profiles": {k: PROFILE_DOCS.get(k, "") for k in PROFILES}}
    for name in METHODS.list(pattern):
        e = METHODS.entry(name)
        params = e.accepted_params()
        out["methods"][name] = {"description": e.description, "settings": sorted(params) if params else "any"}
    for name in ECG_ENCODERS.list(pattern):
        e = ECG_ENCODERS.entry(name)
        info = {"description": e.description}
        try:
            # imported here, not at module level: it imports torch, and `--help` must stay light
            from benchmark.encoders import count_parameters

            model = e.factory()
            info["parameters"] = int(count_parameters(model))
            info["features"] = model.contract() if hasattr(model, "contract") else "? (no encoder contract)"
        except Exception as exc:  # listing must not die on one odd encoder
            info["parameters"] = f"? ({exc})"
        out["encoders"][name] = info
    for name in TEXT_ENCODERS.list(pattern):
        out["text-encoders"][name] = {"description": TEXT_ENCODERS.entry(name).description}
    for pre in TEXT_ENCODERS.prefixes():
        out["text-encoders"][f"{pre}:<hub id or path>"] = {"description": "any Hugging Face encoder"}
    for name in DATASETS.list(pattern):
        cls = DATASETS.entry(name).factory
        tasks = getattr(importlib.import_module(cls.__module__), "TASKS", ())
        out["datasets"][name] = {
            "description": DATASETS.entry(name).description,
            "tasks": list(tasks),
            "options": dict(getattr(cls, "default_options", {})),
        }
    return out


def input_line(c: dict) -> str:
    """One line for an input contract (``InputContract.describe``)."""
    fs = "the store's rate" if c["fs"] == "store" else f"{c['fs']:g} Hz"
    n = "any length" if c["samples"] == "any" else f"{c['samples']} samples"
    leads = c["leads"] if isinstance(c["leads"], str) else "|".join(c["leads"])
    return f"{fs}, {n}, leads {leads}, normalisation {c['normalisation_text']}"


def main(args) -> int:
    load_plugins(args)
    info = collect(args.pattern)
    sections = list(info) if args.what == "all" else [args.what]
    if args.json:
        print(json.dumps({k: info[k] for k in sections}, indent=2, default=str))
        return 0
    for sec in sections:
        print(f"{sec}:")
        for name, val in info[sec].items():
            if isinstance(val, dict):
                desc = val.get("description", "")
                extra = ""
                if "parameters" in val:
                    p = val["parameters"]
                    extra = f"  [{p / 1e6:.2f} M params]" if isinstance(p, int) else f"  [{p}]"
                if isinstance(val.get("features"), dict):
                    f = val["features"]
                    extra += (f"\n      features [N, {f['dim']}, T'], stride {f['stride']} samples, "
                              f"receptive field {f['receptive_field'] or 'all'} samples")
                    if isinstance(f.get("input"), dict):
                        extra += "\n      input: " + input_line(f["input"])
                if "tasks" in val and val["tasks"]:
                    extra += f"  tasks: {', '.join(val['tasks'])}"
                if "settings" in val and isinstance(val["settings"], list):
                    extra += f"\n      settings: {', '.join(val['settings'])}"
                print(f"  {name:<28} {desc}{extra}")
            else:
                print(f"  {name:<28} {val}")
        print()
    return 0
