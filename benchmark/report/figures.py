"""Publication figures from result tables (never from a model).

One style for every figure: small serif-free fonts sized for a two-column paper, thin axes, and
every method drawn with its own colour *and* marker, line style and bar hatch, so figures stay
readable when printed in greyscale. A method keeps the same look in every figure
(:class:`MethodStyles`). Each figure is written as PNG (200 dpi) and PDF, atomically.

All functions take the summary frames built by :mod:`benchmark.report.tables` and return the
written paths; they use the headless Agg backend and never import torch. (This module imports
matplotlib, so :mod:`benchmark.report.build` imports it only when it draws.)
"""

from __future__ import annotations

import logging
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: reports are made on servers and in CI
logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting chatter at INFO
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmark.io import atomic_write  # noqa: E402
from benchmark.report.order import DATASET_LABEL  # noqa: E402

# Okabe-Ito colour-blind-safe palette, ordered so neighbours differ in lightness too.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
# Dotted lines are reserved for references (zero-shot level, chance), so no method gets ':'.
LINESTYLES = ["-", "--", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (8, 2, 2, 2)), (0, (2, 1)), (0, (10, 3))]
HATCHES = ["", "///", "...", "xxx", "\\\\\\", "ooo", "---", "+++"]

STYLE = {
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "hatch.linewidth": 0.5,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.5,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "pdf.fonttype": 42,  # embed TrueType: editable text in the PDF, accepted by journals
    "ps.fonttype": 42,
}

MODE_LABEL = {"zero-shot": "zero-shot", "linear-probe": "linear probe", "fine-tune": "fine-tune"}


@contextmanager
def publication_style():
    with plt.rc_context(STYLE):
        yield


class MethodStyles:
    """Stable method -> (colour, marker, line style, hatch) assignment for all figures."""

    def __init__(self, methods: Sequence[str]):
        self.methods = list(dict.fromkeys(methods))

    def _i(self, method: str) -> int:
        if method not in self.methods:
            self.methods.append(method)
        return self.methods.index(method)

    def color(self, m: str) -> str:
        return PALETTE[self._i(m) % len(PALETTE)]

    def marker(self, m: str) -> str:
        return MARKERS[self._i(m) % len(MARKERS)]

    def linestyle(self, m: str):
        return LINESTYLES[self._i(m) % len(LINESTYLES)]

    def hatch(self, m: str) -> str:
        return HATCHES[self._i(m) % len(HATCHES)]

    def line_kw(self, m: str) -> dict:
        return {"color": self.color(m), "marker": self.marker(m), "linestyle": self.linestyle(m)}

    def bar_kw(self, m: str) -> dict:
        return {"facecolor": self.color(m), "hatch": self.hatch(m), "edgecolor": "black", "linewidth": 0.5}


def save_figure(fig, base: Path) -> list[Path]:
    """Write ``base.png`` and ``base.pdf`` atomically; close the figure."""
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    out = []
    try:
        # no creation date in the PDF: the same results make byte-identical figures (no git churn)
        for ext, kw in (("png", {"dpi": 200}), ("pdf", {"metadata": {"CreationDate": None}})):
            path = base.with_suffix(f".{ext}")
            atomic_write(path, lambda tmp, ext=ext, kw=kw: fig.savefig(tmp, format=ext, **kw))
            out.append(path)
    finally:
        plt.close(fig)
    return out


def _pct(f: float) -> str:
    return f"{100 * f:g} %"


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


# --------------------------------------------------------------------------------------------
# label efficiency
# --------------------------------------------------------------------------------------------
def label_efficiency(summary: pd.DataFrame, zero_shot: pd.DataFrame, styles: MethodStyles,
                     base: Path, *, task: str, dataset: str = "ptbxl") -> list[Path]:
    """Macro AUROC vs label fraction (log axis), one panel per few-label mode; a line per method
    with its mean-CI band; zero-shot macro AUROC of text-tower methods as horizontal lines."""
    modes = [m for m in ("linear-probe", "fine-tune") if m in set(summary["mode"])]
    modes += sorted(set(summary["mode"]) - set(modes))
    with publication_style():
        fig, axes = plt.subplots(1, len(modes), figsize=(3.3 * len(modes), 2.6), squeeze=False, sharey=True)
        handles: dict[str, object] = {}
        for ax, mode in zip(axes[0], modes):
            sub = summary[summary["mode"] == mode]
            for method, g in sub.groupby("method", sort=False):
                g = g.sort_values("label_fraction")
                x = g["label_fraction"].to_numpy()
                (h,) = ax.plot(x, g["mean"], label=method, **styles.line_kw(method))
                handles.setdefault(method, h)
                if g["ci_low"].notna().any():
                    ax.fill_between(x, g["ci_low"], g["ci_high"], color=styles.color(method), alpha=0.13, lw=0)
            for method, g in zero_shot.groupby("method", sort=False):
                y0 = float(g["mean"].iloc[0])
                h = ax.axhline(y0, color=styles.color(method), linestyle=(0, (1, 1.5)), linewidth=1.0)
                ax.annotate(f"{method} zero-shot", (1.0, y0), xycoords=("axes fraction", "data"),
                            xytext=(-2, 2), textcoords="offset points", ha="right", va="bottom", fontsize=6.5,
                            color=styles.color(method))
                handles.setdefault(f"{method} (zero-shot)", h)
            ax.set_xscale("log")
            fr = sorted(set(summary["label_fraction"].dropna()))
            ax.set_xticks(fr)
            ax.set_xticklabels([_pct(f) for f in fr])
            ax.minorticks_off()
            ax.set_xlabel("labelled fraction of the training split")
            ax.set_title(f"{MODE_LABEL.get(mode, mode)}")
            ax.grid(True, axis="y")
        axes[0][0].set_ylabel("macro AUROC")
        fig.suptitle(f"Label efficiency, {DATASET_LABEL.get(dataset, dataset)} {task}", fontsize=9, y=1.02)
        fig.legend(list(handles.values()), list(handles), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(4, len(handles)))
        return save_figure(fig, base)


# --------------------------------------------------------------------------------------------
# bars: zero-shot per class, ablations
# --------------------------------------------------------------------------------------------
def grouped_bars(table: pd.DataFrame, styles: MethodStyles, base: Path, *, groups: list[str],
                 title: str, ylabel: str = "AUROC", chance: float | None = 0.5,
                 group_labels: list[str] | None = None) -> list[Path]:
    """Bars of ``mean`` for each (group, method) with CI whiskers; ``table`` has columns
    group, method, mean, ci_low, ci_high. Missing/absent cells leave a gap marked 'n/a'."""
    methods = [m for m in styles.methods if m in set(table["method"])]
    width = 0.8 / max(1, len(methods))
    with publication_style():
        fig_w = min(13.0, max(3.3, 0.22 * len(groups) * len(methods) + 1.2))
        fig, ax = plt.subplots(figsize=(fig_w, 2.6))
        x = np.arange(len(groups))
        for j, method in enumerate(methods):
            g = table[table["method"] == method].set_index("group").reindex(groups)
            pos = x - 0.4 + width * (j + 0.5)
            vals = g["mean"].to_numpy(dtype=float)
            lo = np.nan_to_num(vals - g["ci_low"].to_numpy(dtype=float), nan=0.0)
            hi = np.nan_to_num(g["ci_high"].to_numpy(dtype=float) - vals, nan=0.0)
            base_y = 0.0
            ax.bar(pos, np.nan_to_num(vals, nan=0.0), width, label=method, bottom=base_y,
                   yerr=np.vstack([lo, hi]), error_kw={"elinewidth": 0.6, "capsize": 1.5, "ecolor": "black"},
                   **styles.bar_kw(method))
            for p, v in zip(pos, vals):
                if np.isnan(v):
                    ax.text(p, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=5.5)
        if chance is not None:
            ax.axhline(chance, color="black", linestyle=":", linewidth=0.8)
            ax.text(len(groups) - 0.45, chance, "chance", va="center", ha="left", fontsize=6)
        ax.set_xticks(x)
        labels = group_labels or groups
        rot = 45 if max(len(str(s)) for s in labels) * len(labels) > 60 else 0
        ax.set_xticklabels(labels, rotation=rot, ha="right" if rot else "center")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, axis="y")
        ax.set_xlim(-0.5, len(groups) - 0.5)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1)
        return save_figure(fig, base)


# --------------------------------------------------------------------------------------------
# confusion matrices
# --------------------------------------------------------------------------------------------
def confusion_grid(conf: pd.DataFrame, base: Path, *, title: str) -> list[Path]:
    """One confusion matrix per (method, mode): counts summed over seeds, shaded by the row
    (true-class) fraction in greys, every cell annotated with count and row percentage."""
    panels = list(conf.groupby(["method", "mode"], sort=False))
    rows, cols = _grid(len(panels), 3)
    with publication_style():
        fig, axes = plt.subplots(rows, cols, figsize=(2.5 * cols, 2.4 * rows), squeeze=False)
        for ax in axes.ravel()[len(panels):]:
            ax.axis("off")
        for ax, ((method, mode), g) in zip(axes.ravel(), panels):
            pair = g["class"].str.split("|", n=1, expand=True)
            g = g.assign(true=pair[0], pred=pair[1])
            classes = list(dict.fromkeys(g["true"]))
            m = g.pivot_table(index="true", columns="pred", values="value", aggfunc="sum").reindex(
                index=classes, columns=classes).fillna(0).to_numpy()
            frac = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
            ax.imshow(frac, cmap="Greys", vmin=0, vmax=1)
            for i in range(len(classes)):
                for j in range(len(classes)):
                    ax.text(j, i, f"{int(m[i, j])}\n{100 * frac[i, j]:.0f}%", ha="center", va="center",
                            fontsize=6, color="white" if frac[i, j] > 0.55 else "black")
            ax.set_xticks(range(len(classes)))
            ax.set_yticks(range(len(classes)))
            ax.set_xticklabels(classes)
            ax.set_yticklabels(classes)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            n_seeds = g["seed"].nunique()
            ax.set_title(f"{method}, {MODE_LABEL.get(mode, mode)}" + (f" ({n_seeds} seeds)" if n_seeds > 1 else ""))
            for s in ax.spines.values():
                s.set_visible(True)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        return save_figure(fig, base)


# --------------------------------------------------------------------------------------------
# pretraining loss curves
# --------------------------------------------------------------------------------------------
class Purposes(dict):
    """``pretrain_hash -> purpose``, plus ``owners``: ``pretrain_hash -> (method, seed)`` of the
    jobs that used it (so a pretraining whose history is missing can be named in the figure)."""

    def __init__(self, *args, owners: dict | None = None, **kw):
        super().__init__(*args, **kw)
        self.owners = dict(owners or {})


def pretrain_purposes(results_dirs: Sequence[Path]) -> Purposes:
    """``pretrain_hash -> what it was pretrained for`` (e.g. ``few-label 1 %``), read from the
    job records (``meta/*.json``) of result folders; a hash used by several jobs lists each
    protocol once. Histories written before a purpose was recorded get their label from here."""
    import json

    uses: dict[str, dict[str, set]] = {}
    owners: dict[str, tuple[str, str]] = {}
    for d in results_dirs:
        meta = Path(d) / "meta"
        for p in sorted(meta.glob("*.json")) if meta.is_dir() else []:
            try:
                rec = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            h, job = rec.get("pretrain_hash"), rec.get("job") or {}
            if not h or not job.get("protocol"):
                continue
            owners.setdefault(str(h), (str(job.get("method", "")), str(job.get("seed", ""))))
            fr = uses.setdefault(str(h), {}).setdefault(str(job["protocol"]), set())
            if job["protocol"] == "few-label" and job.get("label_fraction") is not None:
                fr.add(float(job["label_fraction"]))
    out = Purposes(owners=owners)
    for h, protos in uses.items():
        parts = []
        for proto, fracs in sorted(protos.items()):
            parts.append(proto + (" " + ", ".join(_pct(f) for f in sorted(fracs)) if fracs else ""))
        out[h] = "; ".join(parts)
    return out


def _pretraining_label(h: pd.DataFrame, key: str, purposes: dict[str, str]) -> str:
    """What one pretraining was for: the recorded purpose, else the job records' one, else its key."""
    for col in ("pretrained_for", "purpose"):
        if col in h.columns and h[col].notna().any():
            return str(h[col].dropna().iloc[0])
    return purposes.get(key) or f"pretraining {key[:6]}"


def loss_figure(history: pd.DataFrame, styles: MethodStyles, purposes: dict[str, str] | None = None):
    """The loss-curve figure (not saved): one panel per method (contrastive and supervised
    losses live on different scales), one training line (solid) and validation line (dashed)
    per *pretraining* -- a (method, seed) pretrained twice (for zero-shot and for few-label, or
    per label fraction) gets two lines, never one line that jumps back to epoch 0. The legend
    of each panel sits to its right, outside the data area."""
    owners = dict(getattr(purposes, "owners", {}) or {})
    purposes = dict(purposes or {})
    loss_col = "train_loss" if "train_loss" in history.columns else "loss"
    history = history.copy()
    for col in (loss_col, "val_loss", "epoch"):
        if col in history.columns:
            history[col] = pd.to_numeric(history[col], errors="coerce")  # None (no val split) -> NaN
    key_col = next((c for c in ("pretrain_hash", "key") if c in history.columns), None)
    if key_col is None:  # no key: a pretraining is a run of epochs; a restart at a lower epoch starts a new one
        history["_key"] = (history.groupby(["method", "seed"], sort=False)["epoch"]
                           .transform(lambda e: (e.diff() <= 0).cumsum()).astype(str))
        history["_key"] = history["method"].astype(str) + "/" + history["seed"].astype(str) + "/" + history["_key"]
        key_col = "_key"
    history[key_col] = history[key_col].astype(str)
    present = set(history["method"])
    methods = [m for m in styles.methods if m in present] + sorted(present - set(styles.methods))
    with publication_style():
        fig, axes = plt.subplots(len(methods), 1, figsize=(6.8, 1.9 * len(methods) + 0.3), squeeze=False)
        for ax, method in zip(axes[:, 0], methods):
            g = history[history["method"] == method]
            runs = []
            for key, h in g.groupby(key_col, sort=False):
                seed = h["seed"].iloc[0]
                runs.append((_pretraining_label(h, key, purposes), seed, key, h.sort_values("epoch")))
            runs.sort(key=lambda r: (str(r[0]), _seed_order(r[1]), r[2]))
            purposes_here = sorted({r[0] for r in runs})
            seeds_here = sorted({r[1] for r in runs}, key=_seed_order)
            for label, seed, key, h in runs:
                # colour tells the purposes apart; with one purpose in the panel it tells the seeds apart
                which = purposes_here.index(label) if len(purposes_here) > 1 else seeds_here.index(seed)
                color = PALETTE[which % len(PALETTE)]
                mk = MARKERS[seeds_here.index(seed) % len(MARKERS)]
                ax.plot(h["epoch"], h[loss_col], color=color, marker=mk, linestyle="-",
                        label=f"{label}, seed {seed}", gid=f"train:{key}")
                if "val_loss" in h.columns and h["val_loss"].notna().any():
                    ax.plot(h["epoch"], h["val_loss"], color=color, marker=mk, markerfacecolor="white",
                            linestyle="--", linewidth=0.9, label="_nolegend_", gid=f"val:{key}")
            # pretrainings the job records name but whose history is absent (a model loaded from
            # the cache by a run that did not keep loss curves): said, never silently dropped
            drawn = {r[2] for r in runs}
            absent = sorted((f"{purposes.get(h, h[:6])}, seed {sd}" for h, (m, sd) in owners.items()
                             if m == method and h not in drawn), key=str)
            if absent:
                ax.text(1.02, 0.0, "no loss history kept for:\n" + "\n".join(textwrap.shorten(a, 60) for a in absent),
                        transform=ax.transAxes, fontsize=5.5, va="bottom", ha="left", color="#a00000")
            ax.set_title(method, loc="left")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss")
            ax.grid(True, axis="y")
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6, borderaxespad=0.0,
                      title="pretrained for", title_fontsize=6, ncol=1 if len(runs) <= 9 else 2)
        fig.suptitle("Pretraining loss, one line per pretraining (solid: training, dashed: validation)", fontsize=9)
        fig.tight_layout()
    return fig


def _seed_order(seed):
    try:
        return (0, int(seed), "")
    except (TypeError, ValueError):
        return (1, 0, str(seed))


def loss_curves(history: pd.DataFrame, styles: MethodStyles, base: Path,
                purposes: dict[str, str] | None = None) -> list[Path]:
    """Write :func:`loss_figure` as ``base.png``/``base.pdf``; ``purposes`` maps a pretrain hash
    to what it pretrained for (:func:`pretrain_purposes`)."""
    with publication_style():
        return save_figure(loss_figure(history, styles, purposes), base)


# --------------------------------------------------------------------------------------------
# ECG panel
# --------------------------------------------------------------------------------------------
LAYOUT_12 = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]]
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def ecg_figure(panel: dict, *, top_k: int = 3):
    """The ECG-panel figure (not saved). A few test ECGs in the clinical 12-lead layout (3 x 4
    blocks of 2.5 s plus a lead-II rhythm strip), on one mV scale with a 0.2 s x 0.5 mV grid.
    The vertical room of each row comes from the data (its leads' lowest to highest sample),
    so no lead is clipped and rows never overlap; each lead's name sits in a label strip above
    its row's traces, so it never crosses a trace. Beside each ECG: its report, the zero-shot
    top classes and the true labels."""
    sig = np.asarray(panel["signals"], dtype=float)  # [k, 12, T] mV
    fs = float(np.asarray(panel["fs"]).item())
    k, _, t_len = sig.shape
    reports = [str(r) for r in panel.get("reports", [""] * k)]
    ids = [str(i) for i in panel.get("ids", [str(i) for i in range(k)])]
    classes = [str(c) for c in panel.get("classes", [])]
    scores = np.asarray(panel["scores"], dtype=float) if "scores" in panel else None
    labels = np.asarray(panel["labels"]) if "labels" in panel else None
    method = str(np.asarray(panel.get("method", "")).item()) if "method" in panel else ""
    dur = t_len / fs
    seg = dur / 4
    t = np.arange(t_len) / fs
    gap = 0.15  # mV between rows
    with publication_style():
        fig = plt.figure(figsize=(7.2, 2.6 * k))
        outer = fig.add_gridspec(k, 1, hspace=0.18)
        for e in range(k):
            inner = outer[e].subgridspec(1, 2, width_ratios=[3.0, 1.15], wspace=0.04)
            ax = fig.add_subplot(inner[0])
            txt = fig.add_subplot(inner[1])
            txt.axis("off")
            x = np.nan_to_num(sig[e], nan=0.0)
            # (row, [(lead, column start s, column end s)]): three rows of blocks, then the rhythm strip
            rows = [[(lead, c * seg, (c + 1) * seg) for c, lead in enumerate(leads)] for leads in LAYOUT_12]
            rows.append([("II", 0.0, dur)])
            spans = []
            for row in rows:
                pieces = []
                for lead, a, b in row:
                    i0, i1 = int(round(a * fs)), min(t_len, int(round(b * fs)))
                    pieces.append((lead, a, i0, i1, x[LEADS.index(lead), i0:i1]))
                lo = min([float(p[4].min()) for p in pieces if p[4].size] + [-0.25])
                hi = max([float(p[4].max()) for p in pieces if p[4].size] + [0.25])  # >= half a mV per row
                spans.append((pieces, lo, hi))
            # the label strip above each row is ~9 % of the axes height, whatever the amplitudes
            data_span = sum(hi - lo for _, lo, hi in spans) + gap * len(spans)
            label_room = 0.09 * data_span / (1 - 0.09 * len(spans))
            top = 0.0
            for r, (pieces, lo, hi) in enumerate(spans):
                label_y = top - label_room * 0.1  # label strip: [top - label_room, top]
                offset = top - label_room - hi  # the row's highest sample sits just under the strip
                for c, (lead, a, i0, i1, y) in enumerate(pieces):
                    ax.plot(t[i0:i1], y + offset, color="black", linewidth=0.5, gid=f"lead:{r}:{lead}")
                    ax.text(a + 0.05, label_y, lead, fontsize=6, va="top", ha="left", gid=f"label:{r}:{lead}")
                    if c:
                        ax.plot([a] * 2, [offset - 0.25, offset + 0.25], color="black", lw=0.6, gid="separator")
                top = offset + lo - gap
            bottom = top
            ax.set_xticks(np.arange(0, dur + 1e-9, 0.2), minor=False)
            ax.set_yticks(np.arange(np.floor(bottom * 2) / 2, 0.5, 0.5))
            ax.grid(True, which="major", color="#bbbbbb", linewidth=0.3)
            ax.tick_params(labelbottom=False, labelleft=False, length=0)
            ax.set_xlim(0, dur)
            ax.set_ylim(bottom, 0.0)
            for s in ax.spines.values():
                s.set_visible(False)
            ax.set_title(f"test ECG {ids[e]}   (grid 0.2 s x 0.5 mV)", loc="left")
            lines = ["Report:"] + textwrap.wrap(reports[e] or "(empty)", 30)[:8]
            if scores is not None and len(classes):
                order = np.argsort(-scores[e])[:top_k]
                lines += ["", f"Zero-shot top {len(order)}" + (f" ({method})" if method else "") + ":"]
                lines += [f"  {classes[j]}  {scores[e, j]:.3f}" for j in order]
            if labels is not None and len(classes):
                true = [classes[j] for j in np.flatnonzero(labels[e] > 0)]
                lines += ["", "True: " + (", ".join(true) or "(none)")]
            txt.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=6.5, family="monospace",
                     transform=txt.transAxes)
    return fig


def ecg_panel(panel: dict, base: Path, *, top_k: int = 3) -> list[Path]:
    """Write :func:`ecg_figure` as ``base.png``/``base.pdf``."""
    with publication_style():
        return save_figure(ecg_figure(panel, top_k=top_k), base)
