"""Random-init baseline: the untrained ResNet1d (seeded), the floor every method must beat.

Its embeddings are the pooled features of a randomly initialised encoder (batch norm in eval
mode with its initial running statistics); the linear probe on them measures what the
architecture alone gives.
"""

from __future__ import annotations

from benchmark.method import Method, register_method_class


@register_method_class("random-init")
class RandomInit(Method):
    """Untrained ResNet1d encoder (no pretraining): the floor."""

    needs_pretraining = False
