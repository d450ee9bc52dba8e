"""The monitoring gauges (``serving/monitoring_gauges.py``) read the newest report ``churn monitor``
wrote; in this process prometheus_client runs single-process, so its text output is the check."""

from __future__ import annotations

import datetime as dt

import numpy as np
import prometheus_client
import pytest

from core.config import MonitoringConfig, load_settings
from models.drift import column_drift
from models.monitoring import Advice, Figures, MaturedPerformance
from pipelines.monitor import MonitorResult
from pipelines.monitor_report import write_report
from serving.monitoring_gauges import publish


def _result(day: dt.date, shift: float) -> MonitorResult:
    rng, cfg = np.random.default_rng(0), MonitoringConfig()
    feats = tuple(
        column_drift(name, rng.normal(0, 1, 2000), rng.normal(mu, 1, 500), cfg)
        for name, mu in (("tenure_days", 0.0), ("competitor_hotline_calls_7d", shift))
    )
    score = column_drift("churn_probability", rng.random(2000), rng.random(500), cfg, 0.0, 1.0)
    matured = MaturedPerformance(
        day - dt.timedelta(days=40), "2", 500, 30, Figures(0.71, 0.3, 4.0, 0.02), 20, 0.4
    )
    advice = Advice(True, ("drift on top feature(s) competitor_hotline_calls_7d",))
    return MonitorResult(
        day, "churnwarn", "2", 2000, 500, feats, score, (), Figures(0.86, 0.5, 6.0, 0.01), (matured,), advice
    )


def test_gauges_follow_the_newest_report(tmp_path, make_config):
    settings = load_settings(make_config(tmp_path))
    assert publish(settings) is None  # no report yet: nothing to publish
    write_report(settings, _result(dt.date(2026, 5, 1), 0.0))
    write_report(settings, _result(dt.date(2026, 5, 15), 2.0))
    assert publish(settings) == "2026-05-15"
    text = prometheus_client.generate_latest().decode()
    assert 'churnwarn_drift_alarm{feature="competitor_hotline_calls_7d"} 1.0' in text
    assert 'churnwarn_drift_alarm{feature="tenure_days"} 0.0' in text
    assert 'churnwarn_drift_psi{feature="churn_probability"}' in text
    assert "churnwarn_matured_roc_auc 0.71" in text and "churnwarn_training_roc_auc 0.86" in text
    assert "churnwarn_retrain_recommended 1.0" in text
    stamp = dt.datetime(2026, 5, 15, tzinfo=dt.UTC).timestamp()
    assert prometheus_client.REGISTRY.get_sample_value("churnwarn_monitor_date_seconds") == pytest.approx(
        stamp
    )
