"""The operator's own churn-tendency checklist (DOMAIN.md) as a scoring baseline.

Each rule is one signal staff are trained to look for; the score is the number of rules that fire,
mapped to a probability by a one-variable logistic fit. Being linear in the rule flags, its SHAP
values are exact: each fired rule contributes ``slope * (flag - mean flag)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

# rule name -> (feature it reads, test on that feature)
RULES: dict[str, tuple[str, str]] = {
    "contract_expiring": ("days_to_contract_end", "days_to_contract_end <= 30 and is_postpaid == 1"),
    "usage_drop": ("minutes_change_pct", "minutes_change_pct <= -50"),
    "zero_call_streak": ("longest_zero_streak_30d", "longest_zero_streak_30d >= 4"),
    "competitor_hotline": ("competitor_hotline_calls_30d", "competitor_hotline_calls_30d >= 1"),
    "complaints": ("complaints_90d", "complaints_90d >= 1"),
}


def rule_flags(X: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {name: X.eval(expr).astype(float) for name, (_, expr) in RULES.items()}, index=X.index
    )


class RuleBaseline(ClassifierMixin, BaseEstimator):
    """Count of fired checklist rules -> probability (Platt scaling on the training labels)."""

    def fit(self, X: pd.DataFrame, y):
        self.platt_ = LogisticRegression().fit(rule_flags(X).sum(axis=1).to_frame("n_rules"), y)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.platt_.predict_proba(rule_flags(X).sum(axis=1).to_frame("n_rules"))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def contributions(self, X: pd.DataFrame, background: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Exact SHAP values per input feature (a rule's share goes to the feature it reads)."""
        slope, icpt = float(self.platt_.coef_[0, 0]), float(self.platt_.intercept_[0])
        flags, mean = rule_flags(X), rule_flags(background).mean()
        out = np.zeros((len(X), X.shape[1]))
        cols = list(X.columns)
        for name, (feature, _) in RULES.items():
            out[:, cols.index(feature)] += slope * (flags[name].to_numpy() - mean[name])
        base = np.full(len(X), icpt + slope * mean.sum())
        return base, out
