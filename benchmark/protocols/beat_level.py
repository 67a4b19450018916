"""Beat-level heads for beat-centred datasets (MIT-BIH): what the head reads, and choices made by
patient-wise cross-validation inside DS1.

The label of an MIT-BIH example is one beat; its input is a window centred on that beat that
holds about twelve beats. Pooling the whole window lets every neighbour vote (a normal beat next
to a PVC looks like a PVC), and the timing that tells a supraventricular beat apart is not in any
one window's shape. So the protocol, the same for every method, decides what the head sees:

* ``beat_window_s`` -- the encoder reads only this many seconds of the window, centred on the
  beat (0: the whole window). The PTB-XL-pretrained encoders take any length;
* ``beat_readout`` -- ``beat``: the mean of the encoder's feature positions centred within
  ``beat_span_s`` of the beat (the time-resolved API, ``Method.encode_ecg(at=, span=)``);
  ``pool``: the mean over all positions of the input the encoder reads (with ``beat_window_s``
  = 2, the pool of a short beat-centred window; with 0, the 10 s window's global pool, which is
  what every method was read by before);
* ``beat_norm`` -- ``none`` | ``record``: per-record normalisation of the encoder's features. With
  ``record`` each beat's readout has the mean readout of its record's beats *up to and including
  it* subtracted (all of the record's annotated beats in sample order, whatever subset is scored):
  the head sees how a beat differs from its patient's beats so far, not the patient. Unsupervised
  and causal, like the RR features' record averages. The hand-crafted de Chazal features
  (``beat_features`` methods) are read as published; the fine-tune reads the raw window (signal
  conditioning, ``mitbih_baseline`` / ``mitbih_scale``, acts on the data and so on every head);
* ``beat_rr`` -- the beat's RR-interval features (:func:`benchmark.data.beats.rr_features`:
  pre-RR, post-RR, their ratio, local and running record means, each also relative to the
  record's causal average) concatenated to the encoder's features before the head.

The probe (:func:`run_beat_probe`) is a logistic regression on standardised features with class
weights inversely proportional to the class counts (de Chazal's equal priors). Its
regularisation is chosen by ``beat_cv_folds``-fold cross-validation over DS1 *records* (train and
validation split together; a record never sits in two folds): every DS1 beat gets an out-of-fold
score and ``C`` maximises the out-of-fold macro AUROC; while the best ``C`` sits on the edge of the
values tried, up to ``beat_C_extend`` more (default 0) are tried beyond it, a decade at a time.
(On the ``shared`` grid 0.01/0.1/1 every learned method's optimum sat at 0.01; extending it raised
the out-of-fold macro AUROC, e.g. METS seed 0 0.761 -> 0.805 at C = 1e-4, but lowered the
out-of-fold macro F1 of the decisions, 0.434 -> 0.366, in each of the three jobs tried: the
AUROC-best C is too weak a model for the decision rule. DS2 F1 fell too, seen in the same runs.) The model is then refit on all of DS1 and
DS2 (the test split) is read once. A class with fewer than ``beat_min_class_beats`` DS1 beats
(AAMI Q: 8) is never predicted -- nothing inter-patient can be learnt from it, as the literature
that leaves Q out of training says. For the others the decision rule (``beat_rule``) is chosen on
DS1 alone: ``argmax`` of the class-weighted model (de Chazal's equal priors), ``offsets`` fitted
to the out-of-fold macro F1, or ``auto`` (the default), which keeps whichever a nested record-wise
estimate prefers -- each fold decided by offsets fitted on the other folds -- so offsets are used
only when they carry over to unseen patients. Then the S-vs-N stage (``beat_sn_stage``, default
``auto``): the beats the rule calls N or S are re-decided by a class-weighted logistic regression on
the ten RR features alone (:func:`fit_sn_stage`; de Chazal's S evidence is timing, while the
encoder's morphology is patient-specific), at a threshold fitted to the out-of-fold macro F1 of DS1
(every DS1 beat scored by a stage fitted on the other folds' records); ``auto`` keeps the stage only
where a nested record-wise estimate (each fold's threshold fitted on the other folds) beats the rule
alone. It was designed after the DS2 diagnosis in docs/protocols.md ("Where the S F1 goes"), and its
use is decided on DS1 per job. (History: offsets fitted over all five classes were
tried first and gave Q an offset of +5 to +12, costing the de Chazal features V F1 0.89 -> 0.68 on
DS2; that was seen on DS2, so excluding Q is not a blind choice. On the de Chazal features the
nested estimate keeps argmax: out-of-fold macro F1 0.366 vs 0.348.) The fine-tune
(:func:`run_beat_fine_tune`) uses the same class weights in its loss and the argmax rule (its
scores have no out-of-fold twin to fit offsets on). Zero-shot keeps the global embedding: a text
prompt has no RR feature.

The defaults (``pool`` over 2 s, RR on) were chosen on the DS1 cross-validation (out-of-fold macro
AUROC of the random-init encoder, resnet1d-10 width 32, ``shared`` settings): 10 s pool without RR
0.620, 2 s beat span 0.6 s + RR 0.617, 2 s pool + RR 0.709, 2 s beat span without RR 0.558; the
``mitbih-input`` ablation reports the same grid for every method, with DS2 beside it. There
(seeds 0-1, METS/SimCLR/random-init) ``beat_norm=record`` lost on DS1 in 6 of 6 method-seed pairs
and stays off; baseline-wander removal (``mitbih_baseline=median``) won on DS1 in 5 of 6 (mean
out-of-fold AUROC 0.729 vs 0.698) but is not yet the default: ``results/shared`` was made
without it (docs/protocols.md).
"""

from __future__ import annotations

import warnings

import numpy as np

from benchmark.data.beats import record_folds, rr_features
from benchmark.errors import UserError
from benchmark.protocols.common import Evaluation, capped_indices, fit_logreg, score_rows, task_indices
from benchmark.registry import DATASETS

READOUTS = ("pool", "beat")
NORMS = ("none", "record")
RULES = ("argmax", "offsets", "auto")
SN_STAGES = ("none", "rr", "auto")


def is_beat_level(data) -> bool:
    """Whether ``data`` is a beat-centred dataset (its class says ``beat_centred``; its rows carry
    the beat's ``record`` and ``sample``)."""
    try:
        cls = DATASETS.entry(data.name).factory
    except UserError:
        return False
    return bool(getattr(cls, "beat_centred", False)) and {"record", "sample"} <= set(data.meta.columns)


def validate(cfg: dict) -> None:
    if cfg["beat_readout"] not in READOUTS:
        from benchmark.errors import unknown_name

        raise unknown_name("beat_readout", str(cfg["beat_readout"]), READOUTS)
    if cfg["beat_norm"] not in NORMS:
        from benchmark.errors import unknown_name

        raise unknown_name("beat_norm", str(cfg["beat_norm"]), NORMS)
    if float(cfg["beat_window_s"]) < 0 or float(cfg["beat_span_s"]) < 0:
        raise UserError(f"beat_window_s ({cfg['beat_window_s']}) and beat_span_s ({cfg['beat_span_s']}) must be >= 0")
    if cfg["beat_rule"] not in RULES:
        from benchmark.errors import unknown_name

        raise unknown_name("beat_rule", str(cfg["beat_rule"]), RULES)
    if cfg["beat_sn_stage"] not in SN_STAGES:
        from benchmark.errors import unknown_name

        raise unknown_name("beat_sn_stage", str(cfg["beat_sn_stage"]), SN_STAGES)
    if int(cfg["beat_C_extend"]) < 0:
        raise UserError(f"beat_C_extend must be >= 0 (got {cfg['beat_C_extend']})")
    if int(cfg["beat_cv_folds"]) < 2:
        raise UserError(f"beat_cv_folds must be >= 2 (got {cfg['beat_cv_folds']}): choices need held-out records")


def readout(data, cfg: dict) -> dict:
    """The ``encode_ecg`` / ``ctx.embed`` keywords of the configured readout for windows of ``data``."""
    total = data.n_samples / float(data.fs)
    centre = total / 2
    w = float(cfg["beat_window_s"])
    kw: dict = {}
    if 0 < w < total:
        kw["window"] = (centre - w / 2, centre + w / 2)
    if cfg["beat_readout"] == "beat":
        kw.update(at=centre, span=float(cfg["beat_span_s"]))
    return kw


def beat_embed(embed, data, cfg: dict, method=None):
    """``f(data, idx) -> [n, F]``: the configured readout of ``embed`` (the memoised encoder
    features), with the RR features appended when ``beat_rr`` is on. A method whose features are
    already per beat (``beat_features = True``: the hand-crafted de Chazal features, RR included)
    is read as it is."""
    if getattr(method, "beat_features", False):
        return lambda d, idx: embed(d, idx)
    kw = readout(data, cfg)
    rr = rr_features(data.meta)[0] if cfg["beat_rr"] else None
    read = (lambda d, idx: embed(d, idx, **kw)) if cfg.get("beat_norm", "none") == "none" else \
        record_centred(lambda d, idx: embed(d, idx, **kw), data)

    def f(d, idx):
        z = read(d, idx)
        return np.hstack([z, rr[np.asarray(idx)]]) if rr is not None else z

    return f


def record_centred(read, data):
    """``f(d, idx)``: ``read(d, idx)`` minus, per row, the mean of ``read`` over its record's beats
    at or before it (``beat_norm=record``). Reads every beat of the records ``idx`` touches (the
    embedding is memoised, so each beat is still encoded once per readout)."""
    records = data.meta["record"].astype(str).to_numpy()
    samples = data.meta["sample"].to_numpy(np.int64)

    def f(d, idx):
        idx = np.asarray(idx, dtype=np.int64)
        out = None
        for rec in np.unique(records[idx]):
            rows = np.flatnonzero(records == rec)
            rows = rows[np.lexsort((rows, samples[rows]))]  # sample order (ties: row order)
            z = np.asarray(read(d, rows), dtype=np.float64)
            run = np.cumsum(z, axis=0) / np.arange(1, len(rows) + 1)[:, None]
            pos = np.full(len(records), -1, dtype=np.int64)
            pos[rows] = np.arange(len(rows))
            mine = records[idx] == rec
            if out is None:
                out = np.zeros((len(idx), z.shape[1]), dtype=np.float32)
            out[mine] = (z[pos[idx[mine]]] - run[pos[idx[mine]]]).astype(np.float32)
        return out if out is not None else np.asarray(read(d, idx), dtype=np.float32)

    return f


def describe(cfg: dict) -> dict:
    """The readout settings a result row's info records."""
    return {k: cfg[k] for k in ("beat_readout", "beat_window_s", "beat_span_s", "beat_rr", "beat_norm",
                                "beat_cv_folds", "beat_C_extend", "beat_min_class_beats", "beat_rule", "beat_sn_stage")}


def decision_rule(labels: np.ndarray, n_cls: int, min_beats: int) -> np.ndarray:
    """Offsets of the fixed rule: 0 (argmax) for classes with at least ``min_beats`` training beats,
    -inf (never predicted) for the others."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_cls)
    return np.where(counts >= int(min_beats), 0.0, -np.inf)


def fit_rule_offsets(y: np.ndarray, s: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Offsets maximising macro F1 over the classes the fixed rule keeps (``base`` finite); beats of
    the other classes (Q) are left out of the fit, and those classes stay never-predicted."""
    from benchmark.stats.metrics import choose_offsets

    keep = np.isfinite(base)
    rows = y[:, keep].any(axis=1)
    out = base.copy()
    out[keep] = choose_offsets(y[rows][:, keep], s[rows][:, keep])
    return out


def _kept_macro_f1(y: np.ndarray, pred: np.ndarray, keep: np.ndarray) -> float:
    """Macro F1 of predicted class indices over the kept classes that have beats."""
    truth = y.astype(bool)
    hit = np.zeros_like(truth)
    hit[np.arange(len(pred)), pred] = True
    tp, fp, fn = ((hit & truth).sum(axis=0), (hit & ~truth).sum(axis=0), (~hit & truth).sum(axis=0))
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    use = keep & truth.any(axis=0)
    return float(f1[use].mean())


def _pred_index(s: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    from benchmark.stats.metrics import predict_single_label

    return predict_single_label(s, offsets).argmax(axis=1)


def choose_rule(y: np.ndarray, oof: np.ndarray, fold_rows, base: np.ndarray, rule: str
                ) -> tuple[np.ndarray, dict, np.ndarray]:
    """The decision rule from the out-of-fold DS1 scores alone: ``(offsets, info, nested)``, where
    ``nested`` holds each DS1 beat's class under the chosen rule as unseen patients would get it.

    ``argmax`` keeps ``base`` (0, or -inf for a class too rare to learn); ``offsets`` fits offsets
    on all out-of-fold scores (:func:`fit_rule_offsets`); ``auto`` compares the two by a nested
    record-wise estimate -- for each fold, offsets fitted on the other folds' scores decide its
    beats -- and keeps whichever has the higher pooled macro F1 over the kept classes (ties: argmax)."""
    info: dict = {"rule": rule}
    argmax = _pred_index(oof, base)
    if rule == "argmax":
        return base, info, argmax
    nested = np.zeros(len(y), dtype=np.int64)
    for rows in fold_rows:
        held = np.zeros(len(y), dtype=bool)
        held[rows] = True
        nested[held] = _pred_index(oof[held], fit_rule_offsets(y[~held], oof[~held], base))
    fitted = fit_rule_offsets(y, oof, base)
    if rule == "offsets":
        return fitted, info, nested
    keep = np.isfinite(base)
    f1_arg = _kept_macro_f1(y, argmax, keep)
    f1_off = _kept_macro_f1(y, nested, keep)
    chosen = "offsets" if f1_off > f1_arg else "argmax"
    info.update({"cv_macro_f1_argmax": f1_arg, "cv_macro_f1_offsets": f1_off, "chosen": chosen})
    return (fitted, info, nested) if chosen == "offsets" else (base, info, argmax)


def fit_sn_stage(rr: np.ndarray, labels: np.ndarray, n_idx: int, s_idx: int, *, seed: int, max_iter: int):
    """``p(rr) -> P(S | N or S)``: a class-weighted (equal priors) logistic regression on the
    standardised RR features of the beats labelled N or S. Timing is what tells a supraventricular
    beat from a normal one across patients; the morphology the main probe also reads is patient-
    specific. Fitted on DS1 beats only."""
    from sklearn.preprocessing import StandardScaler

    from benchmark.protocols.common import fit_logreg

    rows = (labels == n_idx) | (labels == s_idx)
    two = np.where(labels[rows] == s_idx, 1, 0)
    scaler = StandardScaler().fit(rr[rows])
    predict = fit_logreg(scaler.transform(rr[rows]), two, 1.0, 2, seed=seed, max_iter=max_iter,
                         class_weight="balanced")
    return lambda z: predict(scaler.transform(z))[:, 1]


def apply_sn_stage(pred: np.ndarray, p_s: np.ndarray, n_idx: int, s_idx: int, threshold: float = 0.5) -> np.ndarray:
    """``pred`` (class indices) with each beat called N or S re-decided by the stage: S where
    ``P(S | N or S) > threshold``, else N. Other classes' calls are kept."""
    out = np.asarray(pred, dtype=np.int64).copy()
    ns = (out == n_idx) | (out == s_idx)
    out[ns] = np.where(p_s[ns] > threshold, s_idx, n_idx)
    return out


SN_THRESHOLDS = np.round(np.linspace(0.05, 0.95, 37), 3)


def fit_sn_threshold(y: np.ndarray, pred: np.ndarray, p_s: np.ndarray, keep: np.ndarray, n_idx: int, s_idx: int) -> float:
    """The stage threshold (of ``SN_THRESHOLDS``) that maximises the macro F1 over the kept classes
    of ``pred`` re-decided by ``p_s``; ties: the one nearest 0.5 (equal priors)."""
    f1 = [_kept_macro_f1(y, apply_sn_stage(pred, p_s, n_idx, s_idx, t), keep) for t in SN_THRESHOLDS]
    best = max(f1)
    return float(min((t for t, f in zip(SN_THRESHOLDS, f1) if f == best), key=lambda t: abs(t - 0.5)))


def sn_stage(cfg: dict) -> str:
    """The S-vs-N stage setting a probe job runs with: ``beat_sn_stage``, or ``none`` while
    ``beat_rr`` is off (the stage reads the RR features; a head without them has no timing at all,
    so the RR ablation arm switches both off)."""
    return str(cfg["beat_sn_stage"]) if cfg["beat_rr"] else "none"


def choose_sn_stage(y: np.ndarray, nested: np.ndarray, rr: np.ndarray, fold_rows, base: np.ndarray,
                    classes, stage: str, *, seed: int, max_iter: int) -> tuple[float | None, dict]:
    """The S-vs-N stage (:func:`fit_sn_stage`) from DS1 alone: ``(threshold, info)``, threshold
    ``None`` for no stage. Every DS1 beat gets an out-of-fold stage score (a stage fitted on the
    other folds' records), which re-decides its call under the rule (``nested``,
    :func:`choose_rule`); the threshold maximises the pooled macro F1 over the kept classes. ``rr``
    always uses the stage, ``none`` never, ``auto`` when a nested estimate prefers it -- each fold
    decided with a threshold fitted on the other folds -- to the rule's calls alone (ties: without).
    A task without an N and an S class that the rule can predict has no stage."""
    names = [str(c) for c in classes]
    info: dict = {"stage": stage}
    if stage == "none" or not {"N", "S"} <= set(names):
        return None, info
    n_idx, s_idx = names.index("N"), names.index("S")
    if not (np.isfinite(base[n_idx]) and np.isfinite(base[s_idx])):
        info["skipped"] = "N or S is never predicted"
        return None, info
    labels = y.argmax(axis=1)
    keep = np.isfinite(base)
    p_s = np.zeros(len(y))
    for rows in fold_rows:
        held = np.zeros(len(y), dtype=bool)
        held[rows] = True
        p_s[held] = fit_sn_stage(rr[~held], labels[~held], n_idx, s_idx, seed=seed, max_iter=max_iter)(rr[held])
    threshold = fit_sn_threshold(y, nested, p_s, keep, n_idx, s_idx)
    info["threshold"] = threshold
    if stage == "rr":
        return threshold, info
    staged = nested.copy()
    for rows in fold_rows:
        held = np.zeros(len(y), dtype=bool)
        held[rows] = True
        t = fit_sn_threshold(y[~held], nested[~held], p_s[~held], keep, n_idx, s_idx)
        staged[held] = apply_sn_stage(nested[held], p_s[held], n_idx, s_idx, t)
    f1_without, f1_with = _kept_macro_f1(y, nested, keep), _kept_macro_f1(y, staged, keep)
    use = f1_with > f1_without
    info.update({"cv_macro_f1_without": f1_without, "cv_macro_f1_with": f1_with, "chosen": bool(use)})
    return (threshold if use else None), info


def balanced_weights(labels: np.ndarray, n_cls: int) -> np.ndarray:
    """n / (k * n_c) for the k classes present (scikit-learn's 'balanced'), 0 for absent ones."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_cls).astype(np.float64)
    k = max(1, int((counts > 0).sum()))
    return np.where(counts > 0, counts.sum() / (k * np.maximum(counts, 1)), 0.0)


def _threads() -> int:
    """The CPU threads this process may use: torch's setting (the engine gives each worker its
    share), else the cores it is allowed on."""
    import os
    import sys

    if "torch" in sys.modules:
        return max(1, int(sys.modules["torch"].get_num_threads()))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _best_C(by_c: dict, task: str) -> float:
    finite = {C: v for C, v in by_c.items() if np.isfinite(v)}
    if not finite:
        raise UserError(f"beat-level probe on '{task}': no finite out-of-fold AUROC (too few DS1 records?)")
    return max(finite, key=finite.get)


def run_beat_probe(feats, data, task: str, *, Cs, folds: int, max_iter: int, n_boot: int, seed: int,
                   max_eval: int = 0, min_beats: int = 50, rule: str = "auto", extend: int = 0,
                   sn_stage: str = "none") -> Evaluation:
    """Class-weighted logistic regression on ``feats(data, idx)``; ``C`` and the decision rule
    chosen by record-wise cross-validation over DS1 (module docstring); DS2 scored once. While the
    best ``C`` sits on the edge of the grid tried so far, up to ``extend`` more values are tried
    beyond it, a decade at a time (still on the out-of-fold DS1 scores)."""
    from joblib import Parallel, delayed
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from benchmark.stats.metrics import macro_auroc

    spec = data.task(task)
    if spec.multilabel:
        raise UserError(f"the beat-level probe takes single-label tasks; '{task}' is multi-label")
    y, _ = data.labels(task)
    test_idx, w_test = capped_indices(data, task, "test", max_eval, seed=12345)
    with data.forbid("test"):
        ds1 = np.sort(np.concatenate([task_indices(data, task, "train"), task_indices(data, task, "val")]))
        records = data.meta["record"].astype(str).to_numpy()[ds1]
        fold_rows = record_folds(records, int(folds))  # records dealt round-robin: the same folds for every method
        x = feats(data, ds1).astype(np.float64)
        labels = y[ds1].argmax(axis=1)
        n_cls = y.shape[1]
        oof: dict[float, np.ndarray] = {}
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            warnings.simplefilter("ignore")  # convergence warnings
            def fold_scores(rows, C):
                held = np.zeros(len(ds1), dtype=bool)
                held[rows] = True
                scaler = StandardScaler().fit(x[~held])
                return held, fit_logreg(scaler.transform(x[~held]), labels[~held], float(C), n_cls, seed=seed,
                                        max_iter=max_iter, class_weight="balanced")(scaler.transform(x[held]))

            def score(new_Cs):
                # the fits are independent and scikit-learn's solver releases the GIL: one thread per
                # core this process may use (deterministic, whatever the order)
                pairs = [(rows, float(C)) for rows in fold_rows for C in new_Cs]
                fits = Parallel(n_jobs=_threads(), backend="threading")(delayed(fold_scores)(r, C) for r, C in pairs)
                for (held, s_held), (_, C) in zip(fits, pairs):
                    oof.setdefault(C, np.zeros((len(ds1), n_cls)))[held] = s_held

            score(Cs)
            by_c = {C: macro_auroc(y[ds1], s) for C, s in oof.items()}
            best_C = _best_C(by_c, task)
            for _ in range(int(extend)):  # the optimum on the grid's edge: the grid was too narrow
                lo, hi = min(by_c), max(by_c)
                step = lo / 10 if best_C == lo else hi * 10 if best_C == hi else None
                if step is None:
                    break
                score([step])
                by_c[step] = macro_auroc(y[ds1], oof[step])
                best_C = _best_C(by_c, task)
            scaler = StandardScaler().fit(x)
            predict = fit_logreg(scaler.transform(x), labels, best_C, n_cls, seed=seed, max_iter=max_iter,
                                 class_weight="balanced")
            base = decision_rule(labels, n_cls, min_beats)
            offsets, rule_info, nested = choose_rule(y[ds1], oof[best_C], fold_rows, base, rule)
            rr = rr_features(data.meta)[0].astype(np.float64)  # every beat's timing (no label read)
            threshold, stage_info = choose_sn_stage(y[ds1], nested, rr[ds1], fold_rows, base, spec.classes,
                                                    sn_stage, seed=seed, max_iter=max_iter)
            if threshold is not None:
                n_idx, s_idx = list(spec.classes).index("N"), list(spec.classes).index("S")
                stage = fit_sn_stage(rr[ds1], labels, n_idx, s_idx, seed=seed, max_iter=max_iter)
    s_test = predict(scaler.transform(feats(data, test_idx).astype(np.float64)))
    pred_test = None if threshold is None else \
        apply_sn_stage(_pred_index(s_test, offsets), stage(rr[test_idx]), n_idx, s_idx, threshold)
    ev = score_rows(data, task, ds1, oof[best_C].astype(np.float32), test_idx, s_test.astype(np.float32),
                    n_boot=n_boot, seed=seed, w_test=w_test, offsets=offsets, pred_test=pred_test)
    ev.info.update({"decision_rule": rule_info, "sn_stage": stage_info, "C": best_C, "cv_auroc_by_C": by_c, "n_train": int(len(ds1)), "cv_folds": len(fold_rows),
                    "cv_records": int(len(np.unique(records))), "features": int(x.shape[1])})
    return ev


def run_beat_head(kind: str, embed, data, task: str, *, cfg: dict, seed: int, method=None,
                  max_eval: int = 0) -> Evaluation:
    """A frozen MLP or attention head on the beat-level input, the same for every method: the MLP
    reads the configured readout plus the RR features (:func:`beat_embed`); the attention pool reads
    the feature map of the ``beat_window_s`` beat-centred input (the RR features have no time axis
    and are not given to it). Trained on DS1's training records with the class-weighted loss, stopped
    on DS1's validation records, decided by the fixed rule (argmax, a class with fewer than
    ``beat_min_class_beats`` DS1 beats never predicted): a head per record-wise fold would multiply
    its cost by ``beat_cv_folds``."""
    from benchmark.protocols.heads import run_head_probe
    from benchmark.protocols.common import task_indices

    y, _ = data.labels(task)
    train = task_indices(data, task, "train")
    labels = y[train].argmax(axis=1)
    n_cls = y.shape[1]
    if kind == "attention-probe":
        window = {k: v for k, v in readout(data, cfg).items() if k == "window"}

        def feats(d, idx):
            return embed(d, idx, pooled=False, **window)
    else:
        feats = beat_embed(embed, data, cfg, method)
    ev = run_head_probe(kind, feats, data, task, train, cfg=cfg, seed=seed, max_eval=max_eval, read={},
                        class_weight=balanced_weights(labels, n_cls),
                        offsets=decision_rule(labels, n_cls, int(cfg["beat_min_class_beats"])))
    ev.info["input"] = "feature map of the beat-centred window" if kind == "attention-probe" else "readout + RR"
    return ev


def run_beat_fine_tune(method, data, task: str, train_idx: np.ndarray, *, cfg: dict, seed: int,
                       progress: bool = True, max_eval: int = 0, max_val: int | None = None) -> Evaluation:
    """A copy of the encoder plus a head that reads the configured readout (and the standardised
    RR features), trained end to end on ``train_idx`` with class-weighted cross-entropy; early
    stopping on the validation records of DS1 (a fine-tune per fold would multiply its cost by
    ``beat_cv_folds``); the decision rule fixed as the probe's."""
    from benchmark.protocols.few_label import run_fine_tune

    extra = None
    if cfg["beat_rr"]:
        rr = rr_features(data.meta)[0].astype(np.float64)
        mu, sd = rr[train_idx].mean(axis=0), rr[train_idx].std(axis=0)
        extra = ((rr - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
    y, _ = data.labels(task)
    labels = y[train_idx].argmax(axis=1)
    return run_fine_tune(method, data, task, train_idx, cfg=cfg, seed=seed, progress=progress, max_eval=max_eval,
                         max_val=max_val, readout=readout(data, cfg), extra=extra,
                         class_weight=balanced_weights(labels, y.shape[1]),
                         offsets=decision_rule(labels, y.shape[1], int(cfg["beat_min_class_beats"])))
