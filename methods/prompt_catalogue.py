"""Knowledge-enhanced zero-shot prompts, generated reproducibly from the data sets' own catalogues.

MERL's test-time "clinical knowledge enhanced prompts" ask an LLM to describe each class from an
expert-verified knowledge base. Offline, the suite uses the expert-written catalogues that ship
with the data instead, with no model in the loop -- the same input always gives the same file:

* PTB-XL: ``scp_statements.csv``. A superdiagnostic class gets the descriptions of every SCP
  statement whose ``diagnostic_class`` is that class, a subdiagnostic class those whose
  ``diagnostic_subclass`` is it, a form/rhythm statement its own; each statement contributes its
  short ``description`` and its ``SCP-ECG Statement Description`` (unless that is only a
  qualifier such as "in inferior leads").
* MIT-BIH: the AAMI EC57 classes (``benchmark.data.mitbih.AAMI``: class -> beat symbols) with
  the WFDB standard description of each symbol (``wfdb``'s annotation label table);
  the PVC task's V is the PVC symbol, non-V every other AAMI beat type.
* CinC 2017: its classes map onto PTB-XL rhythm statements (N: SR; A: AFIB; O: every other
  rhythm statement); the noise class '~' has no catalogue entry and keeps its hand-written
  descriptions (marked in the file's ``sources``).

Descriptions are lower-cased and de-duplicated (first occurrence kept), in catalogue order;
negated phrasings never appear (catalogues describe what *is* there). The templates are those of
the hand-written file, so ``prompt_templates=catalogue`` differs from ``all`` only in the
descriptions. Files go to ``methods/prompts/catalogue/<dataset>_<task>.json``; regenerate with::

    python -m methods.prompt_catalogue --data-root ../shared/data

(``tests/test_prompt_catalogue.py`` checks that the committed files equal a fresh generation).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wfdb.io.annotation import ann_label_table

from benchmark.data.mitbih import AAMI
from benchmark.data.ptbxl import read_statements
from benchmark.errors import DataError, UserError
from benchmark.io import atomic_write_text
from benchmark.paths import resolve_data_root
from methods.prompts import _read, available_prompt_sets

CATALOGUE_DIR = Path(__file__).resolve().parent / "prompts" / "catalogue"
# CinC 2017 class -> PTB-XL rhythm statements ('*' = every rhythm statement not listed for another class)
CINC_TO_SCP = {"N": ("SR",), "A": ("AFIB",), "O": ("*",)}
CINC_AF = {"non-AF": ("SR", "*"), "AF": ("AFIB",)}


def _clean(text) -> str:
    return " ".join(str(text).strip().lower().split()) if isinstance(text, str) and text.strip() else ""


def _dedupe(items) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def _statement_descriptions(st, codes) -> list[str]:
    out = []
    for code in codes:
        row = st.loc[code]
        scp = _clean(row.get("SCP-ECG Statement Description"))
        # some SCP-ECG descriptions are only a qualifier of the statement ("in inferior leads"): skip them
        out += [_clean(row.get("description")), "" if scp.startswith("in ") else scp]
    return _dedupe(out)


def ptbxl_catalogue(statements, task: str, classes) -> dict[str, list[str]]:
    """{class: descriptions} of one PTB-XL task from ``scp_statements.csv`` (a DataFrame indexed by code)."""
    st = statements
    out = {}
    for c in classes:
        if task == "superdiagnostic":
            codes = list(st.index[st["diagnostic_class"] == c])
        elif task == "subdiagnostic":
            codes = list(st.index[st["diagnostic_subclass"] == c])
        else:
            codes = [c] if c in st.index else []
        desc = _statement_descriptions(st, codes)
        if not desc:
            raise DataError(f"scp_statements.csv has no statement for PTB-XL {task} class '{c}'")
        out[c] = desc
    return out


def mitbih_catalogue(task: str, classes) -> dict[str, list[str]]:
    label = dict(zip(ann_label_table["symbol"], ann_label_table["description"]))
    if task == "aami":
        groups = {c: AAMI[c] for c in classes}
    elif task == "pvc":
        beats = [s for syms in AAMI.values() for s in syms]
        groups = {"V": ("V",), "non-V": tuple(s for s in beats if s != "V")}
    else:
        raise UserError(f"no MIT-BIH catalogue for task '{task}'")
    return {c: _dedupe(_clean(label[s]) for s in groups[c]) for c in classes}


def cinc_catalogue(statements, task: str, classes, hand: dict[str, list[str]]) -> tuple[dict, dict]:
    st = statements
    rhythm = [c for c in st.index if st.loc[c].get("rhythm") == 1.0]
    table = CINC_TO_SCP if task == "rhythm" else CINC_AF
    named = {code for codes in table.values() for code in codes if code != "*"}
    out, sources = {}, {}
    for c in classes:
        if c not in table:
            out[c], sources[c] = list(hand[c]), "hand-written (no catalogue entry)"
            continue
        codes = [x for code in table[c] for x in ([y for y in rhythm if y not in named] if code == "*" else [code])]
        out[c] = _statement_descriptions(st, codes)
        sources[c] = "scp_statements.csv rhythm statements " + ", ".join(codes)
    return out, sources


def generate(data_root: str | Path, out_dir: str | Path = CATALOGUE_DIR) -> list[Path]:
    """Write one catalogue prompt file per hand-written prompt file; return the paths."""
    root = Path(data_root) / "ptb-xl"
    statements = read_statements(root)
    if "scp_code" in statements.columns:
        statements = statements.set_index("scp_code")
    out_dir = Path(out_dir)
    paths = []
    for dataset, task in available_prompt_sets():
        hand = _read(dataset, task)
        classes = list(hand["classes"])
        sources = {}
        if dataset == "ptbxl":
            cat = ptbxl_catalogue(statements, task, classes)
            sources = {c: "scp_statements.csv" for c in classes}
        elif dataset == "mitbih":
            cat = mitbih_catalogue(task, classes)
            sources = {c: "AAMI EC57 classes, WFDB beat descriptions" for c in classes}
        elif dataset == "cinc2017":
            cat, sources = cinc_catalogue(statements, task, classes, hand["classes"])
        else:
            continue
        body = {"templates": hand["templates"], "classes": cat, "sources": sources,
                "generated_by": "python -m methods.prompt_catalogue"}
        path = out_dir / f"{dataset}_{task}.json"
        atomic_write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", path)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m methods.prompt_catalogue", description=__doc__.split("\n")[0])
    p.add_argument("--data-root", default=None, help="folder holding ptb-xl/ (default $ECGBENCH_DATA_ROOT or ../shared/data)")
    p.add_argument("--out", default=str(CATALOGUE_DIR), help="output folder (default methods/prompts/catalogue)")
    args = p.parse_args(argv)
    for path in generate(resolve_data_root(args.data_root), args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
