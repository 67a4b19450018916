"""De Chazal baseline: hand-crafted beat features and a class-weighted linear discriminant.

De Chazal, O'Dwyer & Reilly (2004, IEEE TBME 51(7)) classified MIT-BIH beats into the AAMI
classes from RR intervals and sampled QRS/T morphology with a linear discriminant (LD), trained
on DS1 and tested on DS2 -- the inter-patient protocol the suite's MIT-BIH split follows. This
module gives the literature's reference point on that split.

The method (``dechazal``)
-------------------------
``encode_ecg`` returns the beat features of ``benchmark.data.beats`` (10 RR-interval features,
causal per-record normalisation, and 22 morphology values of the baseline-free MLII lead read at
360 Hz from the MIT-BIH folder the prepared store was built from). Nothing is trained
(``needs_pretraining=False``), so the suite's cross-dataset linear probe (a logistic regression
whose C is chosen on the validation records) is the classifier there. The features exist only for
beat-annotated MIT-BIH rows: the class traits ``only_datasets`` and ``fine_tunable`` make the
protocols plan the MIT-BIH linear-probe jobs alone (``benchmark.protocols.base.unsupported``), and
``encode_ecg`` on any other dataset is a one-line ``UserError``. The ResNet1d every ``Method``
builds is unused (the smallest variant by default) and never trained.

The classifier (:class:`WeightedLD`)
------------------------------------
De Chazal's LD: one mean per class and a pooled covariance in which every beat is weighted by
``1 / (beats of its class)``, so each class counts equally (without it, ~90 % N beats swamp S and
F); equal priors. ``shrinkage`` blends the covariance towards its mean variance (regularisation
for classes with few beats). :func:`record_cv` chooses among candidate classifiers by
patient-wise (record-wise) cross-validation on the training records alone; ``scripts/
dechazal_check.py`` trains on all of DS1 with the choice and scores DS2 once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from benchmark.data.beats import beat_features, feature_names, record_folds
from benchmark.data.mitbih import MITBIH
from benchmark.errors import DataError, UserError
from benchmark.method import Method, register_method_class


@register_method_class("dechazal")
class DeChazal(Method):
    """De Chazal et al. (2004) beat features (RR intervals + sampled MLII QRS/T), MIT-BIH only; no training."""

    needs_pretraining = False
    only_datasets: ClassVar[tuple[str, ...]] = ("mitbih",)  # the protocols plan nothing else for it
    fine_tunable: ClassVar[bool] = False  # no trained encoder: no fine-tune jobs
    beat_features: ClassVar[bool] = True  # already one vector per beat, RR included: no readout, no RR appended
    defaults = {
        **Method.defaults,
        "encoder": "resnet1d-tiny",  # built by Method, never used: keep it small
        "morphology": True,  # False: the 10 RR features alone
        "lowpass_hz": 35.0,  # after baseline removal (None: none)
        "local_beats": 10,  # beats in the local mean RR
    }

    def build(self) -> None:
        self._cache: dict[Any, np.ndarray] = {}  # store key -> [len(data), F] features (NaN: not yet computed)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return feature_names(bool(self.settings["morphology"]))

    @property
    def embedding_dim(self) -> int:
        return len(self.feature_names)

    def _check(self, data) -> None:
        cols = getattr(getattr(data, "meta", None), "columns", ())
        if getattr(data, "name", None) not in self.only_datasets or not {"record", "sample"} <= set(cols):
            raise UserError(f"dechazal: its features need annotated heart beats (MIT-BIH rows); dataset "
                            f"'{getattr(data, 'name', data)}' has none")

    def source_root(self, data) -> Path:
        """The MIT-BIH folder the store was built from (``manifest['data_root']``), or the same
        dataset folder under the default data root (``ECGBENCH_DATA_ROOT``) if that has moved."""
        root = Path(str(data.manifest.get("data_root", "")))
        if root.is_dir() and str(root):
            return root
        from benchmark.data.base import PrepareParams
        from benchmark.paths import resolve_data_root

        params = PrepareParams(options=tuple(sorted(data.manifest.get("params", {}).get("options", {}).items())))
        try:
            return Path(MITBIH.root(resolve_data_root(None), params))
        except UserError:
            raise DataError(f"dechazal: the MIT-BIH folder '{root}' this store was built from is gone and none is "
                            "under the data root: the 360 Hz MLII signal is read from it") from None

    def encode_ecg(self, data, idx, batch_size: int = 256) -> np.ndarray:
        """Beat features [N, F] float32 of rows ``idx`` (computed per record, memoised per store).

        Reading a record's signal counts as reading its rows: the store's split guard is applied
        to ``idx`` first (inside ``data.forbid("test")`` a DS2 row raises), and only the records
        of ``idx`` are read; a record's rows all share its split."""
        self._check(data)
        idx = np.asarray(idx, dtype=np.int64)
        data._account(idx)  # the split guard and read counts every signal read goes through
        key = (data.manifest.get("key"), data.path, len(data))
        if key not in self._cache:
            self._cache[key] = np.full((len(data), self.embedding_dim), np.nan, dtype=np.float32)
        feats = self._cache[key]
        records = data.meta["record"].astype(str).to_numpy()
        todo = np.unique(records[idx[np.isnan(feats[idx, 0])]])
        if len(todo):
            root = self.source_root(data)
            rows = np.flatnonzero(np.isin(records, todo))  # every beat of those records: RR needs neighbours
            feats[rows], _ = beat_features(
                data.meta.iloc[rows], lambda rec: MITBIH.read_mlii(root, rec), morphology=bool(self.settings["morphology"]),
                lowpass_hz=self.settings["lowpass_hz"], local_beats=int(self.settings["local_beats"]),
            )
        return feats[idx].copy()

    def ecg_backbone(self):
        raise UserError("dechazal has no trained encoder to fine-tune (its features are hand-crafted)")


class WeightedLD:
    """Linear discriminant with class-balanced weights and equal priors (de Chazal et al. 2004).

    Features are standardised on the training beats; each class gets its mean; the pooled
    covariance weighs every beat by ``1 / n_class`` so each class contributes equally;
    ``shrinkage`` in [0, 1] mixes it with ``mean variance * I``. ``decision_function`` gives the
    linear scores, ``predict_proba`` their softmax, ``predict`` the argmax class."""

    def __init__(self, shrinkage: float = 0.0):
        if not 0.0 <= float(shrinkage) <= 1.0:
            raise UserError(f"WeightedLD: shrinkage must be in [0, 1], got {shrinkage}")
        self.shrinkage = float(shrinkage)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "WeightedLD":
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y) or len(X) == 0:
            raise UserError(f"WeightedLD.fit: X must be [n, d] with n = len(y) > 0, got {X.shape} and {y.shape}")
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise UserError("WeightedLD.fit: needs beats of at least two classes")
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        Z = (X - self.mean_) / self.scale_
        counts = np.bincount(codes)
        means = np.stack([Z[codes == k].mean(axis=0) for k in range(len(counts))])
        w = 1.0 / counts[codes]
        R = (Z - means[codes]) * np.sqrt(w / w.sum())[:, None]
        cov = R.T @ R
        cov = (1 - self.shrinkage) * cov + self.shrinkage * np.trace(cov) / len(cov) * np.eye(len(cov))
        cov += 1e-9 * np.eye(len(cov))  # a constant feature inside every class would make it singular
        coef = np.linalg.solve(cov, means.T)  # [d, K]
        self.coef_ = coef
        self.intercept_ = -0.5 * np.einsum("kd,dk->k", means, coef)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return Z @ self.coef_ + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        s = self.decision_function(X)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(axis=1)]


def balanced_logreg(C: float = 1.0, seed: int = 0):
    """The alternative classifier: multinomial logistic regression with ``class_weight='balanced'``
    on standardised features (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=2000,
                                                              random_state=seed))


def class_table(y_true, y_pred, classes) -> dict[str, dict[str, float]]:
    """Per class: ``n`` (true beats), ``se`` (sensitivity, %), ``ppv`` (positive predictivity, %),
    ``f1`` (%) -- NaN where undefined (no true beat, or nothing predicted)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    out = {}
    for c in classes:
        tp = int(np.sum((y_true == c) & (y_pred == c)))
        n_true, n_pred = int(np.sum(y_true == c)), int(np.sum(y_pred == c))
        se = 100.0 * tp / n_true if n_true else float("nan")
        ppv = 100.0 * tp / n_pred if n_pred else float("nan")
        f1 = 200.0 * tp / (n_true + n_pred) if n_true + n_pred else float("nan")
        out[str(c)] = {"n": n_true, "se": se, "ppv": ppv, "f1": f1}
    return out


def macro_f1(y_true, y_pred, classes) -> float:
    """Mean F1 (%) over ``classes`` (a class with neither true nor predicted beats counts 0)."""
    t = class_table(y_true, y_pred, classes)
    return float(np.mean([0.0 if np.isnan(v["f1"]) else v["f1"] for v in t.values()]))


def record_cv(X: np.ndarray, y: np.ndarray, records: np.ndarray, candidates: dict[str, Callable[[], Any]],
              *, classes, n_folds: int = 11, columns: dict[str, np.ndarray] | None = None,
              ) -> tuple[str, dict[str, float]]:
    """Patient-wise cross-validation: for every candidate (a name -> factory of an unfitted
    classifier with ``fit``/``predict``), predictions of every held-out fold are pooled and scored by
    the macro F1 over ``classes``. ``columns`` optionally maps a candidate name to the feature
    columns it uses (all by default). Returns the best name and every candidate's score."""
    folds = record_folds(records, n_folds)
    scores = {}
    for name, make in candidates.items():
        cols = slice(None) if columns is None or name not in columns else columns[name]
        pred = np.empty(len(y), dtype=np.asarray(y).dtype)
        for test in folds:
            train = np.setdiff1d(np.arange(len(y)), test)
            pred[test] = make().fit(X[train][:, cols], y[train]).predict(X[test][:, cols])
        scores[name] = macro_f1(y, pred, classes)
    best = max(scores, key=lambda n: scores[n])
    return best, scores
