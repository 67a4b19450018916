"""The objective of a ``tune`` study: the validation macro AUROC of a pretrained variant, scored
by the protocol that owns the objective (zero-shot: ``benchmark.protocols.zero_shot``; linear
probe: ``benchmark.protocols.few_label``) -- the same prompts, probe and splits as ``run``, on
the training and validation splits only. ``Runner.validation_score`` is the same with a run's
settings; this function takes them as arguments (tests and the reproducibility check)."""

from __future__ import annotations

from benchmark.protocols import objectives, protocol_for_objective


def validation_score(
    method,
    data,
    *,
    objective: str,
    task: str,
    template_set: str = "all",
    probe_Cs=(0.01, 0.1, 1.0),
    probe_max_iter: int = 1000,
    seed: int = 0,
) -> float:
    """The tuning objective: validation macro AUROC. Reads the train and val splits only."""
    return protocol_for_objective(objective).validation_score(
        objective, method, data, task, template_set=template_set, probe_Cs=probe_Cs,
        probe_max_iter=probe_max_iter, seed=seed,
    )


__all__ = ["validation_score", "objectives"]
