"""The bench's table: one row per measurement, printed, and written as ``bench.csv`` (the rows)
and ``bench.json`` (the raw seconds and settings), both atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.io import atomic_write_text

COLUMNS = ("figure", "measure", "value", "unit", "reference", "reference_value", "ratio", "target", "met", "note")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def format_table(rows: list[dict]) -> str:
    cols = ("figure", "measure", "value", "unit", "reference", "reference_value", "ratio", "target", "met")
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    width = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, width))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in width]), *(line(r) for r in cells)])


def write_outputs(rows: list[dict], raw: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "bench.csv"
    atomic_write_text(pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(index=False), csv_path)
    atomic_write_text(json.dumps(raw, indent=1, default=str), out / "bench.json")
    return csv_path


def row(figure, measure, value, unit, reference, reference_value, ratio, target, met, note="") -> dict:
    return dict(figure=figure, measure=measure, value=value, unit=unit, reference=reference,
                reference_value=reference_value, ratio=ratio, target=target, met=met, note=note)


def met_summary(rows: list[dict]) -> str:
    """'targets met: 7 of 9 (2 not counted: not native here)'."""
    counted = [r for r in rows if r.get("met") is not None]
    skipped = [r for r in rows if r.get("met") is None and str(r.get("target", "")).startswith("n/a")]
    why = sorted({str(r["target"])[5:] for r in skipped})
    return (f"targets met: {sum(bool(r['met']) for r in counted)} of {len(counted)}"
            + (f" ({len(skipped)} not counted: {', '.join(why)})" if skipped else ""))
