"""Evaluation protocols. Each knows nothing about which method it runs: it only uses the
``benchmark.method.Method`` interface (``encode_ecg``, ``zero_shot_scores``, ``ecg_backbone``).

Every module of this package that defines a protocol registers it in the common registry
(``benchmark.registry.PROTOCOLS``, through ``register_protocol`` in ``benchmark.protocols.base``);
they are all imported here, so a new protocol is one new file.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from benchmark.protocols.base import (  # noqa: F401
    Job, JobContext, MethodTraits, Pretraining, Protocol, descriptions, get_protocol, objectives,
    protocol_for_objective, protocols_in_order, protocols_in_report_order, register_protocol,
)

for _m in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    if _m not in ("base", "common"):
        _importlib.import_module(f"{__name__}.{_m}")
