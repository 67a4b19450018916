"""Text-only ceiling: classify the *reports* of the test split with the zero-shot class prompts.

Zero-shot scores an ECG by the cosine of its projected embedding with each class's prompt
vector. Replacing the ECG by its own report answers "how well can the prompts read the text
side at all?", in two spaces (modes):

* ``text-tower``: report and prompts through the method's trained text tower (its LM -- the
  trained copy when ``lm_train`` is not frozen -- and its learned text projection): exactly the
  space zero-shot scores in. A perfectly aligned ECG embedding would land on its report's
  embedding, so this is the number zero-shot ECG scores are bounded by in practice.
* ``bare-lm``: report and prompts through the LM as it was before any ECG training (the frozen,
  cached LM; the fitted TF-IDF for ``lm=tfidf``), cosine of the raw embeddings: what the LM
  knows on its own. Not a bound: the projection is trained on the reports and can do better.

Same test split, same metrics (macro AUROC with bootstrap CIs, F1 at validation thresholds) as
zero-shot; rows whose report is empty are left out (counted in the job's info). Reports are
wrapped in the method's ``report_prompt`` exactly as in training.

Cross-dataset tasks have no reports. For those whose classes map onto PTB-XL statements
(MIT-BIH PVC: V = PTB-XL ``PVC``; CinC 2017 AF: AF = PTB-XL ``AFIB``) the *proxy* tasks
``mitbih-pvc`` and ``cinc2017-af`` score the PTB-XL test reports (and, mode ``ecg``, the PTB-XL
test ECGs; mode ``ecg-lead-II``/``ecg-lead-I``, the same ECGs with only the target data set's
single lead kept) with that data set's prompts: a diagnostic for a zero-shot result far below
chance (prompts the wrong way round? the text side? the single-lead layout?). The
``-no-negation`` variants drop every negated description ("no premature ventricular
contraction", "non-ventricular beat"), and on the target data set itself (dataset ``mitbih`` /
``cinc2017``, mode ``ecg``) re-score the real cross-dataset zero-shot with those prompts. Rows
of metric ``cosine`` (task ``<proxy>-negation-cosine``) give, per description of the negative
class, its cosine with the positive class's prompt vector in each text space.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from benchmark.data.base import ECGSet, lead_index
from benchmark.errors import UserError
from benchmark.protocols.base import Job, Protocol, register_protocol
from benchmark.protocols.common import Evaluation, capped_indices, score_rows, task_indices
from benchmark.protocols.zero_shot import calibrate, class_prompts_for

MODES = ("text-tower", "bare-lm")
PROXY_MODES = ("text-tower", "bare-lm", "ecg", "ecg-single-lead")
# proxy task -> (target dataset, target task, PTB-XL statement that marks the positive class,
#                PTB-XL task whose class list holds it, positive class of the target, its single lead)
PROXIES = {
    "mitbih-pvc": ("mitbih", "pvc", "PVC", "form", "V", "II"),
    "cinc2017-af": ("cinc2017", "af", "AFIB", "rhythm", "AF", "I"),
}
NO_NEGATION = "-no-negation"
_NEGATION = re.compile(r"(^|\b)(no|not|without|absent)\b|\bnon-", re.IGNORECASE)


def is_negated(description: str) -> bool:
    """'no premature ventricular contraction', 'non-ventricular beat', 'without p waves' -> True."""
    return bool(_NEGATION.search(description))


def _check(method) -> None:
    from benchmark.method import TextTower  # local: benchmark.method imports torch (config imports this module)

    if not isinstance(method, TextTower):
        raise UserError(f"method '{method.name}' has no text tower with reports: the text-ceiling protocol does not apply")


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _class_matrix(method, mode: str, prompts: dict[str, list[str]]) -> np.ndarray:
    if mode == "text-tower":
        return np.asarray(method.class_weights(prompts), dtype=np.float64)
    from methods.prompts import zero_shot_weights  # local: the methods package imports torch

    class _Bare:
        encode = staticmethod(method.bare_lm_embeddings)

    return zero_shot_weights(_Bare, prompts).astype(np.float64)


def _text_matrix(method, mode: str, texts: list[str]) -> np.ndarray:
    if mode == "text-tower":
        return np.asarray(method.encode_text(texts), dtype=np.float64)
    return _l2(method.bare_lm_embeddings(texts))


def text_scores(method, mode: str, texts: list[str], prompts: dict[str, list[str]], multilabel: bool) -> np.ndarray:
    """[n, C] scores of ``texts`` for the classes of ``prompts`` in text space ``mode`` (cosines;
    for single-label tasks the same softmax zero-shot applies)."""
    if mode not in MODES:
        raise UserError(f"text-ceiling mode must be one of {', '.join(MODES)}, got '{mode}'")
    if not texts:
        return np.zeros((0, len(prompts)), dtype=np.float32)
    return calibrate(_text_matrix(method, mode, texts) @ _class_matrix(method, mode, prompts).T, multilabel)


def _with_report(method, data: ECGSet, idx: np.ndarray) -> tuple[np.ndarray, list[str], int]:
    texts = method.report_texts(data, idx)
    keep = np.array([bool(t) for t in texts], dtype=bool)
    return idx[keep], [t for t, k in zip(texts, keep) if k], int((~keep).sum())


def run(method, data: ECGSet, task: str, *, mode: str, template_set: str = "all", n_boot: int = 1000,
        seed: int = 0) -> Evaluation:
    """The text-only ceiling of one PTB-XL zero-shot task (``mode``: text-tower | bare-lm), or of a
    proxy task (``mitbih-pvc``, ``cinc2017-af``, their ``-no-negation`` variants and
    ``*-negation-cosine``; see the module docstring). ``data`` is PTB-XL."""
    _check(method)
    base = task.removesuffix(NO_NEGATION).removesuffix("-negation-cosine")
    if base in PROXIES:
        return _proxy(method, data, task, mode=mode, template_set=template_set, n_boot=n_boot, seed=seed)
    if mode not in MODES:
        raise UserError(f"text-ceiling mode for task '{task}' must be one of {', '.join(MODES)}, got '{mode}'")
    prompts = class_prompts_for(data, task, template_set)
    multilabel = data.task(task).multilabel
    val_idx, val_texts, val_empty = _with_report(method, data, task_indices(data, task, "val"))
    with data.forbid("test"):
        s_val = text_scores(method, mode, val_texts, prompts, multilabel)
    test_idx, test_texts, test_empty = _with_report(method, data, task_indices(data, task, "test"))
    s_test = text_scores(method, mode, test_texts, prompts, multilabel)
    ev = score_rows(data, task, val_idx, s_val, test_idx, s_test, n_boot=n_boot, seed=seed)
    ev.info.update(empty_reports_excluded={"val": val_empty, "test": test_empty})
    return ev


# -- proxies: cross-dataset prompts against PTB-XL reports and ECGs ------------------------------
def proxy_prompts(target: str, target_task: str, classes: list[str], template_set: str,
                  no_negation: bool) -> dict[str, list[str]]:
    """The target data set's prompts (classes in ``classes`` order), negated descriptions dropped
    with ``no_negation`` (a class left without any description is an error)."""
    from methods.prompts import _read, prompt_templates  # local: the methods package imports torch

    table = _read(target, target_task)["classes"]
    templates = prompt_templates(target, target_task, template_set)
    out = {}
    for c in classes:
        desc = [d for d in table[c] if not (no_negation and is_negated(d))]
        if not desc:
            raise UserError(f"prompts of {target}/{target_task} class '{c}' are all negations")
        out[c] = [t.replace("{label}", d) for t in templates for d in desc]
    return out


class _SingleLead:
    """A view of an ECGSet whose batches keep only one lead (the others zero, as single-lead data sets
    fill the 12-lead layout)."""

    def __init__(self, data: ECGSet, lead: str):
        self._data, self._lead = data, lead_index(lead)

    def batch(self, idx, device=None, dtype=None):
        x = self._data.batch(idx, device, dtype) if dtype is not None else self._data.batch(idx, device)
        out = x.new_zeros(x.shape)
        out[:, self._lead] = x[:, self._lead]
        return out

    def __getattr__(self, name):
        return getattr(self._data, name)


def _binary_rows(y: np.ndarray, s: np.ndarray, classes: list[str], n_boot: int, seed: int) -> list[dict]:
    from benchmark.stats.metrics import evaluate

    return evaluate(y, s, classes, multilabel=False, thresholds=None, n_boot=n_boot, seed=seed)


def _proxy(method, data: ECGSet, task: str, *, mode: str, template_set: str, n_boot: int, seed: int) -> Evaluation:
    cosine = task.endswith("-negation-cosine")
    no_neg = task.endswith(NO_NEGATION)
    base = task.removesuffix(NO_NEGATION).removesuffix("-negation-cosine")
    target, target_task, statement, ptb_task, positive, lead = PROXIES[base]
    from methods.prompts import _read  # local: the methods package imports torch

    classes = list(_read(target, target_task)["classes"])
    if positive not in classes or len(classes) != 2:
        raise UserError(f"proxy '{base}' expects a binary prompt file with class '{positive}'")
    prompts = proxy_prompts(target, target_task, classes, template_set, no_neg)
    if cosine:
        return _negation_cosines(method, mode, target, target_task, classes, positive, template_set)
    spec = data.task(ptb_task)
    if statement not in spec.classes:
        raise UserError(f"PTB-XL task '{ptb_task}' has no statement '{statement}'")
    y_all, valid = data.labels(ptb_task)
    test_idx = data.split_indices("test")
    test_idx = test_idx[valid[test_idx]]
    info: dict = {"statement": statement, "ptbxl_task": ptb_task, "prompts": prompts}
    if mode in MODES:
        test_idx, texts, empty = _with_report(method, data, test_idx)
        info["empty_reports_excluded"] = empty
        s = text_scores(method, mode, texts, prompts, multilabel=False)
    elif mode in ("ecg", "ecg-single-lead"):
        view = data if mode == "ecg" else _SingleLead(data, lead)
        info["lead"] = "all" if mode == "ecg" else lead
        s = calibrate(np.asarray(method.zero_shot_scores(view, test_idx, prompts), dtype=np.float64), False)
    else:
        raise UserError(f"text-ceiling proxy mode must be one of {', '.join(PROXY_MODES)}, got '{mode}'")
    pos = y_all[test_idx, spec.classes.index(statement)] > 0
    y = np.zeros((len(test_idx), 2), dtype=np.int8)
    y[np.arange(len(test_idx)), np.where(pos, classes.index(positive), 1 - classes.index(positive))] = 1
    rows = _binary_rows(y, s, classes, n_boot, seed)
    info.update(n_test=int(len(test_idx)), n_positive=int(pos.sum()))
    scores = pd.DataFrame({
        "example": np.repeat(data.examples[test_idx].astype(str), 2),
        "class": np.tile(np.asarray(classes, dtype=object), len(test_idx)),
        "label": y.reshape(-1), "score": np.asarray(s, dtype=np.float64).reshape(-1),
    })
    return Evaluation(rows=rows, scores=scores, info=info)


def run_target(method, target_data: ECGSet, task: str, *, template_set: str = "all", n_boot: int = 1000,
               seed: int = 0, max_eval: int = 0, embed=None) -> Evaluation:
    """Zero-shot on the target data set itself (``mitbih``/``cinc2017``) with the ``-no-negation``
    prompts of ``task`` (e.g. ``pvc-no-negation``): does dropping negations fix the ranking?"""
    base = task.removesuffix(NO_NEGATION)
    spec = target_data.task(base)
    prompts = proxy_prompts(target_data.name, base, list(spec.classes), template_set, no_negation=True)
    # the same (capped, weighted) examples as the cross-dataset zero-shot job of the plain task
    val_idx, w_val = capped_indices(target_data, base, "val", max_eval, seed=12345)
    test_idx, w_test = capped_indices(target_data, base, "test", max_eval, seed=12345)

    def scores(idx):
        if len(idx) == 0:
            return np.zeros((0, len(prompts)), dtype=np.float32)
        kw = {"features": embed(target_data, idx)} if embed is not None else {}
        return calibrate(np.asarray(method.zero_shot_scores(target_data, idx, prompts, **kw), dtype=np.float64),
                         spec.multilabel)

    with target_data.forbid("test"):
        s_val = scores(val_idx)
    s_test = scores(test_idx)
    ev = score_rows(target_data, base, val_idx, s_val, test_idx, s_test, n_boot=n_boot, seed=seed,
                    w_val=w_val, w_test=w_test)
    for r in ev.rows:  # the rows carry the variant's name, not the plain task's
        r["note"] = "; ".join(x for x in (r.get("note", ""), "prompts without negations") if x)
    ev.info["prompts"] = prompts
    return ev


def _negation_cosines(method, mode: str, target: str, target_task: str, classes: list[str], positive: str,
                      template_set: str) -> Evaluation:
    """Per description of the negative class: cosine of its prompts' class vector with the positive
    class's vector, in text space ``mode`` (a negation that embeds next to what it negates shows
    as a cosine near the positive class's own descriptions)."""
    from methods.prompts import _read, prompt_templates  # local: the methods package imports torch

    if mode not in MODES:
        raise UserError(f"negation cosines need a text space ({', '.join(MODES)}), got '{mode}'")
    table = _read(target, target_task)["classes"]
    templates = prompt_templates(target, target_task, template_set)
    negative = next(c for c in classes if c != positive)
    pos_vec = _class_matrix(method, mode, {positive: [t.replace("{label}", d) for t in templates for d in table[positive]]})[0]
    rows = []
    for d in table[negative]:
        vec = _class_matrix(method, mode, {negative: [t.replace("{label}", d) for t in templates]})[0]
        rows.append({"metric": "cosine", "class": d, "value": float(vec @ pos_vec), "ci_low": np.nan,
                     "ci_high": np.nan, "n": 1, "n_pos": 0, "n_classes": 1,
                     "note": "negated" if is_negated(d) else ""})
    return Evaluation(rows=rows, scores=pd.DataFrame(columns=["example", "class", "label", "score"]),
                      info={"positive": positive, "negative": negative})


def planned(zero_shot_tasks, cross_tasks: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """(mode, dataset, task) of every text-ceiling evaluation of one text-tower method: both text
    spaces for each PTB-XL zero-shot task; for each proxy whose target task is evaluated
    cross-dataset, the proxy with and without negated prompts in every proxy mode, the negation
    cosines, and the target's own zero-shot with the negation-free prompts."""
    out = [(mode, "ptbxl", task) for task in zero_shot_tasks for mode in MODES]
    for proxy, (target, target_task, *_rest) in PROXIES.items():
        if target_task not in cross_tasks.get(target, []):
            continue
        for task in (proxy, proxy + NO_NEGATION):
            out += [(mode, "ptbxl", task) for mode in PROXY_MODES]
        out += [(mode, "ptbxl", proxy + "-negation-cosine") for mode in MODES]
        out.append(("ecg", target, target_task + NO_NEGATION))
    return out


def run_job(method, data: ECGSet, mode: str, task: str, *, template_set: str = "all", n_boot: int = 1000,
            seed: int = 0, max_eval: int = 0, embed=None) -> Evaluation:
    """One planned evaluation (the harness's single entry point): PTB-XL tasks and proxies through
    :func:`run`, a target data set's negation-free zero-shot through :func:`run_target`."""
    if data.name == "ptbxl":
        return run(method, data, task, mode=mode, template_set=template_set, n_boot=n_boot, seed=seed)
    return run_target(method, data, task, template_set=template_set, n_boot=n_boot, seed=seed,
                      max_eval=max_eval, embed=embed)


@register_protocol
class TextCeiling(Protocol):
    """The registered protocol: plans :func:`planned` for text-tower methods, runs :func:`run_job`."""

    name = "text-ceiling"
    description = ("the test reports classified with the class prompts (trained text tower / bare LM), beside "
                   "zero-shot; PVC/AF diagnostics for the cross-dataset prompts (text-tower methods only)")
    order = 25  # planned after few-label, before cross-dataset
    report_order = 40  # last in the default list and the report (its own section)

    def applies(self, job, data):
        return True  # its tasks are its own (proxies, -no-negation variants), not the dataset's

    def jobs(self, spec, seed, traits, ctx):
        if not traits.has_text_tower:
            return []
        cfg = ctx.cfg
        cross = {d: ctx.dataset_tasks(d) for d in cfg["cross_datasets"]}
        return [Job(spec, seed, self.name, mode, dataset, task)
                for mode, dataset, task in planned(cfg["zero_shot_tasks"], cross)]

    def run(self, job, ctx):
        cfg = ctx.cfg
        return run_job(ctx.model, ctx.data, job.mode, job.task, template_set=cfg["prompt_templates"],
                       n_boot=cfg["n_boot"], seed=job.seed, max_eval=cfg["cross_max_eval"], embed=ctx.embed)


__all__ = ["TextCeiling", "planned", "run_job", "MODES", "PROXIES", "PROXY_MODES", "is_negated", "proxy_prompts", "run", "run_target", "text_scores"]
