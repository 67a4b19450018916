"""Zero-shot: class prompts -> text embeddings -> cosine scores of test ECGs (no labels used,
except validation labels for the F1 thresholds)."""

from __future__ import annotations

import numpy as np

from benchmark.data.base import ECGSet
from benchmark.errors import UserError
from benchmark.protocols.base import Job, Protocol, register_protocol
from benchmark.protocols.common import (Evaluation, capped_indices, score_rows, scorable, task_indices,
                                        validation_indices)
from benchmark.stats.metrics import macro_auroc


def class_prompts_for(data: ECGSet, task: str, template_set: str = "all") -> dict[str, list[str]]:
    """The task's classes (in the dataset's order) -> prompt texts, from methods/prompts/*.json."""
    from methods.prompts import load_prompts  # local: the methods package imports torch

    prompts = load_prompts(data.name, task, template_set=template_set)
    classes = data.task(task).classes
    missing = [c for c in classes if c not in prompts]
    if missing:
        raise UserError(
            f"prompt file for {data.name}/{task} lacks classes {missing}: add them to methods/prompts/"
        )
    return {c: prompts[c] for c in classes}


def run(
    method,
    data: ECGSet,
    task: str,
    *,
    template_set: str = "all",
    n_boot: int = 1000,
    seed: int = 0,
    max_eval: int = 0,
    embed=None,
) -> Evaluation:
    """``embed(data, idx) -> [n, D]`` (optional): memoised encoder features, so the ECGs are not
    encoded again for every task (only methods whose ``zero_shot_scores`` take ``features``)."""
    if not getattr(method, "has_text_tower", False):
        raise UserError(f"method '{method.name}' has no text tower: zero-shot does not apply")
    prompts = class_prompts_for(data, task, template_set)
    val_idx, w_val = capped_indices(data, task, "val", max_eval, seed=12345)
    test_idx, w_test = capped_indices(data, task, "test", max_eval, seed=12345)
    multilabel = data.task(task).multilabel
    with data.forbid("test"):
        s_val = _scores(method, data, val_idx, prompts, multilabel, embed)
    s_test = _scores(method, data, test_idx, prompts, multilabel, embed)
    return score_rows(data, task, val_idx, s_val, test_idx, s_test, n_boot=n_boot, seed=seed,
                      w_val=w_val, w_test=w_test)


# CLIP's logit scale at the METS default temperature 0.07
SOFTMAX_SCALE = 1.0 / 0.07


def _scores(method, data, idx, prompts, multilabel: bool, embed=None) -> np.ndarray:
    """Cosine similarities; for single-label tasks a softmax over the classes (CLIP practice), so
    each class's score is relative to the other classes and per-class AUROCs agree (with two
    classes, AUROC(V) = 1 - AUROC(non-V) would fail on raw cosines)."""
    if len(idx) == 0:
        return np.zeros((0, len(prompts)), dtype=np.float32)
    if embed is not None:
        s = method.zero_shot_scores(data, idx, prompts, features=embed(data, idx))
    else:
        s = method.zero_shot_scores(data, idx, prompts)
    return calibrate(s, multilabel)


def calibrate(cosines, multilabel: bool) -> np.ndarray:
    """Cosines [N, C] -> scores: unchanged for multi-label tasks, a softmax at CLIP's scale for
    single-label ones (shared with the text-ceiling protocol)."""
    s = np.asarray(cosines, dtype=np.float64)
    if not multilabel and len(s):
        z = s * SOFTMAX_SCALE
        z -= z.max(axis=1, keepdims=True)
        s = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return s.astype(np.float32)


@register_protocol
class ZeroShot(Protocol):
    """Zero-shot on the PTB-XL test split, one job per task (text-tower methods only)."""

    name = "zero-shot"
    description = "class prompts -> cosine scores on the test split (text-tower methods only)"
    order = 10
    report_order = 10
    objectives = ("zero-shot",)

    def jobs(self, spec, seed, traits, ctx):
        if not traits.has_text_tower:
            return []
        return [Job(spec, seed, self.name, "zero-shot", "ptbxl", task) for task in ctx.cfg["zero_shot_tasks"]]

    def run(self, job, ctx):
        cfg = ctx.cfg
        return run(ctx.model, ctx.data, job.task, template_set=cfg["prompt_templates"], n_boot=cfg["n_boot"],
                   seed=job.seed, max_eval=0, embed=ctx.embed)

    def validation_score(self, objective, method, data, task, *, template_set="all", probe_Cs=(0.01, 0.1, 1.0),
                         probe_max_iter=1000, seed=0):
        """Validation macro AUROC of the raw zero-shot cosines (``tune --objective zero-shot``)."""
        if objective not in self.objectives:
            return super().validation_score(objective, method, data, task)
        y, _ = data.labels(task)
        val_idx = validation_indices(data, task)
        with data.forbid("test"):
            prompts = class_prompts_for(data, task, template_set)
            s = np.asarray(method.zero_shot_scores(data, val_idx, prompts), dtype=np.float64)
            return _validation_auroc(y[val_idx], s)


def _validation_auroc(y: np.ndarray, s: np.ndarray) -> float:
    if not scorable(y):
        raise UserError("no class has both positives and negatives on the validation split: cannot score")
    return macro_auroc(y, s)
