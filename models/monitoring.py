"""Matured-label performance of the kept scores, and the rule that recommends retraining.

A score of feature date D is judged once its label window (``features.label_horizon_days``) has
closed: the same ROC-AUC, PR-AUC, top-decile lift and calibration error (``models.metrics``) as the
training run logged on its held-out snapshot, so the two read side by side, plus the precision of
the list that night (the share of work orders whose subscriber did churn).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from core.config import RetrainRule
from models.drift import ColumnDrift
from models.metrics import evaluate

FIGURES = ("roc_auc", "pr_auc", "top_decile_lift", "ece")


@dataclass(frozen=True)
class Figures:
    """The headline metrics of one sample (a matured date, or the training run's held-out snapshot)."""

    roc_auc: float
    pr_auc: float
    top_decile_lift: float
    ece: float
    roc_auc_se: float = 0.0  # standard error of the ROC-AUC (0: not known)

    @classmethod
    def of(cls, metrics: dict[str, float], rows: int | None = None) -> Figures:
        """From logged metrics; with ``rows`` (and the logged ``base_rate``) the AUC's standard error."""
        values = [float(metrics.get(k, float("nan"))) for k in FIGURES]
        se = 0.0
        if rows and "base_rate" in metrics:
            churners = round(metrics["base_rate"] * rows)
            se = auc_standard_error(values[0], churners, rows - churners)
        return cls(*values, roc_auc_se=se if np.isfinite(se) else 0.0)


@dataclass(frozen=True)
class MaturedPerformance:
    """One scored date whose labels have matured."""

    date: dt.date
    model_version: str
    rows: int
    churners: int
    figures: Figures
    listed: int
    list_precision: float | None  # share of the listed who churned; None: nobody listed

    @property
    def roc_auc_se(self) -> float:
        """Standard error of the ROC-AUC (Hanley & McNeil 1982): a few dozen churners a date leave
        it wide, and the retraining rule must not chase that noise."""
        return auc_standard_error(self.figures.roc_auc, self.churners, self.rows - self.churners)

    def as_json(self) -> dict:
        return asdict(self) | {"date": str(self.date), "roc_auc_se": self.roc_auc_se}


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley-McNeil standard error of an AUC from ``positives`` and ``negatives`` rows."""
    if positives < 1 or negatives < 1 or not np.isfinite(auc):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    return float(np.sqrt(max(var, 0.0) / (positives * negatives)))


def matured_performance(scores: pd.DataFrame, labels: pd.DataFrame, date: dt.date) -> MaturedPerformance:
    """``scores`` (subscriber_id, churn_probability, listed, model_version) against ``labels``
    (subscriber_id, churned) of the same feature date; every scored row must have a label."""
    both = scores.merge(labels[["subscriber_id", "churned"]], on="subscriber_id", how="left")
    if both["churned"].isna().any():
        raise ValueError(f"{int(both['churned'].isna().sum())} scored subscribers of {date} have no label")
    y = both["churned"].to_numpy(dtype=int)
    listed = both["listed"].to_numpy(dtype=bool)
    m = evaluate(y, both["churn_probability"].to_numpy(dtype=float))
    return MaturedPerformance(
        date,
        str(both["model_version"].iloc[0]),
        len(both),
        int(y.sum()),
        Figures.of(m),
        int(listed.sum()),
        float(y[listed].mean()) if listed.any() else None,
    )


@dataclass(frozen=True)
class Advice:
    """Whether ``churn monitor`` recommends ``churn train``, and why."""

    retrain: bool
    reasons: tuple[str, ...]

    def text(self) -> str:
        if not self.retrain:
            return "no retraining needed"
        return "recommend `churn train`: " + "; ".join(self.reasons)


def retraining_advice(
    rule: RetrainRule,
    training: Figures,
    matured: list[MaturedPerformance],
    drift: list[ColumnDrift],
    top_features: list[str],
) -> Advice:
    """The config's rule: the latest matured ROC-AUC below the training run's by more than
    ``auc_drop`` and by more than ``z`` standard errors of that difference (both AUCs are estimates
    from a few dozen churners), or an alarm on one of the champion's
    ``top_features`` most important features."""
    reasons = []
    if matured:
        last = matured[-1]
        drop = training.roc_auc - last.figures.roc_auc
        se = float(np.hypot(last.roc_auc_se, training.roc_auc_se))  # of the difference of two AUCs
        if np.isfinite(drop) and drop > max(rule.auc_drop, rule.z * se):
            reasons.append(
                f"matured ROC-AUC {last.figures.roc_auc:.3f} on {last.date} is {drop:.3f} below the "
                f"training run's {training.roc_auc:.3f} (SE of the difference {se:.3f}; rule: "
                f"{rule.auc_drop:g} and {rule.z:g} SE)"
            )
    top = set(top_features[: rule.top_features])
    hit = [d.name for d in drift if d.drifted and d.name in top]
    if hit:
        reasons.append(f"drift on top feature(s) {', '.join(hit)}")
    return Advice(bool(reasons), tuple(reasons))
