"""Arguments and helpers shared by the commands (one declaration each): ``--data-root``,
``--cache-dir`` and ``--device`` (every command that takes them declares them through
:func:`add_data_root`, :func:`add_cache_dir`, :func:`add_device`, with its own help text where
the command uses them differently), the settings flags of ``run``/``tune``/``ablate``, how flags
become config overrides, the ``--log`` tracker, and the closing hint that names the report
command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.config import PROFILES
from benchmark.errors import UserError
from benchmark.report.index import report_command
from benchmark.engine.tracking import add_arguments as add_tracking_arguments
from benchmark.engine.tracking import make_tracker


DATA_ROOT_HELP = "folder holding ptb-xl/, mitdb/, cinc2017/ (default $ECGBENCH_DATA_ROOT or ../shared/data)"
CACHE_DIR_HELP = "prepared stores, text embeddings, pretrained encoders (default: user cache dir)"
DEVICE_HELP = "auto | cpu | cuda"


def add_data_root(p, help: str = DATA_ROOT_HELP, metavar: str | None = None) -> None:
    """``--data-root`` (resolved by ``paths.resolve_data_root``: None means the default root)."""
    p.add_argument("--data-root", metavar=metavar, help=help)


def add_cache_dir(p, help: str = CACHE_DIR_HELP, metavar: str | None = None) -> None:
    """``--cache-dir`` (resolved by ``paths.resolve_cache_dir``: None means the default cache dir)."""
    p.add_argument("--cache-dir", metavar=metavar, help=help)


def add_device(p, default: str | None = None, help: str = DEVICE_HELP) -> None:
    """``--device`` (resolved by ``device.resolve_device``; None leaves it to the settings)."""
    p.add_argument("--device", default=default, help=help)


def add_common_arguments(p) -> None:
    p.add_argument("--profile", default="quick", help=f"named settings: {', '.join(PROFILES)} (default quick)")
    p.add_argument("--config", help="YAML file of settings (e.g. best.yaml from `tune`); flags override it")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set finetune_epochs=5 --set method_settings.width=64")
    add_device(p)
    p.add_argument("--precision", help="auto | fp32 | bf16 | fp16")
    add_data_root(p)
    add_cache_dir(p)
    p.add_argument("--plugin", action="append", default=[], help="import a module that registers extra methods")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_tracking_arguments(p)


def overrides_from_args(args) -> dict:
    ov: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise UserError(f"--set '{item}': expected KEY=VALUE")
        k, v = item.split("=", 1)
        ov[k.strip()] = v
    mapping = {
        "methods": "methods", "protocols": "protocols", "seeds": "seeds",
        "label_fractions": "label_fractions", "device": "device", "precision": "precision",
    }
    for attr, key in mapping.items():
        val = getattr(args, attr, None)
        if val is not None:
            ov[key] = val
    tasks = getattr(args, "tasks", None)
    if tasks:
        ov["zero_shot_tasks"] = tasks
        ov["few_label_tasks"] = tasks
    return ov


def tracker_from_args(args, out, experiment: str | None = None):
    """The ``--log`` tracker of a command (None without ``--log``)."""
    return make_tracker(getattr(args, "log", None), out, uri=getattr(args, "log_uri", None), experiment=experiment)


def next_step_text(*outs, tracker=None) -> str:
    """The exact command that makes the report of what a run just wrote (and where the tracker is)."""
    paths = [Path(o) for o in outs]
    parent = paths[0].parent
    # an ablation writes one folder per setting under one parent: one report named after the parent
    name = parent.name if len(paths) > 1 and all(p.parent == parent for p in paths) else paths[0].name
    report = Path("reports") / name
    text = (f"make the report (tables, figures, index.md, index.html in {report}/):\n"
            f"  {report_command(outs, report)}")
    if tracker is not None:
        text = f"{tracker.hint()}\n" + text
    return text
