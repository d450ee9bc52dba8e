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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.rules import RuleBaseline


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
    categories: dict[str, list[str]] = field(default_factory=dict)  # categorical column -> training vocabulary
    calibrator: Any = None  # models.calibration.Calibrator: raw score -> calibrated probability (None: raw)
    _explainer: Any = field(default=None, repr=False, compare=False)

    def _x(self, X: pd.DataFrame) -> pd.DataFrame:
        """The model's input frame: numeric columns as float64, categoricals with their training categories
        (an unseen value becomes missing)."""
        missing = [f for f in self.features if f not in X.columns]
        if missing:
            raise ValueError(f"missing feature columns: {missing}")
        if not self.categories:
            return X[self.features].astype("float64")
        return pd.DataFrame(
            {
                f: pd.Categorical(X[f].map(lambda v: v if pd.isna(v) else str(v)), categories=self.categories[f])
                if f in self.categories
                else pd.to_numeric(X[f]).astype("float64")
                for f in self.features
            },
            index=X.index,
        )

    def prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        """The estimator's input frame for ``X`` (e.g. an early-stopping ``eval_set``)."""
        return self._x(X)

    def fit(self, X: pd.DataFrame, y, **fit_params) -> "ChurnModel":
        """Fit the estimator on the same input frame that scoring and explaining use."""
        self.estimator.fit(self._x(X), np.asarray(y), **fit_params)
        self._explainer = None
        return self

    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        """The estimator's own (uncalibrated) probability: the ranking score that SHAP explains."""
        return self.estimator.predict_proba(self._x(X))[:, 1]

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
        x = self._x(X)
        if self.kind == "lightgbm":
            import shap

            if self._explainer is None:
                self._explainer = shap.TreeExplainer(self.estimator)
            sv = self._explainer(x)
            values = np.asarray(sv.values)
            base = np.broadcast_to(np.asarray(sv.base_values, dtype=float).reshape(-1), (len(x),)).copy()
        elif self.kind == "logistic":
            import shap

            # every step before the last prepares the input (scaling; one-hot encoding of categoricals)
            prep, lr = self.estimator[:-1], self.estimator[-1]
            if self._explainer is None:
                self._explainer = shap.LinearExplainer(
                    lr, shap.maskers.Independent(_dense(prep.transform(self._x(self.background))),
                                                 max_samples=len(self.background))
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

    def predict_and_explain(self, x: np.ndarray, threads: int = 1) -> tuple[np.ndarray, Explanation]:
        """Calibrated probabilities and SHAP explanation of numeric rows (columns in ``features`` order).

        The same values as :meth:`predict_proba` and :meth:`explain`, in the shape the service's
        batched model step needs. A LightGBM model goes straight to its booster on the float array
        with ``threads`` threads: its exact TreeSHAP (``pred_contrib``) is what ``shap.TreeExplainer``
        returns for it, without the pandas checks, the SHAP wrapper objects and an OpenMP fan-out
        that cost ~10 ms on a single row. Other models take the ordinary path.
        """
        x = np.asarray(x, dtype="float64").reshape(-1, len(self.features))
        if self.kind != "lightgbm" or self.categories:
            X = pd.DataFrame(x, columns=self.features)
            return self.predict_proba(X), self.explain(X)
        booster = self.estimator.booster_
        raw = booster.predict(x, num_threads=threads)
        contrib = booster.predict(x, pred_contrib=True, num_threads=threads)
        proba = raw if self.calibrator is None else self.calibrator(raw)
        return np.asarray(proba, dtype=float), Explanation(contrib[:, -1].copy(), contrib[:, :-1], list(self.features))

    def __getstate__(self):  # the SHAP explainer is rebuilt lazily after unpickling
        state = dict(self.__dict__)
        state["_explainer"] = None
        return state

    def __setstate__(self, state):  # models pickled before categorical support have no ``categories``
        self.__dict__.update({"categories": {}, "params": {}, "calibrator": None, **state})


def _dense(a) -> np.ndarray:
    return a.toarray() if hasattr(a, "toarray") else np.asarray(a, dtype=float)


def _source_matrix(prep, features: list[str]) -> np.ndarray:
    """(n_encoded, n_features) 0/1 matrix: which original column each encoded column comes from.

    Understands a plain scaler (one column per feature) and a ``ColumnTransformer`` whose
    transformers keep one column per input (scaling, imputing) or one-hot encode it.
    """
    from sklearn.compose import ColumnTransformer

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
            sizes = [len(c) - (drop is not None and drop[i] is not None) for i, c in enumerate(enc.categories_)]
        else:
            sizes = [1] * len(cols)
        owners = np.repeat([features.index(c) for c in cols], sizes)
        if len(owners) != sl.stop - sl.start:
            raise ValueError(f"cannot map the {sl.stop - sl.start} columns of {name!r} back to {list(cols)}")
        out[np.arange(sl.start, sl.stop), owners] = 1.0
    return out


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))
