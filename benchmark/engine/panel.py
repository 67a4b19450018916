"""The report's ECG panel: a few PTB-XL test ECGs with their reports and zero-shot scores, saved
once per results folder (``<out>/examples/ecg_panel.npz``, also after a resumed run)."""

from __future__ import annotations

import io

import numpy as np

from benchmark.io import atomic_write_bytes
from benchmark.protocols.zero_shot import ZeroShot, class_prompts_for

DATASET, TASK = "ptbxl", "superdiagnostic"


def ensure_panel(runner) -> None:
    """Save the panel with the run's first text-tower variant, when the run has zero-shot jobs
    and ``panel_examples`` > 0 (nothing when it exists)."""
    cfg = runner.cfg
    path = runner.out / "examples" / "ecg_panel.npz"
    if path.exists() or int(cfg["panel_examples"]) <= 0 or ZeroShot.name not in cfg["protocols"]:
        return
    for spec in runner.specs:
        if getattr(runner.prototype(spec), "has_text_tower", False):
            model, _ = runner.pretrained(spec, int(cfg["seeds"][0]))
            save_panel(model, spec, runner.dataset(DATASET), TASK, k=int(cfg["panel_examples"]),
                       template_set=cfg["prompt_templates"], path=path)
            return


def save_panel(model, spec: str, data, task: str, *, k: int, template_set: str, path) -> None:
    """``k`` test ECGs (one per class first, in class order, so the panel is not k normal ECGs)
    with their report and zero-shot scores, for the report's panel figure."""
    if k <= 0 or path.exists():
        return
    y, valid = data.labels(task)
    test = data.split_indices("test")
    test = test[valid[test]]
    picks: list[int] = []
    for j in range(y.shape[1]):
        hit = [i for i in test if y[i, j] > 0 and i not in picks]
        if hit and len(picks) < k:
            picks.append(int(hit[0]))
    picks += [int(i) for i in test if i not in picks][: k - len(picks)]
    test = np.asarray(picks, dtype=np.int64)
    prompts = class_prompts_for(data, task, template_set)
    scores = np.asarray(model.zero_shot_scores(data, test, prompts), dtype=np.float32)
    sig = np.zeros((len(test), 12, data.n_samples), dtype=np.float32)
    sig[:, data.lead_idx] = data.raw(test)
    buf = io.BytesIO()
    np.savez_compressed(
        buf, signals=sig, fs=data.fs, reports=np.asarray(data.texts("en"))[test].astype(str),
        ids=data.meta["id"].to_numpy()[test].astype(str), classes=np.asarray(list(prompts)),
        scores=scores, labels=y[test], method=np.asarray(spec),
    )
    atomic_write_bytes(buf.getvalue(), path)
