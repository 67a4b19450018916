"""Display order and labels of the report: which method, protocol, mode and dataset comes first,
and how a table column is named.

The protocol order is not a list kept here: it is the registered protocols' own
(``report_order``; see :mod:`benchmark.protocols.base`), so a new
protocol takes its place in every table by declaring it.
"""

from __future__ import annotations

import pandas as pd

from benchmark.protocols import protocols_in_report_order
from benchmark.protocols.cross_dataset import CrossDataset
from benchmark.protocols.few_label import FewLabel
from benchmark.protocols.text_ceiling import TextCeiling
from benchmark.protocols.zero_shot import ZeroShot

# protocol names the report's sections are about (taken from the protocol classes)
ZERO_SHOT = ZeroShot.name
FEW_LABEL = FewLabel.name
CROSS_DATASET = CrossDataset.name
TEXT_CEILING = TextCeiling.name

MODE_ORDER = ("zero-shot", "linear-probe", "mlp-probe", "attention-probe", "fine-tune", "text-tower", "bare-lm", "ecg", "ecg-single-lead")
DATASET_ORDER = ("ptbxl", "mitbih", "cinc2017")
METHOD_ORDER = ("mets", "supervised", "simclr", "clocs", "random-init")
MODE_ABBR = {"zero-shot": "ZS", "linear-probe": "LP", "fine-tune": "FT", "mlp-probe": "MLP", "attention-probe": "AP"}
DATASET_LABEL = {"ptbxl": "PTB-XL", "mitbih": "MIT-BIH", "cinc2017": "CinC 2017"}
UNLISTED = 9  # rank of a protocol, dataset or mode not in the order above


def protocol_order() -> tuple[str, ...]:
    """Names of the registered protocols in report order."""
    return tuple(p.name for p in protocols_in_report_order())


def method_sort_key(method: str) -> tuple:
    """Methods in :data:`METHOD_ORDER`, then the others by name; a variant right after its method."""
    base = method.split("[", 1)[0]
    rank = METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER)
    return (rank, base, method != base, method)


def col_sort_key(col: dict) -> tuple:
    """Order of table columns (settings): protocol, dataset, task, mode, label fraction, metric."""
    protocols = protocol_order()
    lf = col["label_fraction"]
    return (
        protocols.index(col["protocol"]) if col["protocol"] in protocols else UNLISTED,
        DATASET_ORDER.index(col["dataset"]) if col["dataset"] in DATASET_ORDER else UNLISTED,
        col["task"],
        MODE_ORDER.index(col["mode"]) if col["mode"] in MODE_ORDER else UNLISTED,
        -1.0 if pd.isna(lf) else float(lf),
        col["metric"],
    )


def column_label(col: dict, *, with_dataset: bool = True) -> str:
    """Short header: 'ZS PTB-XL superdiagnostic', 'LP 10 % PTB-XL superdiagnostic'."""
    parts = [MODE_ABBR.get(col["mode"], col["mode"])]
    lf = col["label_fraction"]
    if col["protocol"] == FEW_LABEL and not pd.isna(lf):
        parts.append(f"{100 * float(lf):g}%")
    if with_dataset:
        parts.append(DATASET_LABEL.get(col["dataset"], col["dataset"]))
    parts.append(col["task"])
    if col["metric"] != "auroc":
        parts.append(col["metric"].upper() if col["metric"] == "f1" else col["metric"])
    return " ".join(parts)
