"""Metrics on hand cases and synthetic samples whose answer is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats
from sklearn.metrics import roc_curve

from core.config import EvaluationConfig, Settings
from models.metrics import empc, evaluate, expected_calibration_error

EXPECTED_KEYS = {
    "roc_auc",
    "pr_auc",
    "base_rate",
    "top_decile_lift",
    "lift_top1",
    "lift_top5",
    "lift_top10",
    "capture_top1",
    "capture_top5",
    "capture_top10",
    "brier",
    "ece",
}


def settings_with(**evaluation) -> Settings:
    return Settings(
        source=None,
        features={"snapshots": ["2026-01-01", "2026-02-01"]},
        evaluation=EvaluationConfig(**evaluation),
    )


@pytest.fixture
def settings() -> Settings:
    return settings_with()


def hand_case():
    """100 rows, 10 churners; the top 10 by score hold 4 churners, the first row (the top 1%) is one."""
    score = np.linspace(1, 0, 100)
    y = np.zeros(100, int)
    y[[0, 2, 4, 6, 20, 30, 40, 50, 60, 70]] = 1
    return y, score


def test_keys_without_and_with_value_and_settings(settings):
    y, score = hand_case()
    assert set(evaluate(y, score)) == EXPECTED_KEYS
    assert set(evaluate(y, score, value=np.ones(100))) == EXPECTED_KEYS | {
        "retained_revenue_at_capacity",
        "expected_loss_captured",
    }
    assert set(evaluate(y, score, settings=settings)) == EXPECTED_KEYS | {"empc", "empc_fraction"}


def test_lift_and_capture_hand_case():
    y, score = hand_case()
    m = evaluate(y, score)
    assert m["base_rate"] == pytest.approx(0.1)
    assert m["lift_top1"] == pytest.approx(1 / 0.1)  # top 1 row: a churner
    assert m["capture_top1"] == pytest.approx(1 / 10)
    assert m["lift_top5"] == pytest.approx((3 / 5) / 0.1)  # rows 0..4: churners 0, 2, 4
    assert m["capture_top5"] == pytest.approx(3 / 10)
    assert m["lift_top10"] == pytest.approx((4 / 10) / 0.1)  # rows 0..9: churners 0, 2, 4, 6
    assert m["capture_top10"] == pytest.approx(4 / 10)
    assert m["top_decile_lift"] == m["lift_top10"]


def test_brier_hand_case():
    y = np.array([1, 0, 1, 0])
    score = np.array([0.9, 0.2, 0.5, 0.0])
    # (0.1^2 + 0.2^2 + 0.5^2 + 0) / 4
    assert evaluate(y, score)["brier"] == pytest.approx((0.01 + 0.04 + 0.25) / 4)


def test_ece_hand_case_and_synthetic_samples():
    # two equal-frequency bins of two rows: |0.5 - 0.15| and |0.5 - 0.75|, each with share 1/2
    y, score = np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.7, 0.8])
    assert expected_calibration_error(y, score, bins=2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.25)
    rng = np.random.default_rng(0)
    p = rng.beta(1, 8, 200_000)  # churn-like: most probabilities near 0
    y = (rng.random(p.size) < p).astype(int)
    assert evaluate(y, p)["ece"] < 0.005  # calibrated: only sampling noise
    shifted = np.clip(p + 0.15, 0, 1)
    assert evaluate(y, shifted)["ece"] == pytest.approx(0.15, abs=0.01)  # off by the shift


def test_retained_revenue_hand_case():
    settings = settings_with(capacity_share=0.2, offer_accept_rate=0.5)
    y = np.array([1, 0, 0, 1, 0, 0, 0, 0, 1, 0])
    score = np.array([0.9, 0.8, 0.5, 0.2, 0.1, 0.1, 0.1, 0.1, 0.4, 0.1])
    value = np.array([10.0, 100.0, 20.0, 500.0, 0.0, 0.0, 0.0, 0.0, 30.0, 0.0])
    # score * value = 9, 80, 10, 100, 0, ..., 12, 0: capacity 0.2 * 10 = 2 rows -> rows 3 (100) and 1 (80)
    m = evaluate(y, score, value=value, settings=settings)
    assert m["retained_revenue_at_capacity"] == pytest.approx((100 + 80) * 0.5)
    # churners' value: 10 + 500 + 30 = 540; in the list: row 3 (500)
    assert m["expected_loss_captured"] == pytest.approx(500 / 540)
    # ranking by probability alone would have taken rows 0 and 1: far less of the loss at stake
    by_p = np.argsort(-score)[:2]
    assert (y[by_p] * value[by_p]).sum() / 540 < m["expected_loss_captured"]


def _beta_expectation(fn, cfg: EvaluationConfig) -> float:
    pdf = stats.beta(cfg.empc_alpha, cfg.empc_beta).pdf
    return integrate.quad(lambda g: fn(g) * pdf(g), 0, 1, limit=200, points=[0.005])[0]


def _profit(g, f0, f1, pi0, cfg: EvaluationConfig):
    """The paper's P(t; gamma) at the ROC point (F1, F0)."""
    clv, delta, phi = cfg.empc_clv, cfg.empc_d / cfg.empc_clv, cfg.empc_f / cfg.empc_clv
    return clv * (g * (1 - delta) - phi) * pi0 * f0 - clv * (delta + phi) * (1 - pi0) * f1


def test_empc_of_a_perfect_classifier_is_the_closed_form_integral(settings):
    cfg = settings.evaluation
    rng = np.random.default_rng(1)
    y = (rng.random(5000) < 0.06).astype(int)
    pi0 = y.mean()
    m = empc(y, y + 0.1 * rng.random(5000), settings)
    # target exactly the churners (F0 = 1, F1 = 0) when that pays, i.e. gamma (1 - delta) > phi:
    # EMPC = CLV pi0 E[max(0, gamma (1 - delta) - phi)]
    expected = _beta_expectation(lambda g: max(0.0, _profit(g, 1, 0, pi0, cfg)), cfg)
    assert m["empc"] == pytest.approx(expected, rel=1e-6)
    g_star = (cfg.empc_f / cfg.empc_clv) / (1 - cfg.empc_d / cfg.empc_clv)
    assert m["empc_fraction"] == pytest.approx(pi0 * stats.beta(cfg.empc_alpha, cfg.empc_beta).sf(g_star))
    # with the defaults: 200 * pi0 * (0.3 * 0.95 - 0.005) = 56 pi0 CNY per customer (gamma* is tiny)
    assert m["empc"] == pytest.approx(200 * pi0 * (0.3 * 0.95 - 0.005), rel=1e-3)


def test_empc_of_a_random_classifier(settings):
    """A classifier that cannot rank has the diagonal as its ROC hull, so the only candidates are its
    ends: target nobody (profit 0) or everyone (P(gamma) at F0 = F1 = 1). EMPC = E[max(0, P_all)]:
    0 at a realistic churn rate (contacting everyone costs d + f per non-churner, more than the
    churners bring back even when all accept), positive once churners are common."""
    cfg = settings.evaluation
    rng = np.random.default_rng(2)
    y = (rng.random(20_000) < 0.05).astype(int)
    tie = np.full(y.size, 0.5)  # no ranking at all: the ROC is exactly the diagonal
    assert empc(y, tie, settings) == {"empc": 0.0, "empc_fraction": 0.0}
    # random scores: the sample ROC wobbles around the diagonal, its hull only slightly above it
    assert empc(y, rng.random(y.size), settings)["empc"] < 0.05

    y = (rng.random(20_000) < 0.4).astype(int)
    pi0 = y.mean()
    expected = _beta_expectation(lambda g: max(0.0, _profit(g, 1, 1, pi0, cfg)), cfg)
    assert expected > 0
    m = empc(y, np.full(y.size, 0.5), settings)
    assert m["empc"] == pytest.approx(expected, rel=1e-6)
    # everyone is targeted exactly when P_all(gamma) > 0
    _clv, delta, phi = cfg.empc_clv, cfg.empc_d / cfg.empc_clv, cfg.empc_f / cfg.empc_clv
    g_all = (phi * pi0 + (delta + phi) * (1 - pi0)) / ((1 - delta) * pi0)
    assert m["empc_fraction"] == pytest.approx(stats.beta(cfg.empc_alpha, cfg.empc_beta).sf(g_all))


def test_empc_matches_a_numerical_integration_over_gamma(settings):
    """The closed form over hull segments against a brute force: max over every ROC point, on a fine
    gamma grid, weighted by the Beta density."""
    cfg = settings.evaluation
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.1).astype(int)
    score = rng.normal(y * 1.2, 1.0)
    fpr, tpr, _ = roc_curve(y, score)
    grid = np.linspace(0, 1, 20_001)
    best = np.max(_profit(grid[:, None], tpr[None, :], fpr[None, :], y.mean(), cfg), axis=1)
    numeric = integrate.trapezoid(best * stats.beta(cfg.empc_alpha, cfg.empc_beta).pdf(grid), grid)
    assert empc(y, score, settings)["empc"] == pytest.approx(numeric, rel=1e-4)


def test_empc_grows_as_a_classifier_gets_better(settings):
    """Moving churners to the top of the ranking, one after the other, can only raise the ROC curve,
    so the maximum profit at every gamma, and EMPC, never falls."""
    rng = np.random.default_rng(4)
    y = (rng.random(4000) < 0.08).astype(int)
    score = rng.random(y.size)
    churners = rng.permutation(np.flatnonzero(y))
    values = []
    for step in [*range(0, len(churners), 25), len(churners)]:
        s = score.copy()
        s[churners[:step]] = 1 + np.arange(step) / len(churners)
        values.append(empc(y, s, settings)["empc"])
    assert np.all(np.diff(values) >= -1e-12)
    assert values[0] < 0.05 * values[-1]
    perfect = empc(y, y.astype(float), settings)["empc"]
    assert values[-1] == pytest.approx(perfect)


def test_existing_configs_load_with_evaluation_defaults():
    from core.config import REPO_ROOT, load_settings

    for name in ("default.yaml", "wa_churn.yaml"):
        s = load_settings(REPO_ROOT / "configs" / name)
        assert s.evaluation == EvaluationConfig()
    with pytest.raises(ValueError):
        EvaluationConfig(empc_d=300)
