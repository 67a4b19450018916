"""MIT-BIH inter-patient check of the de Chazal baseline: train on DS1, test on DS2 once.

    ECGBENCH_DATA_ROOT=/work/shared/data python scripts/dechazal_check.py [--folds 11] [--json out.json]

Steps (the test records are read once, at the end):

1. Prepare the MIT-BIH store (complete database) and compute the ``dechazal`` beat features of
   every DS1 beat (``train`` + ``val`` splits: all 22 DS1 records) inside ``forbid("test")``.
2. Choose the classifier -- class-weighted LD at several shrinkages, with and without the
   morphology features, and class-balanced logistic regression at several C -- by record-wise
   cross-validation on DS1 (pooled macro F1 over N, S, V, F).
3. Fit the chosen classifier on all of DS1 and print per-class Se / +P / F1 on DS2 next to de
   Chazal et al. (2004)'s LD (their best configuration, two leads).

Classes: the classifier learns N, S, V and F. Q (unclassifiable beats: 8 in DS1, 15 in DS2 of the
complete database) is too rare for a class mean; Q beats of DS2 stay in the test set and count
against whichever class they are assigned to, as in de Chazal's table where Q Se is 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# de Chazal, O'Dwyer & Reilly (2004), Table VI, LD, DS2, their best feature configuration (%)
REFERENCE = {"N": (86.9, 99.2), "S": (75.9, 38.5), "V": (77.7, 81.9), "F": (89.4, 8.6)}
TRAIN_CLASSES = ("N", "S", "V", "F")


def candidates(n_rr: int, n_all: int):
    from baselines.dechazal import WeightedLD, balanced_logreg

    made = {f"ld[shrinkage={s:g}]": (lambda s=s: WeightedLD(s)) for s in (0.0, 0.01, 0.1, 0.3)}
    made["ld-rr-only[shrinkage=0]"] = lambda: WeightedLD(0.0)
    made.update({f"logreg-balanced[C={c:g}]": (lambda c=c: balanced_logreg(c)) for c in (0.01, 1.0)})
    columns = {"ld-rr-only[shrinkage=0]": np.arange(n_rr)}
    return made, columns


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default=None, help="data root (default: ECGBENCH_DATA_ROOT)")
    ap.add_argument("--cache-dir", default=None, help="prepared-store cache (default: ECGBENCH_CACHE_DIR)")
    ap.add_argument("--folds", type=int, default=11, help="record-wise CV folds inside DS1 (default 11: 2 records each)")
    ap.add_argument("--json", default=None, help="also write the table and the CV scores here")
    args = ap.parse_args(argv)

    from baselines.dechazal import DeChazal, class_table, record_cv
    from benchmark.data.beats import RR_NAMES
    from benchmark.data.store import prepare

    t0 = time.perf_counter()
    ds = prepare("mitbih", args.data_root, args.cache_dir, fs=100, progress=False)
    y_all, valid = ds.labels("aami")
    classes = np.asarray(ds.task("aami").classes)
    label = np.where(valid, classes[y_all.argmax(axis=1)], "")
    records = ds.meta["record"].astype(str).to_numpy()
    ds1 = np.concatenate([ds.split_indices("train"), ds.split_indices("val")])
    ds1 = np.sort(ds1[valid[ds1]])
    ds2 = ds.split_indices("test")
    ds2 = ds2[valid[ds2]]
    method = DeChazal(device="cpu")

    with ds.forbid("test"):
        X1 = method.encode_ecg(ds, ds1)
        t_feat = time.perf_counter() - t0
        fit_rows = np.flatnonzero(np.isin(label[ds1], TRAIN_CLASSES))
        made, columns = candidates(len(RR_NAMES), X1.shape[1])
        best, cv = record_cv(X1[fit_rows], label[ds1][fit_rows], records[ds1][fit_rows], made,
                             classes=TRAIN_CLASSES, n_folds=args.folds, columns=columns)
        cols = columns.get(best, slice(None))
        clf = made[best]().fit(X1[fit_rows][:, cols], label[ds1][fit_rows])
    t_cv = time.perf_counter() - t0 - t_feat
    X2 = method.encode_ecg(ds, ds2)  # DS2: read once, after every choice
    pred = clf.predict(X2[:, cols])
    table = class_table(label[ds2], pred, ("N", "S", "V", "F", "Q"))

    print(f"MIT-BIH inter-patient: DS1 {len(np.unique(records[ds1]))} records / {len(ds1)} beats -> "
          f"DS2 {len(np.unique(records[ds2]))} records / {len(ds2)} beats; {X1.shape[1]} features")
    print(f"record-wise {args.folds}-fold CV on DS1 (macro F1 over N, S, V, F, %):")
    for name, score in sorted(cv.items(), key=lambda kv: -kv[1]):
        print(f"  {name:28s} {score:5.1f}{'  <- chosen' if name == best else ''}")
    print(f"\nDS2 with {best}   (de Chazal 2004 LD in brackets)")
    print(f"{'class':5s} {'beats':>6s} {'Se':>6s} {'+P':>6s} {'F1':>6s}   {'Se ref':>6s} {'+P ref':>6s}")
    for c, v in table.items():
        ref = REFERENCE.get(c, (float("nan"), float("nan")))
        print(f"{c:5s} {v['n']:6d} {v['se']:6.1f} {v['ppv']:6.1f} {v['f1']:6.1f}   {ref[0]:6.1f} {ref[1]:6.1f}")
    total = time.perf_counter() - t0
    print(f"\nfeatures {t_feat:.1f} s (DS1), CV + fit {t_cv:.1f} s, total {total:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"chosen": best, "cv_macro_f1": cv, "ds2": table,
                                               "reference": REFERENCE, "seconds": round(total, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
