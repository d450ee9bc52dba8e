"""One model interface for every candidate: probabilities plus exact additive explanations.

Training, the batch job and the BentoML service all hold a :class:`ChurnModel`, so a score and its
reasons are computed the same way wherever they are asked for. ``explain`` returns SHAP values in
log-odds: ``base + contributions.sum(axis=1)`` equals the model's raw (logit) output.

``predict_proba`` is *calibrated* (isotonic or Platt, fitted on validation rows, see
``models/calibration.py``); the reasons explain the raw ranking score (``predict_logit``). The
calibrator is strictly increasing, so both order subscribers the same way: a reason says why a
subscriber ranks high, the probability says how likely churn is.

Inputs may carry categorical columns (a customer table's ``contract``, ``payment_method``...):
``categories`` fixes each one's vocabulary at training time, LightGBM splits on them natively, and
the logistic pipeline one-hot encodes them. Contributions are always reported per *original*
column: the SHAP values of a column's one-hot indicators are summed back onto it, which keeps the
sum exact because the model is linear in those indicators.

A customer table's derived columns (``derived``, SQL over the mapped columns) are computed by the
model itself from the mapped columns of whatever rows it is given (:meth:`ChurnModel.complete`):
training, the pyfunc and scoring with reasons all derive them through the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import shap
from sklearn.compose import ColumnTransformer

from features.derived import Derived, add_derived

PARALLEL_FROM_ROWS = 2000  # fewer rows than this are predicted / explained on one thread


@dataclass
class Explanation:
    base_values: np.ndarray  # (n,) expected logit
    contributions: np.ndarray  # (n, n_features) SHAP values in logit space
    features: list[str]


@dataclass
class ChurnModel:
    kind: str  # "rules" | "logistic" | "lightgbm"
    features: list[str]
    estimator: Any
    background: pd.DataFrame  # a training sample: the reference for linear SHAP
    params: dict = field(default_factory=dict)
    categories: dict[str, list[str]] = field(
        default_factory=dict
    )  # categorical column -> training vocabulary
    calibrator: Any = None  # models.calibration.Calibrator: raw score -> calibrated probability (None: raw)
    derived: list[Derived] = field(default_factory=list)  # columns computed from the mapped ones (SQL)
    _explainer: Any = field(default=None, repr=False, compare=False)

    @property
    def inputs(self) -> list[str]:
        """The columns a caller supplies: every feature but the derived ones."""
        names = {d.name for d in self.derived}
        return [f for f in self.features if f not in names]

    def complete(self, X: pd.DataFrame) -> pd.DataFrame:
        """``X`` with the derived columns computed from its mapped columns (``X`` itself when none)."""
        if not self.derived:
            return X
        return add_derived(X, self.derived, self.categories)

    def _x(self, X: pd.DataFrame) -> pd.DataFrame:
        """The model's input frame: numeric columns as float64, categoricals with their training categories
        (an unseen value becomes missing); derived columns computed afresh."""
        X = self.complete(X)
        missing = [f for f in self.features if f not in X.columns]
        if missing:
            raise ValueError(f"missing feature columns: {missing}")
        if not self.categories:
            return X[self.features].astype("float64")
        return pd.DataFrame(
            {
                f: pd.Categorical(
                    X[f].map(lambda v: v if pd.isna(v) else str(v)), categories=self.categories[f]
                )
                if f in self.categories
                else pd.to_numeric(X[f]).astype("float64")
                for f in self.features
            },
            index=X.index,
        )

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        """All-numeric inputs as one float64 matrix in model column order (what ``_x`` holds, without
        building a frame)."""
        return np.asarray(in_order(X, self.features), dtype=np.float64)

    def prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        """The estimator's input frame for ``X`` (e.g. an early-stopping ``eval_set``)."""
        return self._x(X)

    def fit(self, X: pd.DataFrame, y, **fit_params) -> ChurnModel:
        """Fit the estimator on the same input frame that scoring and explaining use."""
        self.estimator.fit(self._x(X), np.asarray(y), **fit_params)
        self._explainer = None
        return self

    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        """The estimator's own (uncalibrated) probability: the ranking score that SHAP explains."""
        if self.kind == "lightgbm":
            return self._booster_predict(X)
        return self.estimator.predict_proba(self._x(X))[:, 1]

    def _booster_predict(self, X: pd.DataFrame, **kw) -> np.ndarray:
        """LightGBM's booster directly: a float matrix when every input is numeric (no pandas checks),
        one thread for small inputs (OpenMP start-up costs a single-subscriber request ~3-15 ms on a
        busy machine), every core for large ones. Same trees, same numbers as ``predict_proba``."""
        data = self._x(X) if self.categories or self.derived else self._matrix(X)
        return self._booster_rows(data, **kw)

    def _booster_rows(self, data, **kw) -> np.ndarray:
        threads = 1 if len(data) < PARALLEL_FROM_ROWS else 0  # 0: LightGBM's default, all cores
        return self.estimator.booster_.predict(data, num_threads=threads, **kw)

    @property
    def _numeric_booster(self) -> bool:
        return self.kind == "lightgbm" and not (self.categories or self.derived)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """The churn probability: the raw score through the calibrator fitted on validation rows.

        The calibrator is strictly increasing, so the order of subscribers is the raw score's.
        """
        raw = self.predict_raw(X)
        return raw if self.calibrator is None else self.calibrator(raw)

    def predict_logit(self, X: pd.DataFrame) -> np.ndarray:
        """Raw (uncalibrated) log-odds: what ``explain`` decomposes (``base + contributions.sum(1)``)."""
        p = np.clip(self.predict_raw(X), 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p))

    def explain(self, X: pd.DataFrame) -> Explanation:
        if self.kind == "lightgbm":
            # LightGBM's own exact TreeSHAP (Lundberg et al.'s path-dependent algorithm, the values
            # shap.TreeExplainer gives, tested equal; the trees predict_proba uses, best iteration when
            # early-stopped): no shap import or explainer per process, ~50x faster per request
            out = self._booster_predict(X, pred_contrib=True)
            values, base = out[:, :-1], out[:, -1].copy()
            return Explanation(base, values, list(self.features))
        x = self._x(X)
        if self.kind == "logistic":
            # every step before the last prepares the input (scaling; one-hot encoding of categoricals)
            prep, lr = self.estimator[:-1], self.estimator[-1]
            if self._explainer is None:
                self._explainer = shap.LinearExplainer(
                    lr,
                    shap.maskers.Independent(
                        _dense(prep.transform(self._x(self.background))), max_samples=len(self.background)
                    ),
                )
            sv = self._explainer(_dense(prep.transform(x)))
            # SHAP per encoded column -> per original column (sum of a categorical's indicators)
            values = np.asarray(sv.values) @ _source_matrix(prep, self.features)
            base = np.broadcast_to(np.asarray(sv.base_values, dtype=float).reshape(-1), (len(x),)).copy()
        elif self.kind == "rules":
            base, values = self.estimator.contributions(x, self._x(self.background))
        else:  # pragma: no cover - guarded by the trainer
            raise ValueError(f"unknown model kind {self.kind!r}")
        return Explanation(base, values, list(self.features))

    def predict_and_explain(self, x: np.ndarray) -> tuple[np.ndarray, Explanation]:
        """Calibrated probabilities and SHAP explanation of numeric rows given as one float matrix
        (columns in ``features`` order): the service's model step, through the same
        :meth:`predict_proba` and :meth:`explain` as everything else. A numeric LightGBM model takes
        the matrix straight to its booster (the calls those make, without a frame around one row)."""
        x = np.asarray(x, dtype="float64").reshape(-1, len(self.features))
        if self._numeric_booster:
            raw, out = self._booster_rows(x), self._booster_rows(x, pred_contrib=True)
            proba = raw if self.calibrator is None else self.calibrator(raw)
            return proba, Explanation(out[:, -1].copy(), out[:, :-1], list(self.features))
        X = pd.DataFrame(x, columns=self.features)
        return self.predict_proba(X), self.explain(X)

    def __getstate__(self):  # the SHAP explainer is rebuilt lazily after unpickling
        state = dict(self.__dict__)
        state["_explainer"] = None
        return state

    def __setstate__(self, state):  # models pickled before categorical support have no ``categories``
        self.__dict__.update({"categories": {}, "params": {}, "calibrator": None, "derived": [], **state})


def in_order(X: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """``X[features]``, without the copy when ``X`` already holds exactly those columns in that order
    (the online store's frame does): selecting columns costs more than a one-row prediction."""
    if list(X.columns) == list(features):
        return X
    missing = [f for f in features if f not in X.columns]
    if missing:
        raise ValueError(f"missing feature columns: {missing}")
    return X[features]


def _dense(a) -> np.ndarray:
    return a.toarray() if hasattr(a, "toarray") else np.asarray(a, dtype=float)


def _source_matrix(prep, features: list[str]) -> np.ndarray:
    """(n_encoded, n_features) 0/1 matrix: which original column each encoded column comes from.

    Understands a plain scaler (one column per feature) and a ``ColumnTransformer`` whose
    transformers keep one column per input (scaling, imputing) or one-hot encode it.
    """
    last = prep[-1] if hasattr(prep, "steps") else prep
    if not isinstance(last, ColumnTransformer):
        return np.eye(len(features))
    n_out = sum(s.stop - s.start for s in last.output_indices_.values())
    out = np.zeros((n_out, len(features)))
    for name, trans, cols in last.transformers_:
        sl = last.output_indices_[name]
        if sl.stop == sl.start:
            continue
        enc = trans[-1] if hasattr(trans, "steps") else trans
        if hasattr(enc, "categories_"):  # one-hot: one indicator per category (minus a dropped one)
            drop = getattr(enc, "drop_idx_", None)
            sizes = [
                len(c) - (drop is not None and drop[i] is not None) for i, c in enumerate(enc.categories_)
            ]
        else:
            sizes = [1] * len(cols)
        owners = np.repeat([features.index(c) for c in cols], sizes)
        if len(owners) != sl.stop - sl.start:
            raise ValueError(f"cannot map the {sl.stop - sl.start} columns of {name!r} back to {list(cols)}")
        out[np.arange(sl.start, sl.stop), owners] = 1.0
    return out


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))
