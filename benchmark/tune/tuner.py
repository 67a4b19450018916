"""The tuner behind ``python -m benchmark tune``: an Optuna study of one method's settings, on
validation data only.

Each trial samples the method's search space (``benchmark.tune.spaces``), turns the sample into
a variant name (``mets[lr=0.0003,temperature=0.05,...]``), pretrains it through the engine
(``Runner.pretrained``: the same code, cache and checkpoints as ``run``) and scores it on the
*validation* split through the protocols' own scoring (``Runner.validation_score``): macro AUROC
of zero-shot, or of a linear probe fit on the training split.
The whole trial runs inside ``data.forbid("test")``: a read of the test split raises.

Pruning: after every pretraining epoch the objective is computed on the current weights and
reported (``trial.report``); a median (default) or Hyperband pruner stops hopeless trials.

Storage and workers. The default storage is an Optuna journal file in the study folder
(``<out>/journal.log``) -- no server needed; several processes on one machine (or machines sharing
the folder) can work on one study. Any RDB URL (``sqlite:///...``, ``postgresql://...``) works
too. Start N workers by running the same command N times with the same ``--study`` and
``--storage``. ``--trials N`` is the study's total of COMPLETE + PRUNED trials over all workers.
A worker killed mid-trial stops sending heartbeats; once its trial is older than the grace period
the next trial start marks it FAIL and queues a retry with the same parameters
(``RetryHeartbeatStaleTrialCallback``); the retry resumes from the epoch checkpoint. Optuna's
journal storage has no heartbeat of its own, so ``benchmark.tune.storage`` adds one.

Outputs (in ``--out``): ``best.yaml`` (a config for ``run``), ``trials.csv`` / ``trials.md``,
``figures/*.png`` and ``study.json``.

Optuna (and its matplotlib figures, yaml, pandas) are imported inside the methods that use them:
optional dependency of ``tune`` and start-up time of the CLI, which imports this module.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from benchmark.config import DEFAULTS, build_config
from benchmark.data.base import SplitAccessError
from benchmark.data.datasets import data_settings
from benchmark.engine.runner import Runner
from benchmark.errors import UserError
from benchmark.io import atomic_write, atomic_write_csv, atomic_write_json, atomic_write_text
from benchmark.paths import stable_hash
from benchmark.registry import METHODS, format_spec, load_builtin_plugins, parse_spec
from benchmark.results import safe_name
from benchmark.tune.spaces import resolve_space
from benchmark.tune.storage import make_storage

log = logging.getLogger("benchmark.tune")

SKIPPED_ATTR = "skipped"
ERROR_ATTR = "error"
MAX_CONSECUTIVE_FAILURES = 3


class BudgetReached(Exception):
    """The study already holds its COMPLETE+PRUNED trials (other workers got there first)."""


class TrialError(Exception):
    """A trial failed for a reason that should not stop the worker (e.g. a diverging lr)."""


class Tuner:
    """One worker of one study. Build with :meth:`from_args` or directly (tests do)."""

    def __init__(
        self,
        method: str,
        *,
        profile: str = "quick",
        config_file: str | None = None,
        overrides: dict | None = None,
        objective: str = "auto",
        task: str = "superdiagnostic",
        seed: int | None = None,
        space: list[str] | tuple = (),
        study: str | None = None,
        storage: str | None = None,
        out: str | os.PathLike | None = None,
        data_root=None,
        cache_dir=None,
        pruner: str = "median",
        sampler_seed: int | None = None,
        heartbeat: int = 60,
        grace: int | None = None,
        max_retry: int = 3,
        progress: bool = True,
        tracker=None,
    ):
        load_builtin_plugins()
        self.base_name, base_params = parse_spec(method)
        entry = METHODS.entry(self.base_name)
        METHODS.validate(method)
        overrides = dict(overrides or {})
        overrides["methods"] = [format_spec(self.base_name, base_params)]
        self.profile, self.config_file, self.overrides = profile, config_file, overrides
        self.cfg = build_config(profile, config_file, overrides)
        self.seed = int(self.cfg["seeds"][0] if seed is None else seed)
        cls = entry.meta.get("cls") or getattr(entry.factory, "method_class", None)
        has_text = bool(getattr(cls if cls is not None else METHODS.create(method), "has_text_tower", False))
        if objective == "auto":
            objective = "zero-shot" if has_text else "linear-probe"
        if objective == "zero-shot" and not has_text:
            raise UserError(f"method '{self.base_name}' has no text tower: use --objective linear-probe")
        self.objective, self.task = objective, task
        self.params, self.fixed_method, self.fixed_run = resolve_space(
            self.base_name, objective=objective, fixed=base_params, overrides=list(space),
            accepted=entry.accepted_params(), run_keys=set(DEFAULTS),
        )
        if self.fixed_run:
            self.cfg = build_config(profile, config_file, {**overrides, **self.fixed_run})
        fixed_txt = "".join(f"-{k}={v}" for k, v in sorted(base_params.items()))
        self.study_name = study or safe_name(f"{self.base_name}{fixed_txt}-{objective}-{task}")
        self.out = Path(out) if out else Path("results") / "tune" / self.study_name
        self.storage_url = storage or str(self.out / "journal.log")
        self.data_root, self.cache_dir, self.progress = data_root, cache_dir, progress
        self.pruner_name, self.sampler_seed = pruner, sampler_seed
        self.heartbeat, self.grace, self.max_retry = heartbeat, grace, max_retry
        self._runners: dict[str, Any] = {}
        self.tracker = tracker  # benchmark.engine.tracking: one tracked run per trial; None: off
        self._study = None
        self._failures = 0

    @classmethod
    def from_args(cls, args, overrides: dict) -> "Tuner":
        return cls(
            args.method, profile=args.profile, config_file=args.config, overrides=overrides,
            objective=args.objective, task=args.task, seed=args.seed, space=args.space, study=args.study,
            storage=args.storage, out=args.out, data_root=args.data_root, cache_dir=args.cache_dir,
            pruner=args.pruner, sampler_seed=args.sampler_seed, heartbeat=args.heartbeat, grace=args.grace,
            max_retry=args.max_retry, progress=not args.no_progress,
        )

    # -- identity of the study --------------------------------------------------------------
    def study_meta(self) -> dict:
        return {
            "method": self.base_name,
            "fixed": {k: str(v) for k, v in sorted({**self.fixed_method, **self.fixed_run}.items())},
            "objective": self.objective,
            "task": self.task,
            "seed": self.seed,
            "profile": self.profile,
            "space": [p.describe() for p in self.params],
            "config_hash": stable_hash({k: v for k, v in self.cfg.items() if k not in ("methods", "device")}),
        }

    @property
    def study(self):
        if self._study is None:
            import optuna  # local: optional dependency

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            storage = make_storage(self.storage_url, heartbeat=self.heartbeat, grace=self.grace,
                                   max_retry=self.max_retry)
            if self.pruner_name == "median":
                pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
            elif self.pruner_name == "hyperband":
                epochs = int(self.cfg["method_settings"].get("epochs", 10) or 10)
                pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(2, epochs))
            else:
                pruner = optuna.pruners.NopPruner()
            sampler = optuna.samplers.TPESampler(seed=self.sampler_seed, n_startup_trials=5)
            study = optuna.create_study(study_name=self.study_name, storage=storage, direction="maximize",
                                        sampler=sampler, pruner=pruner, load_if_exists=True)
            meta = self.study_meta()
            old = study.user_attrs.get("ecgbench")
            if old is None:
                study.set_user_attr("ecgbench", meta)
            else:
                diff = [k for k in ("method", "fixed", "objective", "task", "seed", "space", "config_hash")
                        if old.get(k) != meta.get(k)]
                if diff:
                    raise UserError(
                        f"study '{self.study_name}' in {self.storage_url} was created with different "
                        f"{', '.join(diff)}; resume it with the same options or pick another --study name"
                    )
            self._study = study
        return self._study

    # -- data / pretraining through the harness -----------------------------------------------
    def runner(self, run_settings: dict):
        """An engine Runner for the run-level settings of a trial (one per distinct setting)."""
        key = stable_hash(run_settings)
        if key not in self._runners:
            cfg = build_config(self.profile, self.config_file, {**self.overrides, **self.fixed_run, **run_settings})
            r = Runner(cfg, data_root=self.data_root, cache_dir=self.cache_dir, out=self.out, progress=self.progress)
            r.begin()  # pretraining histories land in <out>/history
            for other in self._runners.values():  # evaluation-only settings share the loaded data
                if all(other.cfg[k] == cfg[k] for k in data_settings()):
                    r.share_data(other)
                    break
            self._runners[key] = r
        return self._runners[key]

    def spec_for(self, method_params: dict) -> str:
        return format_spec(self.base_name, {**self.fixed_method, **method_params})

    def score(self, runner, method) -> float:
        """The trial's objective: the protocols' validation scoring with the runner's settings."""
        return runner.validation_score(method, self.objective, self.task, seed=self.seed)

    def evaluate(self, method_params: dict, run_settings: dict, trial=None, logger=None) -> tuple[float, str]:
        """Pretrain (or load) one variant and return (validation objective, variant spec).

        With ``trial``, the objective is reported after every epoch and a pruner may stop it.
        The test split is forbidden for the whole call.
        """
        import optuna  # local: optional dependency

        spec = self.spec_for(method_params)
        runner = self.runner(run_settings)
        data = runner.dataset("ptbxl")

        def on_epoch_end(method, epoch, row):
            value = self.score(runner, method)
            log.info("trial %s epoch %d: val %s %.4f (val loss %s)", trial.number, epoch, self.objective, value,
                     row.get("val_loss"))
            trial.report(value, epoch)
            if logger is not None:
                logger.log_metrics({f"val/{self.objective}_macro_auroc": value}, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} (val {self.objective} AUROC {value:.4f})")

        with data.forbid("test"):
            try:
                model, h = runner.pretrained(spec, self.seed, on_epoch_end=on_epoch_end if trial is not None else None,
                                             logger=logger)
                value = self.score(runner, model)
            finally:
                runner.release_models()  # one model in memory at a time
        if trial is not None:
            trial.set_user_attr("pretrain_hash", h)
        return value, spec

    # -- trials -------------------------------------------------------------------------------
    def _admit(self, trial, n_trials: int) -> None:
        """Run this trial only if the study still needs it.

        Counts COMPLETE+PRUNED trials plus RUNNING trials with a smaller number (started earlier
        and alive): the trial numbers break ties between workers that start at the same moment,
        so the total never exceeds ``n_trials``. While earlier live trials could still fill the
        budget, wait for them (they may fail, and then this trial is needed).
        """
        from optuna.trial import TrialState  # local: optional dependency

        storage = self.study._storage
        while True:
            trials = self.study.get_trials(deepcopy=False)
            done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
            stale = set(storage._get_stale_trial_ids(self.study._study_id)) if hasattr(storage, "_get_stale_trial_ids") else set()
            ahead = sum(t.state == TrialState.RUNNING and t.number < trial.number and t._trial_id not in stale
                        for t in trials)
            if done >= n_trials:
                trial.set_user_attr(SKIPPED_ATTR, "the study already holds its trials")
                self.study.stop()
                raise BudgetReached()
            if done + ahead < n_trials:
                return
            time.sleep(min(5.0, self.heartbeat))

    def objective_fn(self, n_trials: int):
        import optuna  # local: optional dependency

        def objective(trial) -> float:
            self._admit(trial, n_trials)
            method_params, run_settings = {}, {}
            for p in self.params:
                v = p.suggest(trial)
                if isinstance(v, float):
                    v = float(f"{v:.3g}")  # readable variant names; this rounded value is what trains
                (method_params if p.scope == "method" else run_settings)[p.name] = v
            trial.set_user_attr("method", self.spec_for(method_params))
            if run_settings:
                trial.set_user_attr("run_settings", run_settings)
            retried = self.study._storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
            log.info("trial %d%s: %s %s", trial.number, f" (retry of {retried})" if retried is not None else "",
                     self.spec_for(method_params), run_settings or "")
            tracked = self._track_trial(trial, method_params, run_settings)
            status = "failed"
            try:
                value, _ = self.evaluate(method_params, run_settings, trial, logger=tracked)
                status = "success"
            except optuna.TrialPruned:
                status = "pruned"
                raise
            except SplitAccessError:
                raise
            except (UserError, RuntimeError, ValueError, FloatingPointError) as exc:
                trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {exc}"[:500])
                raise TrialError(str(exc)) from exc
            finally:
                if tracked is not None:
                    if status == "success":
                        tracked.log_metrics({f"objective/val_{self.objective}_macro_auroc": value})
                    tracked.finish(status)
            log.info("trial %d: val %s macro AUROC %.4f", trial.number, self.objective, value)
            return value

        return objective

    def _track_trial(self, trial, method_params: dict, run_settings: dict):
        if self.tracker is None:
            return None
        meta = self.study_meta()
        run = self.tracker.start_run(f"trial {trial.number}: {self.spec_for(method_params)}",
                                     tags={"study": self.study_name, "storage": self.storage_url})
        run.log_hyperparams({
            "method": self.spec_for(method_params), "method_name": self.base_name, "seed": self.seed,
            "config_hash": meta["config_hash"], "study": self.study_name, "trial": trial.number,
            "objective": self.objective, "task": self.task, "profile": self.profile,
            **{f"space.{k}": v for k, v in {**method_params, **run_settings}.items()},
            **{f"fixed.{k}": v for k, v in meta["fixed"].items()},
        })
        return run

    def counts(self) -> dict[str, int]:
        return dict(Counter(t.state.name for t in self.study.get_trials(deepcopy=False)))

    def optimize(self, n_trials: int, *, timeout: float | None = None) -> None:
        """Work on the study until it holds ``n_trials`` COMPLETE+PRUNED trials (or ``timeout``)."""
        import optuna  # local: optional dependency
        from optuna.study import MaxTrialsCallback
        from optuna.trial import TrialState

        if n_trials < 1:
            raise UserError(f"--trials must be >= 1, got {n_trials}")
        states = (TrialState.COMPLETE, TrialState.PRUNED)
        done = sum(self.counts().get(s.name, 0) for s in states)
        if done >= n_trials:
            log.info("study '%s' already holds %d finished trials (>= %d): nothing to run", self.study_name, done, n_trials)
            return
        log.info("study '%s' (%s): %d of %d trials done; storage %s", self.study_name, self.objective, done,
                 n_trials, self.storage_url)

        def on_trial_end(study, frozen) -> None:
            if frozen.state == TrialState.FAIL and ERROR_ATTR in frozen.user_attrs:
                self._failures += 1
                log.warning("trial %d failed: %s", frozen.number, frozen.user_attrs[ERROR_ATTR])
                if self._failures >= MAX_CONSECUTIVE_FAILURES:
                    study.stop()
            elif frozen.state in states:
                self._failures = 0

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.optimize(
                self.objective_fn(n_trials), n_trials=None, timeout=timeout,
                callbacks=[MaxTrialsCallback(n_trials, states=states), on_trial_end],
                catch=(BudgetReached, TrialError), gc_after_trial=True,
            )
        if self._failures >= MAX_CONSECUTIVE_FAILURES:
            last = [t for t in self.study.get_trials(deepcopy=False) if ERROR_ATTR in t.user_attrs][-1]
            raise UserError(f"{self._failures} trials in a row failed; last (trial {last.number}): "
                            f"{last.user_attrs[ERROR_ATTR]}")

    # -- outputs -----------------------------------------------------------------------------
    def best_trial(self):
        from optuna.trial import TrialState

        done = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not done:
            return None
        return max(done, key=lambda t: t.value)

    def best_config(self) -> dict | None:
        """Settings for ``run --profile <profile> --config best.yaml``: the best variant, its
        run-level settings and every setting this study changed from the profile."""
        best = self.best_trial()
        if best is None:
            return None
        base = build_config(self.profile)
        cfg: dict[str, Any] = {}
        for k, v in self.cfg.items():
            if k in ("profile", "methods", "seeds") or base.get(k) == v:
                continue
            cfg[k] = copy.deepcopy(v)
        for k, v in best.user_attrs.get("run_settings", {}).items():
            cfg[k] = v
        cfg["methods"] = [best.user_attrs["method"]]
        cfg["seeds"] = [self.seed]
        return cfg

    def write_outputs(self) -> dict[str, Path]:
        """best.yaml, trials.csv, trials.md, study.json and figures/*.png (atomic writes)."""
        import yaml  # local: start-up time

        self.out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        df = self.trials_frame()
        paths["trials table"] = self.out / "trials.csv"
        atomic_write_csv(df, paths["trials table"])
        atomic_write_text(_markdown(df), self.out / "trials.md")
        best = self.best_trial()
        info = {**self.study_meta(), "study": self.study_name, "storage": self.storage_url,
                "counts": self.counts(), "best": None}
        cfg = self.best_config()
        if cfg is not None:
            info["best"] = {"trial": best.number, "value": best.value, "method": best.user_attrs["method"],
                            "params": best.params}
            header = (f"# best trial {best.number} of Optuna study '{self.study_name}': validation "
                      f"{self.objective} macro AUROC {best.value:.4f} on PTB-XL {self.task}\n"
                      f"# use: python -m benchmark run --profile {self.profile} --config {self.out / 'best.yaml'}\n")
            paths["best config"] = self.out / "best.yaml"
            atomic_write_text(header + yaml.safe_dump(cfg, sort_keys=True), paths["best config"])
        atomic_write_json(info, self.out / "study.json")
        figs = self.write_figures()
        if figs:
            paths["figures"] = self.out / "figures"
        return paths

    def trials_frame(self):
        import pandas as pd  # local: start-up time

        rows = []
        for t in self.study.get_trials(deepcopy=False):
            row = {"number": t.number, "state": t.state.name, "value": t.value,
                   "method": t.user_attrs.get("method", ""),
                   "epochs_reported": len(t.intermediate_values),
                   "retry_of": t.system_attrs.get("failed_trial"),
                   "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
                   if t.datetime_complete and t.datetime_start else None,
                   "note": t.user_attrs.get(ERROR_ATTR) or t.user_attrs.get(SKIPPED_ATTR) or ""}
            row.update({f"param_{k}": v for k, v in t.params.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def write_figures(self) -> list[Path]:
        """Optimisation history, importances, parallel coordinates, slices, intermediate values.

        Figures that need more finished trials than the study has are skipped with a note.
        """
        import matplotlib  # local: optional figures and start-up time

        matplotlib.use("Agg")
        logging.getLogger("matplotlib").setLevel(logging.WARNING)
        import matplotlib.pyplot as plt
        import optuna
        from optuna.trial import TrialState
        from optuna.visualization import matplotlib as ovm

        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        plots = {
            "optimization_history": (ovm.plot_optimization_history, 1),
            "intermediate_values": (ovm.plot_intermediate_values, 1),
            "slice": (ovm.plot_slice, 1),
            "parallel_coordinate": (ovm.plot_parallel_coordinate, 2),
            "param_importances": (ovm.plot_param_importances, 2),
        }
        folder = self.out / "figures"
        written = []
        for name, (fn, need) in plots.items():
            if len(complete) < need:
                log.info("figure %s skipped: needs %d complete trials, the study has %d", name, need, len(complete))
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ax = fn(self.study)
                fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
                fig.set_size_inches(max(8, fig.get_size_inches()[0]), max(5, fig.get_size_inches()[1]))
                path = folder / f"{name}.png"
                folder.mkdir(parents=True, exist_ok=True)
                atomic_write(path, lambda tmp, fig=fig: fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight"))
                plt.close(fig)
                written.append(path)
            except (ValueError, RuntimeError, ZeroDivisionError, optuna.exceptions.OptunaError) as exc:
                log.info("figure %s skipped: %s", name, exc)
                plt.close("all")
        return written

    def summary_text(self) -> str:
        best = self.best_trial()
        counts = ", ".join(f"{v} {k.lower()}" for k, v in sorted(self.counts().items())) or "no trials"
        if best is None:
            return f"study '{self.study_name}': {counts}; no complete trial yet"
        return (f"study '{self.study_name}': {counts}\nbest trial {best.number}: validation {self.objective} "
                f"macro AUROC {best.value:.4f}\n  {best.user_attrs.get('method')}"
                + (f"  {best.user_attrs['run_settings']}" if best.user_attrs.get("run_settings") else ""))


def _markdown(df) -> str:
    """A Markdown table without the optional ``tabulate`` dependency."""
    if df.empty:
        return "(no trials)\n"

    def fmt(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"
