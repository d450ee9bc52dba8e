"""Ranking metrics a retention team reads: ROC-AUC, PR-AUC and lift in the top decile."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def top_fraction_lift(y: np.ndarray, score: np.ndarray, fraction: float = 0.1) -> float:
    """Churn rate among the top ``fraction`` by score, divided by the overall churn rate."""
    y = np.asarray(y)
    k = max(1, int(round(len(y) * fraction)))
    top = np.argsort(-np.asarray(score), kind="stable")[:k]
    return float(y[top].mean() / y.mean()) if y.mean() > 0 else float("nan")


def evaluate(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": float(roc_auc_score(y, score)),
        "pr_auc": float(average_precision_score(y, score)),
        "top_decile_lift": top_fraction_lift(y, score, 0.1),
        "base_rate": float(np.mean(y)),
    }
