"""PSI, the two-sample test and the thresholds of ``models/drift.py`` on generated samples; the
false-alarm rate on samples drawn from one distribution is measured, not assumed."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from core.config import MonitoringConfig
from models.drift import (
    column_drift,
    expect_holiday,
    expect_score,
    holiday_share,
    natural_psi,
    psi,
    reference_edges,
    shares,
)

CFG = MonitoringConfig()


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 5000)
    edges = reference_edges(ref, 10)
    assert len(edges) == 9 and psi(shares(ref, edges), shares(ref, edges)) == 0
    small = column_drift("x", ref, rng.normal(0.1, 1, 2000), CFG).psi
    large = column_drift("x", ref, rng.normal(1.0, 1, 2000), CFG).psi
    assert small < 0.05 < CFG.psi_alarm < large


def test_a_mostly_zero_count_gets_a_bin_for_its_zeros_and_a_chi_square_test():
    rng = np.random.default_rng(1)
    ref = np.where(rng.random(5000) < 0.98, 0, rng.integers(1, 4, 5000)).astype(float)
    cur = np.where(rng.random(1000) < 0.70, 0, rng.integers(1, 4, 1000)).astype(float)
    d = column_drift("competitor_hotline_calls_7d", ref, cur, CFG, lo=0)
    assert d.edges[0] == 0 and d.test == "chi2"
    assert d.drifted and "PSI" in d.reasons[0]


def test_missing_and_out_of_range_rates_alarm_on_their_own():
    rng = np.random.default_rng(2)
    ref = rng.uniform(0, 90, 3000)
    cur = rng.uniform(0, 90, 1000)
    cur[:50] = np.nan
    d = column_drift("days_since_recharge", ref, cur, CFG, lo=0, hi=90)
    assert d.missing_current == pytest.approx(0.05) and any("missing" in r for r in d.reasons)
    cur = rng.uniform(0, 95, 1000)
    d = column_drift("days_since_recharge", ref, cur, CFG, lo=0, hi=90)
    assert d.out_of_range > 0.03 and any("outside" in r for r in d.reasons)


def test_a_feature_whose_training_snapshots_differ_needs_a_larger_shift():
    """Two training snapshots half a standard deviation apart: the pooled reference's own spread."""
    rng = np.random.default_rng(3)
    ref = np.r_[rng.normal(0, 1, 2000), rng.normal(0.8, 1, 2000)]
    snap = np.r_[np.zeros(2000), np.ones(2000)]
    natural = natural_psi(ref, snap, CFG.psi_bins)
    cur = rng.normal(0.9, 1, 1000)  # like the later snapshot
    assert column_drift("x", ref, cur, CFG).drifted  # a fixed threshold alarms
    d = column_drift("x", ref, cur, CFG, natural=natural)
    assert d.threshold == pytest.approx(CFG.natural_factor * natural) and not d.drifted


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, n: rng.normal(50, 10, n),
        lambda rng, n: rng.poisson(3, n).astype(float),
        lambda rng, n: np.where(rng.random(n) < 0.95, 0, rng.integers(1, 5, n)).astype(float),
        lambda rng, n: rng.exponential(900, n),
    ],
    ids=["normal", "poisson", "zero-inflated", "exponential"],
)
def test_false_alarm_rate_without_a_shift_is_below_one_percent(draw):
    """300 nights of 800 scored rows against a 3,000-row reference from the same distribution."""
    rng = np.random.default_rng(4)
    ref = draw(rng, 3000)
    alarms = sum(column_drift("x", ref, draw(rng, 800), CFG).drifted for _ in range(300))
    assert alarms / 300 < 0.01


def test_a_holiday_week_shift_is_expected_on_its_windows_only():
    """After the May holiday a 7-day window is mostly holiday: its PSI shift is reported, not alarmed;
    a 30-day window holding the same five days still alarms, and so does a missing-value rise."""
    cfg = MonitoringConfig(holidays=[(dt.date(2026, 5, 1), dt.date(2026, 5, 5))])
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(0, 1, 3000), rng.normal(1.5, 1, 1000)
    shifted = column_drift("calls_7d", ref, cur, cfg)
    week = holiday_share(((1, 7),), dt.date(2026, 5, 8), cfg.holidays)
    month = holiday_share(((1, 30),), dt.date(2026, 5, 15), cfg.holidays)
    assert week == pytest.approx(5 / 7) and month == pytest.approx(5 / 30)
    muted = expect_holiday(shifted, week, cfg)
    assert not muted.drifted and "holiday" in muted.expected[0]
    assert expect_holiday(shifted, month, cfg).drifted
    cur[:50] = np.nan
    assert expect_holiday(column_drift("calls_7d", ref, cur, cfg), week, cfg).drifted  # missing still alarms


def test_the_score_shift_is_expected_only_when_every_feature_shift_was():
    cfg = MonitoringConfig()
    rng = np.random.default_rng(6)
    ref, cur = rng.uniform(0, 1, 3000), rng.uniform(0.3, 1, 1000)
    score = column_drift("churn_probability", ref, cur, cfg, 0.0, 1.0)
    holiday = expect_holiday(column_drift("a", ref, cur, cfg), 0.7, cfg)
    real = column_drift("b", ref, cur, cfg)
    still = column_drift("c", ref, ref[:1000], cfg)
    assert score.drifted and holiday.expected and real.drifted and not still.drifted
    assert not expect_score(score, (holiday, still)).drifted
    assert expect_score(score, (holiday, real)).drifted
    assert expect_score(score, (still,)).drifted  # nothing moved for a holiday: the score's own shift


def test_every_catalogue_window_has_a_calendar_reading_and_the_default_calendar_is_the_simulators():
    from core.config import load_settings
    from features.catalogue import CATALOGUE, window_spans
    from pipelines.generate import HOLIDAYS

    spans = {f.name: window_spans(f, 14, 60) for f in CATALOGUE}
    assert spans["calls_change_pct_7d"] == ((1, 7), (15, 74)) and spans["tenure_days"] == ()
    assert [tuple(h) for h in load_settings().monitoring.holidays] == HOLIDAYS
