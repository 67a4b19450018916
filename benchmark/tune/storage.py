"""Optuna storage of a study: a journal file (no server; several processes or machines sharing
the folder work on one study) or any RDB URL, both with worker heartbeats, so that a trial whose
worker died is marked FAIL and retried with the same parameters
(``RetryHeartbeatStaleTrialCallback``). Optuna's journal storage has no heartbeat of its own:
:func:`_heartbeat_journal_class` adds one. Optuna is an optional dependency of ``tune`` only, so
it is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path

from benchmark.errors import UserError

HEARTBEAT_KEY = "ecgbench:heartbeat"


def _heartbeat_journal_class():
    """JournalStorage + optuna's heartbeat interface (the journal storage has none in optuna 5).

    The heartbeat is a trial system attribute holding the worker's wall-clock time; a RUNNING
    trial whose last heartbeat (or start, before the first beat) is older than ``grace_period``
    is stale. Optuna's own machinery (``HeartbeatThread``, ``fail_stale_trials`` at every trial
    start, the stale-trial callback) then works unchanged. Clocks of machines that share one
    journal file must agree to within a fraction of the grace period.
    """
    import optuna  # local: optional dependency (see the module docstring)
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        def __init__(self, backend, *, heartbeat_interval: int, grace_period: int, stale_trial_callback=None):
            super().__init__(backend)
            self._hb_interval = int(heartbeat_interval)
            self._hb_grace = int(grace_period)
            self._hb_callback = stale_trial_callback

        def record_heartbeat(self, trial_id: int) -> None:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self.set_trial_system_attr(trial_id, HEARTBEAT_KEY, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now = time.time()
            stale = []
            for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                last = t.system_attrs.get(HEARTBEAT_KEY)
                if last is None:
                    last = t.datetime_start.timestamp() if t.datetime_start else now
                if now - float(last) > self._hb_grace:
                    stale.append(t._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int | None:
            return self._hb_interval

        def get_heartbeat_stale_trial_callback(self):
            return self._hb_callback

    return HeartbeatJournalStorage


def is_journal(storage: str) -> bool:
    return "://" not in storage


def make_storage(storage: str, *, heartbeat: int = 60, grace: int | None = None, max_retry: int = 3):
    """An Optuna storage with heartbeats and retry of dead workers' trials.

    ``storage``: a journal file path, or an RDB URL (``sqlite:///``, ``postgresql://``, ``mysql://``).
    """
    import optuna  # local: optional dependency (see the module docstring)
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    if heartbeat < 1:
        raise UserError(f"--heartbeat must be >= 1 second, got {heartbeat}")
    grace = int(grace if grace is not None else 3 * heartbeat)
    if grace <= heartbeat:
        raise UserError(f"--grace ({grace} s) must be longer than --heartbeat ({heartbeat} s)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        if is_journal(storage):
            from optuna.storages.journal import JournalFileBackend

            path = Path(storage.removeprefix("journal:")).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            return _heartbeat_journal_class()(
                JournalFileBackend(str(path)), heartbeat_interval=heartbeat, grace_period=grace,
                stale_trial_callback=retry,
            )
        if storage.startswith("sqlite:///"):
            Path(storage.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            return optuna.storages.RDBStorage(
                storage, heartbeat_interval=heartbeat, grace_period=grace,
                heartbeat_stale_trial_callback=retry,
                engine_kwargs={"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None,
            )
        except ImportError as exc:
            raise UserError(f"storage '{storage}' needs a database driver: {exc}") from exc
        except Exception as exc:  # sqlalchemy errors: bad URL, server down, no permission
            raise UserError(f"cannot open Optuna storage '{storage}': {str(exc).splitlines()[0]}") from exc
