"""Optuna search spaces, one per method, declared with a registry-style decorator.

A space is a list of :class:`Param`. Each parameter is either a *method* setting (it becomes part
of the variant name, ``mets[lr=0.0003,temperature=0.05]``, and so of the pretraining cache key) or
a *run* setting (a key of ``benchmark.config.DEFAULTS``, e.g. ``prompt_templates``, which changes
evaluation but not the pretrained encoder). A run parameter may apply to one objective only: the
prompt template set means nothing to a linear probe, so it is not searched there.

A plug-in method declares its own space next to its code::

    from benchmark.tune.spaces import Param, register_space

    @register_space("my-method")
    def _space():
        return [Param.float("lr", 1e-5, 1e-2, log=True), Param.categorical("depth", [2, 4, 8])]

Names are checked against the method's factory (``METHODS.entry(name).accepted_params()``) and the
run settings, so a typo is a one-line ``UserError`` rather than a silently ignored knob.
Command-line ``--space`` items replace or add parameters (see :func:`parse_space_item`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from benchmark.errors import UserError, unknown_name
from benchmark.registry import parse_value
from benchmark.protocols import objectives

OBJECTIVES = objectives()  # what the protocols score on validation data: zero-shot, linear-probe
# run settings that say *what* to run rather than *how*: never searched
NOT_SEARCHABLE = {"methods", "protocols", "seeds", "zero_shot_tasks", "few_label_tasks", "label_fractions",
                  "few_label_modes", "cross_datasets", "device", "method_settings", "panel_examples"}


@dataclass(frozen=True)
class Param:
    """One searched setting. ``kind``: 'float' | 'int' | 'categorical'."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    scope: str = "method"  # 'method' (variant name) | 'run' (config key)
    objectives: tuple[str, ...] = OBJECTIVES  # objectives for which the parameter matters
    help: str = ""

    @staticmethod
    def float(name: str, low: float, high: float, *, log: bool = False, **kw) -> "Param":
        return Param(name, "float", float(low), float(high), log=log, **kw)

    @staticmethod
    def int(name: str, low: int, high: int, *, log: bool = False, **kw) -> "Param":
        return Param(name, "int", int(low), int(high), log=log, **kw)

    @staticmethod
    def categorical(name: str, choices: Sequence, **kw) -> "Param":
        return Param(name, "categorical", choices=tuple(choices), **kw)

    def __post_init__(self):
        if self.kind not in ("float", "int", "categorical"):
            raise UserError(f"search parameter '{self.name}': unknown kind '{self.kind}'")
        if self.scope not in ("method", "run"):
            raise UserError(f"search parameter '{self.name}': scope must be 'method' or 'run'")
        if self.kind == "categorical":
            if not self.choices:
                raise UserError(f"search parameter '{self.name}' has no choices")
        else:
            if self.low is None or self.high is None or not self.low < self.high:
                raise UserError(f"search parameter '{self.name}': need low < high, got {self.low}..{self.high}")
            if self.log and self.low <= 0:
                raise UserError(f"search parameter '{self.name}': a log range must be positive, got {self.low}")

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial for a value."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def describe(self) -> str:
        if self.kind == "categorical":
            body = "|".join(str(c) for c in self.choices)
        else:
            body = f"{self.low:g}..{self.high:g}" + (":log" if self.log else "")
        where = "" if self.scope == "method" else " (run setting)"
        only = "" if set(self.objectives) == set(OBJECTIVES) else f" [{', '.join(self.objectives)} only]"
        return f"{self.name}={body}{where}{only}"


SPACES: dict[str, Callable[[], list[Param]]] = {}


def register_space(method: str):
    """Decorator: ``@register_space("mets")`` on a function returning the method's parameters."""

    def deco(fn: Callable[[], list[Param]]):
        if method in SPACES and SPACES[method] is not fn:
            raise ValueError(f"search space for '{method}' registered twice")
        SPACES[method] = fn
        return fn

    return deco


def default_space(method: str) -> list[Param]:
    """The registered space of a method (an empty list when it declares none)."""
    fn = SPACES.get(method)
    return list(fn()) if fn else []


# ------------------------------------------------------------------------------------------
# the suite's own methods
# ------------------------------------------------------------------------------------------
@register_space("mets")
def _mets() -> list[Param]:
    return [
        Param.float("lr", 1e-4, 1e-2, log=True, help="Adam(W) learning rate"),
        Param.float("weight_decay", 1e-6, 1e-1, log=True),
        Param.float("temperature", 0.02, 0.2, log=True, help="CLIP temperature (initial value if learnable)"),
        Param.categorical("learnable_temperature", [False, True]),
        Param.categorical("proj_dim", [64, 128, 256]),
        Param.categorical("report_text", ["raw", "clean", "en"], help="which report text METS trains on"),
        Param.categorical("width", [16, 32, 64], help="ResNet1d base width"),
        Param.categorical("prompt_templates", ["all", "paper", "report"], scope="run", objectives=("zero-shot",),
                          help="zero-shot class prompt template set"),
    ]


@register_space("simclr")
def _simclr() -> list[Param]:
    return [
        Param.float("lr", 1e-4, 1e-2, log=True),
        Param.float("temperature", 0.05, 0.5, log=True),
        Param.float("crop_scale", 0.3, 1.0, help="keep at least this fraction of the window"),
        Param.float("noise_std", 0.0, 0.2),
        Param.float("scale", 0.0, 0.5, help="amplitude scaling strength"),
        Param.float("wander_amp", 0.0, 0.3, help="baseline wander amplitude"),
        Param.float("mask_frac", 0.0, 0.3, help="time-mask fraction"),
        Param.float("lead_drop", 0.0, 0.5, help="lead dropout probability"),
    ]


@register_space("clocs")
def _clocs() -> list[Param]:
    return [
        Param.float("lr", 1e-4, 1e-2, log=True),
        Param.float("temperature", 0.05, 0.5, log=True),
        Param.categorical("segment_s", [1.25, 2.5, 5.0], help="segment length in seconds"),
    ]


@register_space("supervised")
def _supervised() -> list[Param]:
    return [
        Param.float("lr", 1e-4, 1e-2, log=True),
        Param.float("weight_decay", 1e-6, 1e-1, log=True),
    ]


# random-init has nothing to learn, hence nothing to tune: no space registered.


# ------------------------------------------------------------------------------------------
# command-line overrides and validation
# ------------------------------------------------------------------------------------------
def parse_space_item(item: str, *, scope: str = "method") -> tuple[str, Param | Any]:
    """``--space`` syntax -> (name, Param) or (name, fixed value).

    ``lr=1e-5..1e-2:log``  float range (log scale)      ``depth=2..8``   int range (both ints)
    ``lm=minilm|tfidf``    categorical                  ``proj_dim=128`` fixed value (not searched)
    """
    if "=" not in item:
        raise UserError(f"--space '{item}': expected NAME=SPEC (a|b, lo..hi, lo..hi:log or a value)")
    name, spec = (s.strip() for s in item.split("=", 1))
    name = name.replace("-", "_")
    if not name or not spec:
        raise UserError(f"--space '{item}': expected NAME=SPEC")
    log = spec.endswith(":log")
    body = spec[:-4] if log else spec
    if "|" in body:
        if log:
            raise UserError(f"--space '{item}': ':log' applies to ranges, not choices")
        return name, Param.categorical(name, [parse_value(v) for v in body.split("|")], scope=scope)
    if ".." in body:
        lo_s, hi_s = body.split("..", 1)
        lo, hi = parse_value(lo_s), parse_value(hi_s)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
            raise UserError(f"--space '{item}': range bounds must be numbers")
        if isinstance(lo, int) and isinstance(hi, int):
            return name, Param.int(name, lo, hi, log=log, scope=scope)
        return name, Param.float(name, lo, hi, log=log, scope=scope)
    if log:
        raise UserError(f"--space '{item}': ':log' needs a range lo..hi")
    return name, parse_value(body)


def resolve_space(
    method: str,
    *,
    objective: str,
    fixed: dict[str, Any],
    overrides: Sequence[str] = (),
    accepted: set[str] | None,
    run_keys: set[str],
) -> tuple[list[Param], dict[str, Any], dict[str, Any]]:
    """The parameters to search for one study, plus the fixed method and run settings.

    ``fixed``: settings from the method spec (``mets[lm=tfidf]``): never searched.
    ``overrides``: ``--space`` items; a fixed value there pins a setting.
    ``accepted``: the factory's keyword names (None: it takes ``**kwargs``).
    ``run_keys``: config keys that may be searched as run settings.
    Returns ``(params, fixed_method_settings, fixed_run_settings)``.
    """
    space = {p.name: p for p in default_space(method)}
    fixed_method = dict(fixed)
    fixed_run: dict[str, Any] = {}
    searchable_run = set(run_keys) - NOT_SEARCHABLE

    def scope_of(name: str) -> str:
        if name in space:
            return space[name].scope
        if accepted is None or name in accepted:
            return "method"
        if name in searchable_run:
            return "run"
        known = set(space) | (accepted or set()) | searchable_run
        raise unknown_name(f"search parameter for '{method}'", name, known)

    for item in overrides:
        name, what = parse_space_item(item)
        scope = scope_of(name)
        if isinstance(what, Param):
            old = space.get(name)
            objectives = old.objectives if old else OBJECTIVES
            space[name] = replace(what, scope=scope, objectives=objectives)
        else:
            space.pop(name, None)
            (fixed_method if scope == "method" else fixed_run)[name] = what
    # every declared name must exist, also in a registered (plug-in) space
    for p in space.values():
        if p.scope == "method" and accepted is not None and p.name not in accepted:
            raise unknown_name(f"search parameter in the space of '{method}' (not a setting of its factory)",
                               p.name, accepted)
        if p.scope == "run" and p.name not in searchable_run:
            raise unknown_name(f"run setting in the space of '{method}'", p.name, searchable_run)
    params = [p for n, p in space.items() if n not in fixed_method and objective in p.objectives]
    if not params:
        raise UserError(
            f"nothing to tune for '{method}' with the {objective} objective: its search space is empty"
            + (" (random-init has no trainable settings)" if method == "random-init" else "")
            + "; add parameters with --space NAME=SPEC"
        )
    return params, fixed_method, fixed_run
