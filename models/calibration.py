"""Probability calibration on the validation rows: isotonic regression or Platt (sigmoid) scaling.

Both map the model's raw score to a probability with a monotone function fitted on rows the model
did not train on (the validation snapshot on the CDR path). The method is chosen by 5-fold
cross-validation *within* the validation rows (out-of-fold Brier score, then 10-bin ECE as the tie
break), so isotonic regression is not judged on the rows it memorised; the chosen one is then
refitted on all validation rows.

Isotonic steps are shrunk toward the base rate by a couple of pseudo-rows, so a small extreme step
(every one of 5 validation rows churned) does not print a probability of 1.000 (or 0.000). The
isotonic step function is made strictly increasing by a 1e-6 share of the raw score, so the
calibrated probability ranks subscribers exactly as the raw score does: calibration changes what
the numbers mean, never the order of the warning list (ROC-AUC, PR-AUC and lift are unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from models.metrics import (
    brier,
    expected_calibration_error,
)  # one definition of each, as evaluate() logs them

METHODS = ("isotonic", "sigmoid")
_TIE_BREAK = 1e-6
SMOOTHING = 2.0  # pseudo-rows at the base rate added to every isotonic step


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p)).reshape(-1, 1)


@dataclass
class Calibrator:
    """A fitted monotone map from raw score (a probability-like number in [0, 1]) to probability."""

    method: str  # "isotonic" | "sigmoid"
    model: Any

    @classmethod
    def fit(cls, method: str, raw, y) -> Calibrator:
        y = np.asarray(y, dtype=int)
        if method == "isotonic":
            raw = np.asarray(raw, dtype=float)
            first = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
            # a step of 5 churners out of 5 would say "churns with probability 1.000": shrink every
            # step toward the base rate by SMOOTHING pseudo-rows, then pool the result back into
            # a monotone map (large steps barely move; the tiny extreme steps do)
            level = first.predict(raw)
            smoothed = np.empty_like(level)
            for v in np.unique(level):
                m = level == v
                smoothed[m] = (y[m].sum() + SMOOTHING * y.mean()) / (m.sum() + SMOOTHING)
            return cls(
                method, IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, smoothed)
            )
        if method == "sigmoid":
            return cls(method, LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw), y))
        raise ValueError(f"unknown calibration method {method!r}")

    def __call__(self, raw) -> np.ndarray:
        # the fitted maps evaluated with numpy directly: the estimators' own predict() validates its
        # input first, which costs more than the map itself on a single-subscriber request
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":  # IsotonicRegression(out_of_bounds="clip"): linear between thresholds
            level = np.interp(raw, self.model.X_thresholds_, self.model.y_thresholds_)
            return (1 - _TIE_BREAK) * level + _TIE_BREAK * raw
        z = _logit(raw)[:, 0] * self.model.coef_[0, 0] + self.model.intercept_[0]
        return 1.0 / (1.0 + np.exp(-z))


def choose_calibrator(
    raw, y, seed: int = 7, folds: int = 5
) -> tuple[Calibrator, dict[str, dict[str, float]]]:
    """Fit both methods, choose by out-of-fold Brier (then ECE) on ``(raw, y)``, refit the winner on all.

    Returns the calibrator and, per method, its cross-validated ``brier`` and ``ece``.
    """
    raw, y = np.asarray(raw, dtype=float), np.asarray(y, dtype=int)
    folds = int(min(folds, np.bincount(y, minlength=2).min()))
    report: dict[str, dict[str, float]] = {}
    for method in METHODS:
        if folds >= 2:
            oof = np.empty_like(raw)
            for fit_idx, hold_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(raw, y):
                oof[hold_idx] = Calibrator.fit(method, raw[fit_idx], y[fit_idx])(raw[hold_idx])
        else:  # too few churners to cross-validate: judge in-sample
            oof = Calibrator.fit(method, raw, y)(raw)
        report[method] = {"brier": brier(y, oof), "ece": expected_calibration_error(y, oof)}
    best = min(METHODS, key=lambda m: (round(report[m]["brier"], 6), report[m]["ece"]))
    return Calibrator.fit(best, raw, y), report
