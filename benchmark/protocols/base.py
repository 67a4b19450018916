"""What a protocol is: a registered object that plans its jobs, names the pretrained model each
job needs, and runs one job from its description alone.

The harness only plans, claims, dispatches and writes; everything about *what* a job evaluates
(which dataset rows, which labelled subset, which scores, which metrics) lives in the protocol's
own file. Adding a protocol is one file in ``benchmark/protocols/`` (imported automatically) or
in a plugin module (``--plugin``)::

    @register_protocol
    class MyProtocol(Protocol):
        name = "my-protocol"
        description = "one line for `list`"
        order = 40                                   # position in the plan
        report_order = 40                            # position in the default list and the report

        def jobs(self, spec, seed, traits, ctx):     # -> [Job, ...] for one method variant and seed
            return [Job(spec, seed, self.name, "linear-probe", "ptbxl", t) for t in ctx.cfg["few_label_tasks"]]

        def run(self, job, ctx):                     # -> Evaluation(rows, scores, info)
            ...

A job's :class:`Job` key (method, seed, protocol, mode, dataset, task, label fraction) plus the
run's settings determine its result, so any worker on any machine can run it: ``pretraining``
says which pretrained model it needs (a dependency the scheduler can resolve first), ``run``
gets that model in a :class:`JobContext` and returns the rows and per-example scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from benchmark.errors import UserError
from benchmark.registry import METHODS, PROTOCOLS, parse_spec

log = logging.getLogger("benchmark.run")


@dataclass(frozen=True)
class Job:
    method: str  # canonical variant spec
    seed: int
    protocol: str
    mode: str
    dataset: str
    task: str
    label_fraction: float | None = None

    @property
    def key(self) -> dict:
        return {
            "method": self.method, "seed": self.seed, "protocol": self.protocol, "mode": self.mode,
            "dataset": self.dataset, "task": self.task, "label_fraction": self.label_fraction,
        }

    @property
    def label(self) -> str:
        frac = f" {self.label_fraction:g}" if self.label_fraction is not None else ""
        return f"{self.method} seed={self.seed} {self.protocol}/{self.mode} {self.dataset}/{self.task}{frac}"


@dataclass(frozen=True)
class Pretraining:
    """Which pretrained model a job needs: a method variant and seed, optionally trained on a
    labelled subset (``label_task`` and the sorted training positions ``label_rows``) for
    label-based methods. Equal requests share one pretraining."""

    spec: str
    seed: int
    label_task: str | None = None
    label_rows: tuple[int, ...] | None = None

    @property
    def labels(self) -> tuple[str, np.ndarray] | None:
        if self.label_task is None:
            return None
        return (self.label_task, np.asarray(self.label_rows, dtype=np.int64))

    @property
    def label(self) -> str:
        extra = f" on {len(self.label_rows)} {self.label_task} labels" if self.label_task else ""
        return f"pretrain {self.spec} seed={self.seed}{extra}"


@dataclass(frozen=True)
class MethodTraits:
    """What planning may know of a method without building it twice."""

    has_text_tower: bool
    uses_labels: bool


@dataclass
class JobContext:
    """What ``Protocol.run`` gets besides the job: the run's settings, the job's dataset, the
    pretrained model it asked for (and its cache hash), memoised encoder features
    ``embed(data, idx) -> [n, D]`` (``embed(data, idx, pooled=False)`` -> [n, D, T'];
    ``embed(data, idx, at=t, span=s)`` -> [n, D] read at ``t`` seconds into the window: see
    ``Method.encode_ecg``) and whether to show progress bars."""

    cfg: dict
    data: Any
    model: Any
    model_hash: str
    embed: Callable
    progress: bool = True
    dataset: Callable[[str], Any] | None = None


class Protocol:
    """Base class of every protocol (see the module docstring)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    order: ClassVar[int] = 100  # position in the plan (and in `list`)
    report_order: ClassVar[int] = 100  # position in config's default ``protocols`` list and the report
    objectives: ClassVar[tuple[str, ...]] = ()  # validation objectives it scores for ``tune``

    def jobs(self, spec: str, seed: int, traits: MethodTraits, ctx) -> list[Job]:
        """Jobs of this protocol for one method variant and seed. ``ctx`` offers ``cfg`` and
        ``dataset_tasks(name)``."""
        raise NotImplementedError

    def applies(self, job: Job, data) -> bool:
        """Whether ``job`` can run on ``data`` as configured (default: the dataset has the job's
        task; a job that does not apply is skipped with a warning)."""
        return job.task in data.tasks

    def pretraining(self, job: Job, traits: MethodTraits, ctx) -> Pretraining:
        """The pretrained model ``job`` needs (default: the variant's own pretraining for the
        seed). ``ctx`` offers ``cfg`` and ``dataset(name)``."""
        return Pretraining(job.method, job.seed)

    def stage(self, job: Job) -> str:
        """Name of the timing bucket the job's evaluation time goes to."""
        return "evaluate"

    def run(self, job: Job, ctx: JobContext):
        """Evaluate ``job`` -> ``Evaluation(rows, scores, info)`` (``benchmark.protocols.common``)."""
        raise NotImplementedError

    def validate(self, cfg: dict) -> None:
        """Check this protocol's own settings in a built config (raise ``UserError``)."""

    def validation_score(self, objective: str, method, data, task: str, *, template_set: str = "all",
                         probe_Cs=(0.01, 0.1, 1.0), probe_max_iter: int = 1000, seed: int = 0) -> float:
        """Validation macro AUROC of ``method`` for ``objective`` (one of ``objectives``); reads
        the train and validation splits only (``tune``'s objective)."""
        raise UserError(f"protocol '{self.name}' scores no validation objective '{objective}'")


def method_class(spec: str) -> type | None:
    """The registered class of method variant ``spec`` (None when the registry has no class for it)."""
    try:
        return METHODS.entry(parse_spec(spec)[0]).meta.get("cls")
    except UserError:
        return None


def unsupported(spec: str, dataset: str, mode: str) -> str | None:
    """Why method ``spec`` cannot be evaluated on ``dataset`` in ``mode`` (None: it can).

    Read from two optional class traits of the method: ``only_datasets`` (the datasets whose rows
    it can embed, e.g. hand-crafted beat features need MIT-BIH's beat annotations; absent or None:
    any), ``fine_tunable`` (False: it has no trained encoder a fine-tune could start from) and
    ``beat_features`` (one vector per beat: no feature map for an attention head)."""
    cls = method_class(spec)
    only = getattr(cls, "only_datasets", None)
    if only is not None and dataset not in only:
        return f"it embeds only {', '.join(only)} rows"
    if mode == "fine-tune" and not getattr(cls, "fine_tunable", True):
        return "it has no encoder to fine-tune"
    if mode == "attention-probe" and getattr(cls, "beat_features", False):
        return "its features have no time axis to attend over"
    return None


_told: set[tuple[str, str, int]] = set()


def drop_unsupported(protocol: str, jobs: list[Job]) -> list[Job]:
    """``jobs`` without those their method cannot run (:func:`unsupported`); the skipped jobs are
    counted and logged once per method, protocol and count (one line each)."""
    keep, why = [], {}
    for job in jobs:
        reason = unsupported(job.method, job.dataset, job.mode)
        if reason is None:
            keep.append(job)
        else:
            why.setdefault(f"{job.dataset}/{job.mode}: {reason}", 0)
            why[f"{job.dataset}/{job.mode}: {reason}"] += 1
    if why:
        method = jobs[0].method
        key = (method, protocol, len(jobs) - len(keep))
        if key not in _told:
            _told.add(key)
            log.warning("%s: skipping %d %s job(s) per seed that do not apply (%s)", method,
                        len(jobs) - len(keep), protocol, "; ".join(f"{k} [{n}]" for k, n in why.items()))
    return keep


def register_protocol(cls: type[Protocol]) -> type[Protocol]:
    """Class decorator: register a :class:`Protocol` subclass under ``cls.name`` in
    ``benchmark.registry.PROTOCOLS`` (its one instance is the entry's factory result, kept in
    ``meta['instance']``). Registering a name again replaces it (a reloaded plug-in)."""
    if not (isinstance(cls, type) and issubclass(cls, Protocol)) or not cls.name:
        raise TypeError("register_protocol decorates Protocol subclasses that set a name")
    PROTOCOLS.unregister(cls.name)
    PROTOCOLS.register(cls.name, description=cls.description, instance=cls())(cls)
    return cls


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.entry(name).meta["instance"]


def protocols_in_order() -> list[Protocol]:
    """Every registered protocol in plan order (``order``, then name)."""
    found = [PROTOCOLS.entry(n).meta["instance"] for n in PROTOCOLS.names()]
    return sorted(found, key=lambda p: (p.order, p.name))


def protocols_in_report_order() -> list[Protocol]:
    """Every registered protocol in report order (``report_order``, then name): config's default
    ``protocols`` list and the report's tables."""
    return sorted(protocols_in_order(), key=lambda p: (p.report_order, p.name))


def protocol_for_objective(objective: str) -> Protocol:
    """The protocol that scores the validation ``objective`` (``tune --objective``)."""
    for p in protocols_in_order():
        if objective in p.objectives:
            return p
    raise UserError(f"unknown objective '{objective}'")


def objectives() -> tuple[str, ...]:
    """Every validation objective a registered protocol scores, in plan order."""
    return tuple(o for p in protocols_in_order() for o in p.objectives)


def descriptions() -> dict[str, str]:
    """name -> description, in plan order (what `list` shows)."""
    return {p.name: p.description for p in protocols_in_order()}


__all__ = ["Job", "Pretraining", "MethodTraits", "JobContext", "Protocol", "register_protocol", "get_protocol",
           "method_class", "unsupported", "drop_unsupported",
           "protocols_in_order", "protocols_in_report_order", "protocol_for_objective", "objectives", "descriptions"]
