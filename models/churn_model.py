"""One model interface for every candidate: probabilities plus exact additive explanations.

Training, the batch job and the BentoML service all hold a :class:`ChurnModel`, so a score and its
reasons are computed the same way wherever they are asked for. ``explain`` returns SHAP values in
log-odds: ``base + contributions.sum(axis=1)`` equals the model's raw (logit) output.
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
    _explainer: Any = field(default=None, repr=False, compare=False)

    def _x(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [f for f in self.features if f not in X.columns]
        if missing:
            raise ValueError(f"missing feature columns: {missing}")
        return X[self.features].astype("float64")

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.estimator.predict_proba(self._x(X))[:, 1]

    def predict_logit(self, X: pd.DataFrame) -> np.ndarray:
        p = np.clip(self.predict_proba(X), 1e-12, 1 - 1e-12)
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

            scaler, lr = self.estimator.named_steps["scale"], self.estimator.named_steps["lr"]
            if self._explainer is None:
                self._explainer = shap.LinearExplainer(
                    lr, shap.maskers.Independent(scaler.transform(self._x(self.background)), max_samples=len(self.background))
                )
            sv = self._explainer(scaler.transform(x))
            values = np.asarray(sv.values)
            base = np.broadcast_to(np.asarray(sv.base_values, dtype=float).reshape(-1), (len(x),)).copy()
        elif self.kind == "rules":
            base, values = self.estimator.contributions(x, self._x(self.background))
        else:  # pragma: no cover - guarded by the trainer
            raise ValueError(f"unknown model kind {self.kind!r}")
        return Explanation(base, values, list(self.features))

    def __getstate__(self):  # the SHAP explainer is rebuilt lazily after unpickling
        state = dict(self.__dict__)
        state["_explainer"] = None
        return state


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))
