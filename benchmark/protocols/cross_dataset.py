"""Cross-dataset: PTB-XL-pretrained encoders on other databases (MIT-BIH DS1 -> DS2, CinC 2017).

Per target dataset and task, for each of ``cross_modes``: a linear probe trained on the target's
training split (capped at ``cross_max_train`` examples, ``common.capped_indices``), a fine-tune of
the encoder plus a head on it (capped at ``cross_finetune_max_train``, its validation at
``cross_finetune_max_val``; only on ``cross_finetune_datasets`` when that is set), and, for
text-tower methods, zero-shot. Validation and test examples are capped by ``cross_max_eval``
(fixed seed, so every method sees the same; single-label caps keep every minority example and
weigh the rest). Single-label jobs record the class counts per split in their meta. Jobs a method
cannot run (its ``only_datasets`` / ``fine_tunable`` traits, ``base.unsupported``) are not planned;
their count is logged.
"""

from __future__ import annotations

from benchmark.data.datasets import cross_targets
from benchmark.errors import unknown_name
from benchmark.protocols import beat_level, few_label, heads, zero_shot
from benchmark.protocols.base import Job, Protocol, drop_unsupported, register_protocol
from benchmark.protocols.common import capped_indices


def class_counts(data, task: str) -> dict:
    """split -> class -> labelled examples (all of each split, before any cap)."""
    y, valid = data.labels(task)
    out = {}
    for split in ("train", "val", "test"):
        idx = data.split_indices(split)
        idx = idx[valid[idx]]
        out[split] = {c: int(y[idx, j].sum()) for j, c in enumerate(data.task(task).classes)}
    return out


CROSS_MODES = ("linear-probe", "fine-tune", *heads.KINDS)


@register_protocol
class CrossDataset(Protocol):
    name = "cross-dataset"
    description = "PTB-XL-pretrained encoders on MIT-BIH (DS1 -> DS2) and CinC 2017: probe and zero-shot"
    order = 30
    report_order = 30

    def validate(self, cfg):
        beat_level.validate(cfg)
        for m in cfg["cross_modes"]:
            if m not in CROSS_MODES:
                raise unknown_name("cross-dataset mode", m, list(CROSS_MODES))
        for d in cfg["cross_datasets"]:
            if d not in cross_targets():
                raise unknown_name("cross-dataset target", d, cross_targets())

    def jobs(self, spec, seed, traits, ctx):
        cfg, out = ctx.cfg, []
        only = cfg["cross_finetune_datasets"]
        for target in cfg["cross_datasets"]:
            for task in ctx.dataset_tasks(target):
                for mode in cfg["cross_modes"]:
                    if mode == "fine-tune" and only and target not in only:
                        continue
                    out.append(Job(spec, seed, self.name, mode, target, task, 1.0))
                if traits.has_text_tower:
                    out.append(Job(spec, seed, self.name, "zero-shot", target, task))
        return drop_unsupported(self.name, out)  # e.g. hand-crafted beat features: MIT-BIH probe only

    def stage(self, job):
        return "finetune" if job.mode == "fine-tune" else "evaluate"

    def run(self, job, ctx):
        cfg, data = ctx.cfg, ctx.data
        max_eval = cfg["cross_max_eval"]
        beat = job.mode != "zero-shot" and beat_level.is_beat_level(data)  # zero-shot: the global embedding
        if job.mode == "zero-shot":
            ev = zero_shot.run(ctx.model, data, job.task, template_set=cfg["prompt_templates"], n_boot=cfg["n_boot"],
                               seed=job.seed, max_eval=max_eval, embed=ctx.embed)
        elif job.mode == "fine-tune":  # PTB-XL-pretrained encoder + head trained on the target
            cap = int(cfg["cross_finetune_max_train"] or cfg["cross_max_train"])
            train, _ = capped_indices(data, job.task, "train", cap, seed=job.seed)
            run = beat_level.run_beat_fine_tune if beat else few_label.run_fine_tune
            ev = run(ctx.model, data, job.task, train, cfg=cfg, seed=job.seed, progress=ctx.progress,
                     max_eval=max_eval, max_val=int(cfg["cross_finetune_max_val"] or max_eval))
        elif job.mode in heads.KINDS and beat:
            ev = beat_level.run_beat_head(job.mode, ctx.embed, data, job.task, cfg=cfg, seed=job.seed,
                                          method=ctx.model, max_eval=max_eval)
        elif job.mode in heads.KINDS:
            train, _ = capped_indices(data, job.task, "train", cfg["cross_max_train"], seed=job.seed)
            ev = heads.run_head_probe(job.mode, ctx.embed, data, job.task, train, cfg=cfg, seed=job.seed,
                                      max_eval=max_eval)
        elif beat:  # the complete DS1, choices by record-wise cross-validation inside it
            feats = beat_level.beat_embed(ctx.embed, data, cfg, ctx.model)
            ev = beat_level.run_beat_probe(feats, data, job.task, Cs=cfg["probe_C"], folds=int(cfg["beat_cv_folds"]),
                                           max_iter=cfg["probe_max_iter"], n_boot=cfg["n_boot"], seed=job.seed,
                                           max_eval=max_eval, min_beats=int(cfg["beat_min_class_beats"]),
                                           rule=str(cfg["beat_rule"]), extend=int(cfg["beat_C_extend"]),
                                           sn_stage=beat_level.sn_stage(cfg))
        else:
            train, _ = capped_indices(data, job.task, "train", cfg["cross_max_train"], seed=job.seed)
            ev = few_label.run_linear_probe(ctx.embed, data, job.task, train, Cs=cfg["probe_C"],
                                            max_iter=cfg["probe_max_iter"], n_boot=cfg["n_boot"], seed=job.seed,
                                            max_eval=max_eval)
        if beat:
            ev.info["beat_level"] = beat_level.describe(cfg)
        if not data.task(job.task).multilabel:
            ev.info["class_counts"] = class_counts(data, job.task)
        return ev
