"""Matured-label performance and the retraining rule (``models/monitoring.py``)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from core.config import MonitoringConfig, RetrainRule
from models.drift import column_drift
from models.metrics import expected_calibration_error
from models.monitoring import (
    Figures,
    MaturedPerformance,
    auc_standard_error,
    matured_performance,
    retraining_advice,
)

DAY = dt.date(2026, 5, 15)


def _scores(n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(int)
    p = np.clip(0.03 + 0.3 * y * rng.random(n) + 0.05 * rng.random(n), 0, 1)
    ids = [f"S{i:07d}" for i in range(n)]
    scores = pd.DataFrame(
        {"subscriber_id": ids, "churn_probability": p, "listed": p > 0.2, "model_version": "3"}
    )
    labels = pd.DataFrame({"subscriber_id": ids[::-1], "churned": y[::-1]})  # another order
    return scores, labels


def test_matured_metrics_equal_the_ones_computed_from_the_labels():
    scores, labels = _scores()
    m = matured_performance(scores, labels, DAY)
    y = labels.set_index("subscriber_id").loc[scores["subscriber_id"], "churned"].to_numpy()
    p = scores["churn_probability"].to_numpy()
    assert m.figures.roc_auc == pytest.approx(roc_auc_score(y, p))
    assert m.figures.pr_auc == pytest.approx(average_precision_score(y, p))
    top = np.argsort(-p, kind="stable")[: round(len(p) / 10)]
    assert m.figures.top_decile_lift == pytest.approx(y[top].mean() / y.mean())
    assert m.figures.ece == pytest.approx(expected_calibration_error(y, p))
    assert m.list_precision == pytest.approx(y[scores["listed"]].mean())
    assert (m.rows, m.churners, m.model_version) == (len(y), y.sum(), "3")


def test_a_scored_subscriber_without_a_label_is_an_error():
    scores, labels = _scores()
    with pytest.raises(ValueError, match="no label"):
        matured_performance(scores, labels.iloc[1:], DAY)


def test_auc_standard_error_shrinks_with_more_churners():
    assert auc_standard_error(0.8, 30, 800) > auc_standard_error(0.8, 300, 8000) > 0


def test_retraining_is_advised_on_a_real_auc_drop_or_drift_on_a_top_feature():
    scores, labels = _scores(n=20000)
    m = matured_performance(scores, labels, DAY)
    rule = RetrainRule(auc_drop=0.05, top_features=2)
    train = Figures(m.figures.roc_auc + 0.02, 0.5, 5.0, 0.01)
    assert not retraining_advice(rule, train, [m], [], ["a", "b"]).retrain
    worse = Figures(m.figures.roc_auc + 0.10, 0.5, 5.0, 0.01)
    advice = retraining_advice(rule, worse, [m], [], ["a", "b"])
    assert advice.retrain and "ROC-AUC" in advice.reasons[0]
    rng = np.random.default_rng(0)
    drifted = column_drift("b", rng.normal(0, 1, 3000), rng.normal(2, 1, 800), MonitoringConfig())
    assert retraining_advice(rule, train, [m], [drifted], ["a", "b"]).reasons == (
        "drift on top feature(s) b",
    )
    assert not retraining_advice(rule, train, [m], [drifted], ["a", "c", "b"]).retrain  # b is third


def test_a_drop_within_the_noise_of_both_aucs_is_not_advised():
    """A drop of 0.07: beyond 2 SE of the matured AUC alone, within 2 SE of the difference."""
    m = MaturedPerformance(DAY, "1", 3000, 130, Figures(0.79, 0.3, 4.0, 0.02), 10, 0.3)
    training = Figures.of({"roc_auc": 0.86, "base_rate": 0.0465}, rows=817)
    assert training.roc_auc_se == pytest.approx(auc_standard_error(0.86, 38, 779))
    assert 2 * m.roc_auc_se < 0.07 < 2 * np.hypot(m.roc_auc_se, training.roc_auc_se)
    rule = RetrainRule(auc_drop=0.05, z=2.0)
    assert not retraining_advice(rule, training, [m], [], []).retrain
    exact = Figures(0.86, 0.5, 6.0, 0.02)  # a training figure taken as exact
    assert retraining_advice(rule, exact, [m], [], []).retrain
