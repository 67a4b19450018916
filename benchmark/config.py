"""Run configuration: named profiles, config files and command-line overrides.

A run is described by one flat dictionary of settings (``DEFAULTS`` lists every key with its
meaning). A profile is a named, documented set of overrides; a YAML config file and
``--set key=value`` options override the profile. Unknown keys are an error, never ignored.

Per-method settings (``method_settings``) are passed to every method factory unless the method's
variant name sets them itself (``mets[epochs=5]`` wins over the profile's ``epochs``), and only
where the factory accepts them.
"""

from __future__ import annotations

import copy
import importlib
import re
from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import UserError, unknown_name
from benchmark.io import atomic_write_text
from benchmark.protocols import descriptions, protocols_in_order, protocols_in_report_order
from benchmark.data.datasets import RUN_SETTINGS
from benchmark.registry import DATASETS, parse_value, plugin_hint, split_top_level

# key -> (default, help)
DEFAULTS: dict[str, tuple[Any, str]] = {
    "methods": (["mets", "simclr", "clocs", "supervised", "random-init"], "method variants to run"),
    "protocols": ([p.name for p in protocols_in_report_order()], "protocols to evaluate"),
    "seeds": ([0], "pretraining seeds; few-label subsets are drawn anew for every seed"),
    "fs": (100, "sampling rate (Hz) every ECG is resampled to"),
    "window_s": (10.0, "ECG window length in seconds (the encoder's input)"),
    "device": ("auto", "auto | cpu | cuda"),
    "precision": ("auto", "auto | fp32 | bf16 | fp16 (auto: bf16 where supported on GPU, fp32 on CPU)"),
    "zero_shot_tasks": (["superdiagnostic", "subdiagnostic", "form", "rhythm"], "PTB-XL tasks for zero-shot"),
    "few_label_tasks": (["superdiagnostic"], "PTB-XL tasks for the few-label protocol"),
    "label_fractions": ([0.01, 0.1, 1.0], "fractions of the training split that keep their labels"),
    "few_label_modes": (["linear-probe", "fine-tune"], "linear-probe, fine-tune, and the frozen heads mlp-probe "
                        "(an MLP on the pooled features) and attention-probe (attention pooling over the encoder's "
                        "time steps)"),
    "probe_hidden": (256, "hidden units of the mlp-probe head"),
    "probe_epochs": (100, "max epochs of the mlp-probe and attention-probe heads (early stopping on val loss, patience 5)"),
    "finetune_tasks": ([], "PTB-XL tasks that get the few-label fine-tune mode ([]: every few_label_tasks task)"),
    "probe_C": ([0.001, 0.01, 0.1, 1.0, 10.0], "inverse L2 strengths tried by the linear probe (chosen on val)"),
    "probe_max_iter": (1000, "iterations of the probe's logistic regression"),
    "finetune_epochs": (10, "max epochs of the fine-tune protocol (early stopping on val loss)"),
    "finetune_lr": (1e-3, "learning rate of the fine-tune protocol"),
    "finetune_patience": (3, "early-stopping patience (epochs) of the fine-tune protocol"),
    "finetune_batch_size": (64, "batch size of the fine-tune protocol"),
    "cross_datasets": (["mitbih", "cinc2017"], "targets of the cross-dataset protocol"),
    "mitbih_subdir": ("mitdb", "MIT-BIH folder under the data root (the shared PVC set: mitdb-pvc)"),
    "mitbih_annotator": ("atr", "MIT-BIH annotator (the shared PVC set: pvc)"),
    "mitbih_tasks": (["aami", "pvc"], "MIT-BIH tasks"),
    "mitbih_baseline": ("none", "MIT-BIH signal: none | median (de Chazal's 200/600 ms median baseline-wander removal "
                        "before resampling)"),
    "mitbih_scale": ("none", "MIT-BIH signal: none | record (each beat window divided by the mean QRS amplitude of its "
                     "record's beats up to and including it)"),
    "cinc_tasks": (["rhythm", "af"], "CinC 2017 tasks"),
    "cinc_crops": (3, "10 s crops per CinC record; evaluation averages their scores"),
    "cross_modes": (["linear-probe", "fine-tune"], "cross-dataset modes besides zero-shot: linear-probe and/or "
                    "fine-tune (PTB-XL-pretrained encoder + head trained on the target's training split)"),
    "cross_max_train": (0, "cap on cross-dataset training examples (0: all); single-label tasks subsample only "
                        "their largest classes (every minority example kept), seeded"),
    "cross_finetune_datasets": ([], "cross-dataset targets that get the fine-tune mode ([]: every cross_datasets "
                                "target)"),
    "cross_finetune_max_train": (0, "cap on cross-dataset fine-tune training examples (0: cross_max_train)"),
    "cross_finetune_max_val": (0, "cap on cross-dataset fine-tune validation examples (early stopping, decision "
                               "rule; 0: cross_max_eval); single-label: majority classes only, weighted"),
    "cross_max_eval": (0, "cap on cross-dataset val/test examples (0: all); single-label tasks subsample only their "
                       "largest classes and weight the kept examples by 1/rate (no minority example dropped)"),
    "beat_readout": ("pool", "beat-centred datasets (MIT-BIH), probe and fine-tune: what the head reads of the "
                     "encoder, pool (the mean over the beat_window_s input) | beat (the feature positions within "
                     "beat_span_s of the beat); zero-shot always reads the global embedding"),
    "beat_window_s": (2.0, "seconds of a beat-centred window the encoder reads, centred on the beat (0: all)"),
    "beat_span_s": (0.6, "with beat_readout=beat: the feature positions centred within this span around the beat"),
    "beat_norm": ("none", "beat-level probe and heads: none | record (each beat's encoder readout minus the mean "
                  "readout of its record's beats up to and including it)"),
    "beat_rr": (True, "append the beat's RR-interval features (causal per-record normalisation) before the head"),
    "beat_cv_folds": (5, "beat-level probe: record-wise folds of DS1 that choose C"),
    "beat_C_extend": (0, "beat-level probe: while the best C sits on the edge of the grid (probe_C), try up to this "
                      "many more values beyond it, a decade at a time, on the same DS1 folds (0: the grid alone; "
                      "not the default: docs/protocols.md says why)"),
    "beat_rule": ("auto", "beat-level probe's decision rule: argmax (class-weighted, equal priors), offsets "
                  "(fitted to DS1 out-of-fold macro F1), auto (whichever a nested record-wise CV in DS1 prefers)"),
    "beat_sn_stage": ("auto", "beat-level probe: an S-vs-N stage that re-decides the beats the rule calls N or S by a "
                      "class-weighted logistic regression on the RR features alone: none | rr | auto (kept when a "
                      "record-wise nested CV in DS1 prefers it); off while beat_rr is off"),
    "beat_min_class_beats": (50, "beat-level heads: a class with fewer DS1 training beats is never predicted "
                             "(AAMI Q: 8); the others by the argmax of the class-weighted model"),
    "n_boot": (1000, "bootstrap resamples for 95 % confidence intervals"),
    "prompt_templates": ("all", "zero-shot prompts: all (hand-written descriptions x all templates) | paper | report (one template) | catalogue (descriptions generated from scp_statements.csv / AAMI classes x all templates)"),
    "method_settings": ({}, "settings passed to every method factory that accepts them"),
    "panel_examples": (4, "test ECGs saved for the report's ECG panel figure (0: none)"),
    "row_label": ({}, "run settings shown with the method in result rows, e.g. {prompt_templates: paper} -> "
                  "mets[prompt_templates=paper] (set by `ablate` for its run-setting grids so that one report "
                  "tells them apart; changes no number)"),
    "lease_seconds": (120, "a worker's claim on a job or pretraining expires this long after its last heartbeat "
                      "(a crashed worker's work is then retried by another; benchmark/engine/claims.py)"),
    "worker_wait_seconds": (600, "run --workers/--scheduler/--cluster: how long to wait for the first Dask worker "
                            "(e.g. SLURM jobs still pending) before stopping with an error"),
    "resident_data": ("auto", "hold each prepared dataset, normalised, in device memory: auto (on a GPU when it "
                      "takes < 30 % of free memory) | true | false (memory-mapped batches)"),
}

PROFILES: dict[str, dict[str, Any]] = {
    # Finishes the default methods on the shared 500-record PTB-XL slice on a 2-core CPU in minutes.
    "quick": {
        "seeds": [0],
        "n_boot": 200,
        "finetune_epochs": 3,
        "finetune_patience": 2,
        "mitbih_subdir": "mitdb-pvc",
        "mitbih_annotator": "pvc",
        "mitbih_tasks": ["pvc"],
        "cross_max_train": 1500,  # caps keep the encoding of CinC/MIT-BIH to ~4,500 ECGs per model
        "cross_max_eval": 1500,  # (3,000 made embedding the slowest stage; docs/performance.md)
        "probe_C": [0.01, 0.1, 1.0],
        "cross_modes": ["linear-probe"],
        "method_settings": {
            "encoder": "resnet1d-10",
            "width": 32,
            "epochs": 4,
            "batch_size": 64,
            "lr": 1e-3,
        },
    },
    # Every method on all of ../shared/data at full size on a 2-core CPU in about 40 minutes: PTB-XL
    # (all records, all four task groups), the complete MIT-BIH (AAMI, DS1 -> DS2) and CinC 2017,
    # five seeds (three overstated a difference in the report-language ablation: docs/report_text.md). The caps (documented in docs/protocols.md) subsample only majority classes:
    # MIT-BIH DS2 keeps every S/V/F/Q beat and a seeded share of the N beats, weighted 1/rate.
    "shared": {
        "seeds": [0, 1, 2, 3, 4],
        "n_boot": 1000,
        "few_label_tasks": ["superdiagnostic"],
        "finetune_epochs": 3,
        "finetune_patience": 2,
        "mitbih_tasks": ["aami"],
        "cinc_crops": 1,
        "cross_finetune_datasets": ["mitbih"],
        # the MIT-BIH probe is beat-level and reads all of DS1 (cross_max_train caps CinC only); its
        # fine-tune reads 2 s beat-centred inputs of 10,000 DS1 beats (every S/V/F/Q beat, a seeded
        # share of the N beats): the whole of DS1 for three epochs would add ~40 min to this CPU profile
        "cross_max_train": 3000,
        "cross_finetune_max_train": 10000,
        "cross_finetune_max_val": 2000,
        "cross_max_eval": 8000,
        "probe_C": [0.01, 0.1, 1.0],
        "method_settings": {
            "encoder": "resnet1d-10",
            "width": 32,
            "epochs": 6,
            "batch_size": 64,
            "lr": 1e-3,
        },
    },
    # The METS paper's settings where known (ResNet1d-18, frozen LM, CLIP loss, temperature 0.07,
    # Adam lr 1e-3 on the ECG side); our documented choices where the paper is silent (epochs,
    # batch size, 100 Hz). Meant for a GPU and the full PTB-XL (21,799 records).
    "paper": {
        "seeds": [0, 1, 2],
        "n_boot": 1000,
        "few_label_tasks": ["superdiagnostic", "subdiagnostic", "form", "rhythm"],
        "finetune_epochs": 50,
        "finetune_patience": 5,
        "finetune_batch_size": 128,
        "method_settings": {
            "encoder": "resnet1d-18",
            "epochs": 50,
            "batch_size": 256,
            "lr": 1e-3,
        },
    },
}

PROFILE_DOCS = {
    "quick": "CPU smoke scale: resnet1d-10 (width 32), 4 epochs, 1 seed, 200 bootstrap resamples, "
    "MIT-BIH PVC set, cross-dataset examples capped at 1,500 per split (stratified)",
    "shared": "all of the shared data on a 2-core CPU: PTB-XL all records (zero-shot on four task groups, "
    "few-label on superdiagnostic), full MIT-BIH AAMI (DS1 -> DS2, majority-capped with weights), CinC 2017, "
    "resnet1d-10 (width 32), 6 epochs, 5 seeds",
    "paper": "GPU scale: resnet1d-18, 50 epochs, batch 256, 3 seeds, all PTB-XL tasks, full MIT-BIH AAMI+PVC",
}


# settings that list datasets (their names may be given by an alias: mitdb for mitbih)
DATASET_LIST_SETTINGS = ("cross_datasets", "cross_finetune_datasets")


def _check_keys(d: dict, where: str) -> None:
    for key in d:
        if key not in DEFAULTS:
            raise unknown_name(f"setting in {where}", key, DEFAULTS)


def parse_seeds(text: Any) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; ranges '0-2' -> [0, 1, 2]; mixes '0-2,5' -> [0, 1, 2, 5] (order kept,
    duplicates dropped). A list (from a config file) is checked the same way."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    out: list[int] = []
    for raw in items:
        item = str(raw).strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", item)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise UserError(f"seeds '{text}': range '{item}' runs backwards (write {hi}-{lo})")
            vals = list(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", item):
            vals = [int(item)]
        else:
            raise UserError(f"seeds '{text}': '{item}' is not a seed; expected e.g. 0,1,2 or 0-2 or 0-2,5")
        out.extend(v for v in vals if v not in out)
    if not out:
        raise UserError(f"seeds '{text}': no seed given; expected e.g. 0,1,2 or 0-2")
    return out


def parse_fractions(text: Any) -> list[float]:
    """'0.01,0.1' -> [0.01, 0.1]; percentages '1%,10%' -> [0.01, 0.1]; mixes allowed. Every
    fraction must lie in (0, 1] (100%)."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    out: list[float] = []
    for raw in items:
        item = str(raw).strip()
        try:
            val = float(item[:-1]) / 100 if item.endswith("%") else float(item)
        except ValueError:
            raise UserError(f"label fractions '{text}': '{item}' is not a fraction; expected e.g. 0.01,0.1 "
                            "or 1%,10%") from None
        if not 0 < val <= 1 or val != val:
            raise UserError(f"label fractions '{text}': '{item}' is outside (0, 1] (0 % < fraction <= 100 %)")
        val = round(val, 10)  # 10% -> 0.1, not 0.1000000000000001
        if val not in out:
            out.append(val)
    if not out:
        raise UserError(f"label fractions '{text}': none given; expected e.g. 0.01,0.1 or 1%,10%")
    return out


# settings whose values parse with their own grammar (command line, --set and config files alike)
PARSERS = {"seeds": parse_seeds, "label_fractions": parse_fractions}


def _coerce(key: str, value: Any) -> Any:
    """Make a command-line string fit the default's type: lists from commas, numbers, bools."""
    default = DEFAULTS[key][0]
    if key in PARSERS:
        return PARSERS[key](value)
    if isinstance(value, str):
        if isinstance(default, list):
            value = [parse_value(v) for v in split_top_level(value)]
        elif isinstance(default, dict):
            raise UserError(f"setting '{key}' takes key=value pairs: use --set {key}.NAME=VALUE")
        else:
            parsed = parse_value(value)
            # a text setting whose choices include "none" (beat_norm, mitbih_baseline) keeps the word
            value = value.strip().lower() if parsed is None and isinstance(default, str) else parsed
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(default, list) and not isinstance(value, list):
        value = [value]
    return value


def load_config_file(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file '{p}' not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file '{p}' is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise UserError(f"config file '{p}' must hold a mapping of settings")
    _check_keys({k for k in data if k != "profile"}, f"config file '{p}'")
    return data


def build_config(profile: str | None = "quick", config_file: str | Path | None = None,
                 overrides: dict | None = None) -> dict:
    """DEFAULTS <- profile <- config file <- overrides (command-line).

    A config file may name its profile (``profile: shared``, as the ``config.yaml`` a run records
    does); it is the base when ``profile`` is None (no ``--profile`` given); default: quick."""
    file_data = load_config_file(config_file) if config_file else None
    file_profile = (file_data or {}).pop("profile", None)
    if profile is None:
        profile = str(file_profile) if file_profile is not None else "quick"
    if profile not in PROFILES:
        raise unknown_name("profile", profile, PROFILES)
    cfg = {k: copy.deepcopy(v[0]) for k, v in DEFAULTS.items()}
    layers = [(f"profile '{profile}'", PROFILES[profile])]
    if file_data is not None:
        layers.append((f"config file '{config_file}'", file_data))
    if overrides:
        layers.append(("command line", overrides))
    for where, layer in layers:
        _check_keys({k.split(".", 1)[0] for k in layer}, where)
        for key, value in layer.items():
            if key.startswith("method_settings."):
                cfg["method_settings"][key.split(".", 1)[1]] = parse_value(value) if isinstance(value, str) else value
            elif key == "method_settings":
                cfg["method_settings"].update(value or {})
            else:
                cfg[key] = _coerce(key, value)
    for key in DATASET_LIST_SETTINGS:  # one name per dataset: aliases (mitdb) become the registered name
        cfg[key] = [DATASETS.canonical(str(d)) for d in cfg[key]]
    cfg["profile"] = profile
    validate(cfg)
    return cfg


def validate(cfg: dict) -> None:
    """Check the run-wide settings, then let every protocol check its own."""
    known = descriptions()
    for p in cfg["protocols"]:
        if p not in known:
            raise unknown_name("protocol", p, known, plugin_hint())
    if cfg["device"] not in ("auto", "cpu", "cuda") and not str(cfg["device"]).startswith("cuda:"):
        raise unknown_name("device", cfg["device"], ["auto", "cpu", "cuda"])
    if cfg["precision"] not in ("auto", "fp32", "bf16", "fp16"):
        raise unknown_name("precision", cfg["precision"], ["auto", "fp32", "bf16", "fp16"])
    validate_dataset_options(cfg)
    for proto in protocols_in_order():
        proto.validate(cfg)
    validate_tasks(cfg)


def validate_dataset_options(cfg: dict) -> None:
    """Run settings that feed a dataset option with fixed choices (its class's ``option_choices``)
    hold one of them."""
    for name, rs in RUN_SETTINGS.items():
        choices = getattr(DATASETS.entry(name).factory, "option_choices", {})
        for opt, key in rs.options.items():
            if opt in choices and key in cfg and str(cfg[key]) not in choices[opt]:
                raise unknown_name(f"value of {key}", str(cfg[key]), list(choices[opt]))


# run settings that list tasks -> the dataset that must declare them (the cross-dataset targets'
# settings come from benchmark.data.datasets.RUN_SETTINGS)
PTBXL_TASK_SETTINGS = ("zero_shot_tasks", "few_label_tasks", "finetune_tasks")


def task_settings() -> dict[str, str]:
    """``{setting: dataset}`` for every run setting that lists a dataset's tasks."""
    out = {k: "ptbxl" for k in PTBXL_TASK_SETTINGS}
    out.update({rs.tasks: name for name, rs in RUN_SETTINGS.items() if rs.tasks})
    return out


def declared_tasks(dataset: str, cfg: dict | None = None) -> list[str]:
    """The tasks dataset ``dataset`` declares (its module's ``TASKS``); MIT-BIH read with the
    PVC-only annotator (``mitbih_annotator: pvc``) has the ``pvc`` task only."""
    cls = DATASETS.entry(dataset).factory
    tasks = list(getattr(importlib.import_module(cls.__module__), "TASKS", ()))
    if dataset == "mitbih" and cfg is not None and str(cfg.get("mitbih_annotator")) == "pvc":
        tasks = [t for t in tasks if t == "pvc"]
    return tasks


def validate_tasks(cfg: dict) -> None:
    """Every task a run setting names exists in its dataset (with a did-you-mean), checked
    before any data is prepared or any model trained."""
    for key, dataset in task_settings().items():
        known = declared_tasks(dataset, cfg)
        for task in cfg.get(key) or []:
            if str(task) not in known:
                err = unknown_name(f"{dataset} task", str(task), known)
                why = " (MIT-BIH read with mitbih_annotator=pvc has the pvc task only)" if (
                    dataset == "mitbih" and str(task) in getattr(importlib.import_module(
                        DATASETS.entry(dataset).factory.__module__), "TASKS", ())) else ""
                raise UserError(f"{err}{why} (setting '{key}'; `python -m benchmark list datasets` lists the tasks)")


def dump_yaml(cfg: dict, path: str | Path) -> None:
    atomic_write_text(yaml.safe_dump(cfg, sort_keys=True), Path(path))
