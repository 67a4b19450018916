"""Experiment trackers: ``run``/``tune``/``ablate --log tensorboard|mlflow`` (optional extras).

One small protocol, one adapter per tracker (the shape of Lightning's loggers)::

    tracker = make_tracker("mlflow", out="results/quick")     # or "tensorboard"; None: no logging
    run = tracker.start_run("mets seed=0", tags={...})        # one tracked run
    run.log_hyperparams({"method": "mets", "seed": 0, ...})
    run.log_metrics({"pretrain/train_loss": 2.31, "pretrain/lr": 1e-3}, step=epoch)
    run.finish("success")                                     # or "failed"

What the suite logs: ``run`` opens one tracked run per (method variant, pretraining seed) with the
variant, its base name, the seed, the config hash and every setting that can change a number as
parameters; per pretraining epoch the training and validation loss, learning rate, seconds and
throughput (ECG/s) under ``pretrain/``; the same per fine-tune epoch under
``finetune/<protocol>/<dataset>/<task>[/<label fraction>]/``; and every result row of the jobs it
runs as one metric named
``<protocol>/<mode>/<dataset>/<task>[/<label fraction>]/<metric>[/<class>]``. ``tune`` opens one
tracked run per trial (its parameters, the study's config hash, per-epoch losses and validation
objective, and the final objective). With ``run --workers N`` the workers do not open the tracker:
they record these calls and the submitting process logs them when each task finishes (a
pretraining's epochs arrive together at its end instead of one by one).

Where it goes: TensorBoard event files in ``<out>/tensorboard/<run name>/`` (``tensorboard --logdir
<out>/tensorboard``); MLflow to ``--log-uri`` or ``$MLFLOW_TRACKING_URI``, by default a local
SQLite file ``<out>/mlflow.db`` (MLflow 3's recommended local store; it refuses its old plain-file
store unless ``MLFLOW_ALLOW_FILE_STORE=true``, and ``--log-uri file:./mlruns`` then works too),
viewable with ``mlflow ui --backend-store-uri sqlite:///<out>/mlflow.db``.

TensorBoard and MLflow are optional extras (``pip install -e '.[tracking]'``): each adapter imports
its tracker inside its own methods.
"""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping, Protocol

from benchmark.errors import UserError

TRACKERS = ("tensorboard", "mlflow")
_BAD = re.compile(r"[^A-Za-z0-9_\-. /:]")


def metric_name(name: str) -> str:
    """A name every tracker accepts (MLflow: alphanumerics, ``_ - . space : /``)."""
    return _BAD.sub("_", str(name))


def _finite(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _param(v: Any) -> str:
    return v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)


class RunLogger(Protocol):
    def log_hyperparams(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None: ...
    def finish(self, status: str = "success") -> None: ...


class Tracker(Protocol):
    kind: str
    where: str

    def start_run(self, name: str, tags: Mapping[str, str] | None = None) -> RunLogger: ...


# --------------------------------------------------------------------------------------------
# TensorBoard
# --------------------------------------------------------------------------------------------
class TensorBoardRun:
    def __init__(self, logdir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = logdir
        self.writer = SummaryWriter(log_dir=str(logdir))

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        clean = {metric_name(k): (v if isinstance(v, (int, float, str, bool)) else _param(v))
                 for k, v in params.items() if v is not None}
        table = "| parameter | value |\n|---|---|\n" + "\n".join(f"| {k} | {_param(v)} |" for k, v in clean.items())
        self.writer.add_text("params", table, 0)
        exp, ssi, sei = hparams(clean, {})  # the HParams dashboard's view of this run
        for s in (exp, ssi, sei):
            self.writer.file_writer.add_summary(s)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        for k, v in metrics.items():
            f = _finite(v)
            if f is not None:
                self.writer.add_scalar(metric_name(k), f, 0 if step is None else int(step))

    def finish(self, status: str = "success") -> None:
        self.writer.add_text("status", status, 0)
        self.writer.close()


class TensorBoardTracker:
    kind = "tensorboard"

    def __init__(self, root: Path):
        try:
            import tensorboard  # noqa: F401
        except ImportError as exc:
            raise UserError("--log tensorboard needs the tensorboard package: pip install -e '.[tracking]' "
                            "(or pip install tensorboard)") from exc
        self.root = Path(root)
        self.where = str(self.root)
        self._names: set[str] = set()

    def start_run(self, name: str, tags: Mapping[str, str] | None = None) -> TensorBoardRun:
        stem = re.sub(r"[^A-Za-z0-9_.=,\-]+", "_", name).strip("_") or "run"
        stem = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        while stem in self._names:
            stem += "+"
        self._names.add(stem)
        run = TensorBoardRun(self.root / stem)
        if tags:
            run.writer.add_text("tags", "\n".join(f"- {k}: {v}" for k, v in tags.items()), 0)
        return run

    def hint(self) -> str:
        return f"TensorBoard: tensorboard --logdir {self.root}"


# --------------------------------------------------------------------------------------------
# MLflow
# --------------------------------------------------------------------------------------------
class MLflowRun:
    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id
        self._params: set[str] = set()

    def log_hyperparams(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(metric_name(k)[:250], _param(v)[:6000]) for k, v in params.items()
                 if v is not None and metric_name(k)[:250] not in self._params]
        self._params |= {p.key for p in items}
        for i in range(0, len(items), 100):  # MLflow: at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(metric_name(k)[:250], f, now, 0 if step is None else int(step))
                 for k, v in metrics.items() if (f := _finite(v)) is not None]
        for i in range(0, len(items), 1000):  # MLflow: at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def finish(self, status: str = "success") -> None:
        state = {"success": "FINISHED", "pruned": "KILLED"}.get(status, "FAILED")
        self.client.set_terminated(self.run_id, state)


class MLflowTracker:
    kind = "mlflow"

    def __init__(self, uri: str, experiment: str, artifacts: Path | None = None):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise UserError("--log mlflow needs MLflow: pip install -e '.[tracking]' (or pip install mlflow-skinny)") from exc
        self.uri, self.where = uri, uri
        try:
            self.client = MlflowClient(tracking_uri=uri)
            exp = self.client.get_experiment_by_name(experiment)
            if exp is not None:
                self.experiment_id = exp.experiment_id
            else:
                loc = artifacts.resolve().as_uri() if artifacts is not None else None
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=loc)
        except Exception as exc:  # a wrong URI, an unreachable server, a refused store
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"MLflow tracking URI '{uri}' does not work: {first[:300]}") from exc

    def start_run(self, name: str, tags: Mapping[str, str] | None = None) -> MLflowRun:
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={str(k): str(v) for k, v in (tags or {}).items()})
        return MLflowRun(self.client, run.info.run_id)

    def hint(self) -> str:
        return f"MLflow: mlflow ui --backend-store-uri {self.uri}"


# --------------------------------------------------------------------------------------------
def default_mlflow_uri(out: str | Path) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    path = Path(out).resolve() / "mlflow.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def make_tracker(kind: str | None, out: str | Path, *, uri: str | None = None, experiment: str | None = None):
    """The tracker named by ``--log`` (None: no tracking) writing under ``out`` by default."""
    if not kind or kind == "none":
        if uri:
            raise UserError("--log-uri needs --log mlflow")
        return None
    kind = str(kind).lower()
    if kind not in TRACKERS:
        raise UserError(f"--log '{kind}': unknown tracker; choose one of {', '.join(TRACKERS)}")
    out = Path(out)
    if kind == "tensorboard":
        if uri:
            raise UserError("--log-uri is MLflow's; TensorBoard writes to <out>/tensorboard")
        return TensorBoardTracker(out / "tensorboard")
    return MLflowTracker(uri or default_mlflow_uri(out), experiment or out.name, artifacts=out / "mlartifacts")


def add_arguments(p) -> None:
    p.add_argument("--log", choices=("none",) + TRACKERS, default=None,
                   help="also log to an experiment tracker: tensorboard (<out>/tensorboard) or mlflow "
                   "(default store <out>/mlflow.db); needs pip install -e '.[tracking]' (default: none)")
    p.add_argument("--log-uri", metavar="URI", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or "
                   "sqlite:///<out>/mlflow.db), e.g. http://host:5000 or file:./mlruns")


def result_metrics(rows) -> dict[str, float]:
    """Result rows -> {'<protocol>/<mode>/<dataset>/<task>[/<fraction>]/<metric>[/<class>]': value}."""
    out = {}
    for r in rows:
        if r.get("metric") == "confusion":
            continue
        lf = _finite(r.get("label_fraction"))
        parts = [r["protocol"], r["mode"], r["dataset"], r["task"]] + ([f"{lf:g}"] if lf is not None else [])
        parts.append(r["metric"])
        if r.get("class"):
            parts.append(str(r["class"]))
        v = _finite(r.get("value"))
        if v is not None:
            out[metric_name("/".join(str(p) for p in parts))] = v
    return out


def finetune_prefix(job) -> str:
    """Metric prefix of a fine-tune job's epochs: ``finetune/<protocol>/<dataset>/<task>[/<fraction>]``."""
    lf = _finite(job.label_fraction)
    parts = ["finetune", job.protocol, job.dataset, job.task] + ([f"{lf:g}"] if lf is not None else [])
    return metric_name("/".join(str(p) for p in parts))


def epoch_metrics(row: Mapping[str, Any], prefix: str = "pretrain") -> dict[str, float]:
    keep = ("train_loss", "val_loss", "lr", "seconds", "ecgs_per_s")
    return {f"{prefix}/{k}": row[k] for k in keep if _finite(row.get(k)) is not None}
