"""The T-learner per action and the Qini curve, on generated experiments whose true effects are known."""

import numpy as np
import pandas as pd
import pytest

from core.config import LightGBMConfig
from models.uplift_model import LEARNERS, fit_t_learner, qini_curve

CFG = LightGBMConfig(n_estimators=100, learning_rate=0.05, num_leaves=7, min_child_samples=50)


def _experiment(n=12_000, seed=0):
    """Half held out; the rest get action a or b at random. P(churn) 0.3 when x0 > 0 (else 0.02); action
    a saves half of those with x1 > 0 (and does nothing else), action b pushes 10% of x0 <= 0 out."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["x0", "x1", "x2"])
    treated = rng.random(n) < 0.5
    action = np.where(treated, np.where(rng.random(n) < 0.5, "a", "b"), "control")
    p = np.where(X["x0"] > 0, 0.3, 0.02)
    true_a = np.where((X["x0"] > 0) & (X["x1"] > 0), 0.15, 0.0)  # P(stay) gained
    true_b = np.where(X["x0"] <= 0, -0.10, 0.0)
    p = p - np.where(action == "a", true_a, 0.0) - np.where(action == "b", true_b, 0.0)
    churned = rng.random(n) < p
    cost = np.where(action == "a", 50.0, np.where(action == "b", 5.0, 0.0))
    return X, action, treated, churned, cost, true_a, true_b


@pytest.mark.parametrize("learner", ["t", "x"])
def test_the_learners_find_whom_each_action_moves_and_what_it_costs(learner):
    X, action, treated, churned, cost, true_a, true_b = _experiment()
    model = LEARNERS[learner](X, action, treated, churned, cost, CFG, min_treated=50)
    assert model.actions == ["a", "b"] and model.cost == {"a": 50.0, "b": 5.0}
    assert model.n_train["control"] == (~treated).sum()
    up = model.uplift(X)
    moved = true_a > 0
    assert up.loc[moved, "a"].mean() == pytest.approx(0.15, abs=0.05)
    assert abs(up.loc[~moved, "a"].mean()) < 0.03
    assert up.loc[true_b < 0, "b"].mean() == pytest.approx(-0.10, abs=0.04)
    # worth 1000 CNY: a pays where it saves (0.15 x 1000 - 50), nowhere else; b never pays
    best = model.best(X, np.full(len(X), 100.0), value_months=10)
    assert (best.action[moved] == "a").mean() > 0.8
    assert np.median(best.net_value[moved]) == pytest.approx(100, abs=40)
    assert (best.net_value[~moved] < 0).mean() > 0.8


def test_an_action_with_too_few_treated_gets_no_model_and_no_control_is_an_error():
    X, action, treated, churned, cost, *_ = _experiment(n=2000)
    action = np.where(action == "b", "rare", action)
    action[np.flatnonzero(action == "rare")[30:]] = "a"
    model = fit_t_learner(X, action, treated, churned, cost, CFG, min_treated=50)
    assert model.actions == ["a"]
    with pytest.raises(ValueError, match="control work orders"):
        fit_t_learner(X, action, np.ones(len(X), bool), churned, cost, CFG)


def test_the_qini_curve_by_hand_and_its_coefficient():
    # sorted by score: T stays, C churns, T churns, C stays
    curve = qini_curve([4, 3, 2, 1], [True, False, True, False], [True, False, False, True])
    # gain_k = stayers_T - stayers_C x n_T / n_C: 1, 1 - 0, 1 - 0 x 2/1, 1 - 1 x 2/2
    assert curve.gain.tolist() == [0, 1, 1, 1, 0]
    assert curve.share.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert curve.total == 0 and curve.coefficient == pytest.approx(0.75 / 4)


def test_the_true_effect_has_a_positive_qini_and_a_random_order_about_none():
    X, action, treated, churned, _, true_a, _ = _experiment(seed=1)
    keep = action != "b"
    good = qini_curve(true_a[keep], treated[keep], ~churned[keep])
    noise = qini_curve(np.random.default_rng(2).random(keep.sum()), treated[keep], ~churned[keep])
    assert good.coefficient > 0.003 and abs(noise.coefficient) < good.coefficient / 3
