"""Few-label protocol: a fraction of the PTB-XL training labels, drawn anew for every seed.

(a) linear probe: logistic regression on frozen embeddings; the L2 strength is chosen on the
    validation split (macro AUROC); one-vs-rest for multi-label tasks.
(b) fine-tune: the encoder plus a linear head trained end to end on the labelled subset, with
    early stopping on the validation loss.
The test split is read once, after every choice has been made.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from benchmark.data.base import ECGSet
from benchmark.errors import UserError, unknown_name
from benchmark.paths import stable_hash
from benchmark.protocols import heads
from benchmark.protocols.base import Job, Pretraining, Protocol, drop_unsupported, register_protocol
from benchmark.protocols.common import (Evaluation, capped_indices, fit_logreg, score_rows, task_indices,
                                        validation_indices)
from benchmark.stats.metrics import macro_auroc

MODES = ("linear-probe", "fine-tune", *heads.KINDS)


def draw_subset(y: np.ndarray, train_idx: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Seeded labelled subset of ``train_idx`` of size ceil(fraction * n).

    Stratified so that every class with a positive in the training split keeps at least one
    positive (where the size allows): one positive per class is drawn first (rarest class
    first), then the rest uniformly. ``fraction == 1`` returns every training example.
    """
    train_idx = np.asarray(train_idx)
    if fraction >= 1.0:
        return np.sort(train_idx)
    rng = np.random.default_rng([seed, int(round(fraction * 1e6))])
    n_target = max(1, math.ceil(fraction * len(train_idx)))
    yt = y[train_idx] > 0
    chosen: list[int] = []
    taken = np.zeros(len(train_idx), dtype=bool)
    for c in np.argsort(yt.sum(axis=0), kind="stable"):
        if yt[:, c].sum() == 0 or yt[taken, c].any():
            continue
        pos = np.flatnonzero(yt[:, c] & ~taken)
        pick = int(rng.choice(pos))
        taken[pick] = True
        chosen.append(pick)
    rest = rng.permutation(np.flatnonzero(~taken))
    need = max(0, n_target - len(chosen))
    chosen.extend(rest[:need].tolist())
    return np.sort(train_idx[np.asarray(chosen, dtype=np.int64)])


def linear_probe(
    z_train: np.ndarray,
    y_train: np.ndarray,
    z_val: np.ndarray,
    y_val: np.ndarray,
    *,
    multilabel: bool,
    Cs=(0.01, 0.1, 1.0),
    max_iter: int = 1000,
    seed: int = 0,
):
    """Fit logistic regressions for each C on train, pick C by validation macro AUROC.

    Returns ``(predict, info)``: ``predict(z) -> scores [n, C]`` with the chosen model, and the
    chosen C with every candidate's validation AUROC. Classes without a positive (or without a
    negative) in the training subset get a constant score (their AUROC is then 0.5).
    """
    from sklearn.linear_model import LogisticRegression  # local: start-up time (scikit-learn takes seconds)
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(z_train)
    xt, xv = scaler.transform(z_train), scaler.transform(z_val)
    n_cls = y_train.shape[1]

    def fit(C):
        models = []
        if multilabel:
            for c in range(n_cls):
                yc = y_train[:, c]
                if yc.min() == yc.max():
                    models.append(float(yc[0]))
                    continue
                m = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
                models.append(m.fit(xt, yc))
        else:
            models.append(fit_logreg(xt, y_train.argmax(axis=1), C, n_cls, seed=seed, max_iter=max_iter))
        return models

    def predict_with(models, x):
        out = np.zeros((len(x), n_cls), dtype=np.float64)
        if multilabel:
            for c, m in enumerate(models):
                out[:, c] = m if isinstance(m, float) else m.predict_proba(x)[:, 1]
        else:
            out[:] = models[0](x)
        return out

    from threadpoolctl import threadpool_limits  # local: comes with scikit-learn (start-up time)

    best, best_auc, tried = None, -np.inf, {}
    # One BLAS thread: each L-BFGS iteration multiplies an [n, D] matrix (D <= 512), too small to
    # gain from threads, and threaded OpenBLAS next to torch's spinning OpenMP threads on a busy
    # CPU ran 23x slower (1.07 s vs 0.046 s for one 3000 x 256 fit; docs/performance.md).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")  # convergence warnings on tiny subsets
        for C in Cs:
            models = fit(C)
            auc = macro_auroc(y_val, predict_with(models, xv)) if len(y_val) else float("nan")
            tried[float(C)] = auc
            if best is None or (np.isfinite(auc) and auc > best_auc):
                best, best_auc, best_C = models, auc, float(C)

    def predict(z):
        return predict_with(best, scaler.transform(z)).astype(np.float32)

    return predict, {"C": best_C, "val_auroc_by_C": tried}


def run_linear_probe(
    embed,
    data: ECGSet,
    task: str,
    train_idx: np.ndarray,
    *,
    Cs,
    max_iter: int,
    n_boot: int,
    seed: int,
    max_eval: int = 0,
) -> Evaluation:
    """``embed(data, idx) -> [n, D]`` comes from a (frozen) pretrained method."""
    spec = data.task(task)
    y, _ = data.labels(task)
    val_idx, w_val = capped_indices(data, task, "val", max_eval, seed=12345)
    test_idx, w_test = capped_indices(data, task, "test", max_eval, seed=12345)
    with data.forbid("test"):
        z_train, z_val = embed(data, train_idx), embed(data, val_idx)
        predict, info = linear_probe(
            z_train, y[train_idx], z_val, y[val_idx], multilabel=spec.multilabel, Cs=Cs, max_iter=max_iter, seed=seed
        )
        s_val = predict(z_val)
    s_test = predict(embed(data, test_idx))
    ev = score_rows(data, task, val_idx, s_val, test_idx, s_test, n_boot=n_boot, seed=seed,
                    w_val=w_val, w_test=w_test)
    ev.info.update(info)
    ev.info["n_train"] = int(len(train_idx))
    return ev


def run_fine_tune(
    method,
    data: ECGSet,
    task: str,
    train_idx: np.ndarray,
    *,
    cfg: dict,
    seed: int,
    progress: bool = True,
    checkpoint_dir=None,
    max_eval: int = 0,
    max_val: int | None = None,
    offsets: np.ndarray | None = None,
    **head,
) -> Evaluation:
    """A copy of the method's encoder plus a linear head (``Method.fine_tune``; ``head``: its
    ``readout`` and ``extra`` features), trained end to end
    on ``train_idx`` with the protocol's epochs/lr/batch size; early stopping on the validation
    loss (best state kept). Test scores are computed once at the end. ``max_eval`` caps the
    validation and test examples (:func:`capped_indices`), ``max_val`` the validation examples alone."""
    spec = data.task(task)
    y, _ = data.labels(task)
    val_idx, w_val = capped_indices(data, task, "val", max_eval if max_val is None else max_val, seed=12345)
    test_idx, w_test = capped_indices(data, task, "test", max_eval, seed=12345)
    with data.forbid("test"):
        clf = method.fine_tune(
            data, train_idx, val_idx, y, multilabel=spec.multilabel, checkpoint_dir=checkpoint_dir,
            progress=progress, epochs=int(cfg["finetune_epochs"]), batch_size=int(cfg["finetune_batch_size"]),
            lr=float(cfg["finetune_lr"]), weight_decay=1e-4, seed=seed,
            early_stopping_patience=int(cfg["finetune_patience"]), **head,
        )
        s_val = clf.predict(data, val_idx, device=method.device)
    s_test = clf.predict(data, test_idx, device=method.device)
    ev = score_rows(data, task, val_idx, s_val, test_idx, s_test, n_boot=int(cfg["n_boot"]), seed=seed,
                    w_val=w_val, w_test=w_test, offsets=offsets)
    losses = [h["val_loss"] for h in clf.history if h.get("val_loss") is not None]
    ev.info.update({"n_train": int(len(train_idx)), "epochs_run": len(clf.history),
                    "best_val_loss": min(losses) if losses else None})
    ev.history = [dict(h) for h in clf.history]
    return ev


def run_predict(model, data: ECGSet, task: str, *, n_boot: int, seed: int) -> Evaluation:
    """Score a model that already has a head for ``task`` (the supervised baseline trained on the
    labelled subset): thresholds from its validation predictions, test predicted once."""
    val_idx = task_indices(data, task, "val")
    test_idx = task_indices(data, task, "test")
    with data.forbid("test"):
        s_val = np.asarray(model.predict(data, val_idx), dtype=np.float32)
    s_test = np.asarray(model.predict(data, test_idx), dtype=np.float32)
    return score_rows(data, task, val_idx, s_val, test_idx, s_test, n_boot=n_boot, seed=seed)


def subset_for(data: ECGSet, job: Job) -> np.ndarray:
    """The labelled training subset of a few-label job (seeded by the job's seed)."""
    y, valid = data.labels(job.task)
    tr = data.split_indices("train")
    return draw_subset(y, tr[valid[tr]], job.label_fraction, job.seed)


@register_protocol
class FewLabel(Protocol):
    """Few-label on PTB-XL: linear probe and fine-tune at each label fraction.

    A label-based method (``uses_labels``: supervised) is pretrained on the job's labelled subset
    itself; its linear-probe row probes that encoder, its fine-tune row is its own head's
    predictions. Other methods share their one pretraining and fine-tune a copy of the encoder."""

    name = "few-label"
    description = "linear probe and fine-tune on 1/10/100 % of the PTB-XL training labels"
    order = 20
    report_order = 20
    objectives = ("linear-probe",)

    def validate(self, cfg):
        for f in cfg["label_fractions"]:
            if not (0 < float(f) <= 1):
                raise UserError(f"label fraction {f} must be in (0, 1]")
        for m in cfg["few_label_modes"]:
            if m not in MODES:
                raise unknown_name("few-label mode", m, list(MODES))

    def jobs(self, spec, seed, traits, ctx):
        cfg = ctx.cfg
        only = cfg["finetune_tasks"]  # fine-tune only on these tasks (empty: all)
        jobs = [Job(spec, seed, self.name, mode, "ptbxl", task, float(frac))
                for task in cfg["few_label_tasks"] for frac in cfg["label_fractions"] for mode in cfg["few_label_modes"]
                if not (mode == "fine-tune" and only and task not in only)]
        return drop_unsupported(self.name, jobs)  # a method that cannot embed PTB-XL plans none

    def pretraining(self, job, traits, ctx):
        if not traits.uses_labels:
            return Pretraining(job.method, job.seed)
        subset = subset_for(ctx.dataset(job.dataset), job)
        return Pretraining(job.method, job.seed, job.task, tuple(int(i) for i in subset))

    def stage(self, job):
        return "finetune" if job.mode == "fine-tune" else "evaluate"

    def run(self, job, ctx):
        cfg, data, model = ctx.cfg, ctx.data, ctx.model
        subset = subset_for(data, job)
        if job.mode == "linear-probe":
            ev = run_linear_probe(ctx.embed, data, job.task, subset, Cs=cfg["probe_C"], max_iter=cfg["probe_max_iter"],
                                  n_boot=cfg["n_boot"], seed=job.seed)
        elif job.mode in heads.KINDS:
            ev = heads.run_head_probe(job.mode, ctx.embed, data, job.task, subset, cfg=cfg, seed=job.seed)
        elif getattr(model, "uses_labels", False):
            ev = run_predict(model, data, job.task, n_boot=cfg["n_boot"], seed=job.seed)
        else:
            ev = run_fine_tune(model, data, job.task, subset, cfg=cfg, seed=job.seed, progress=ctx.progress)
        ev.info["subset_hash"] = stable_hash(subset.tolist())
        ev.info["subset_size"] = int(len(subset))
        return ev

    def validation_score(self, objective, method, data, task, *, template_set="all", probe_Cs=(0.01, 0.1, 1.0),
                         probe_max_iter=1000, seed=0):
        """The best validation macro AUROC over the probe's C values, a linear probe fit on the
        whole labelled training split (``tune --objective linear-probe``)."""
        if objective not in self.objectives:
            return super().validation_score(objective, method, data, task)
        y, _ = data.labels(task)
        val_idx = validation_indices(data, task)
        with data.forbid("test"):
            train_idx = task_indices(data, task, "train")
            z_train = method.encode_ecg(data, train_idx)
            z_val = method.encode_ecg(data, val_idx)
            _, info = linear_probe(z_train, y[train_idx], z_val, y[val_idx], multilabel=data.task(task).multilabel,
                                   Cs=probe_Cs, max_iter=probe_max_iter, seed=seed)
            vals = [v for v in info["val_auroc_by_C"].values() if np.isfinite(v)]
            if not vals:
                raise UserError("linear probe gave no finite validation AUROC")
            return float(max(vals))
