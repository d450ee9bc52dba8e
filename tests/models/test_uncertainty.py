"""Honest uncertainty on small tables: bootstrap intervals, repeated stratified CV, decision noise.

Small generated tables; the real-data run is tests/models/test_customer_table_training.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from core.config import UncertaintyConfig
from models.uncertainty import Interval, Margin, _interval, average_precision, roc_auc

CHEAP = UncertaintyConfig(bootstrap_resamples=300, cv_folds=3, cv_repeats=2)


@pytest.mark.parametrize("decimals", [0, 1, 2, 6])
def test_vectorised_metrics_equal_scikit_learn_ties_included(decimals):
    rng = np.random.default_rng(decimals)
    ys, ss = [], []
    for _ in range(20):
        y = (rng.random(150) < 0.3).astype(int)
        s = np.round(rng.random(150) * 0.6 + 0.4 * y * rng.random(150), decimals)  # many ties when rounded
        ys.append(y), ss.append(s)
        assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))
    # a batch of resamples at once, as scipy.stats.bootstrap passes them
    np.testing.assert_allclose(
        roc_auc(np.array(ys), np.array(ss)), [roc_auc_score(y, s) for y, s in zip(ys, ss, strict=True)]
    )
    np.testing.assert_allclose(
        average_precision(np.array(ys), np.array(ss)),
        [average_precision_score(y, s) for y, s in zip(ys, ss, strict=True)],
    )


def _scores(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(int)
    good = y * 0.8 + rng.random(n)  # separates well
    return y, good, rng


def test_interval_holds_the_estimate_and_narrows_with_more_rows():
    widths = []
    for n in (300, 3000):
        y, good, _ = _scores(n)
        i = _interval(CHEAP, 7, "roc_auc", y, good)
        assert i.low < i.estimate < i.high and i.estimate == pytest.approx(roc_auc_score(y, good))
        widths.append(i.high - i.low)
    assert widths[1] < widths[0] / 2  # ~1/sqrt(n)
    again = _interval(CHEAP, 7, "roc_auc", y, good)
    assert again == i  # seeded


def test_a_margin_inside_the_noise_says_so_and_a_real_one_does_not():
    y, good, rng = _scores(600)
    twin = good + rng.normal(0, 0.02, len(y))  # the same model, give or take
    weak = good + rng.normal(0, 1.5, len(y))  # a much worse one
    close = Margin("a", "b", "roc_auc", _interval(CHEAP, 7, "roc_auc", y, good, twin))
    far = Margin("a", "c", "roc_auc", _interval(CHEAP, 7, "roc_auc", y, good, weak))
    assert close.inside_noise and not far.inside_noise
    assert close.sentence(0.95).endswith("inside the noise")
    assert "95% CI of the paired difference" in far.sentence(0.95) and far.sentence(0.95).endswith(
        "outside the noise"
    )
    assert Margin("a", "b", "roc_auc", Interval(0.01, 0.0, 0.02)).inside_noise  # a bound at 0 is inside


def test_assess_on_a_small_generated_table(tmp_path):
    """Both candidates fitted on a generated table: an interval and a CV figure each, the winner's margin
    over the other candidate and over a champion that scores the rows the same way (inside the noise)."""
    from core.config import Settings
    from models.candidates import build_table_candidates, fit_candidate
    from models.champion import Incumbent, decide
    from models.training_data import TrainingSet
    from models.uncertainty import assess

    rng = np.random.default_rng(5)
    n = 900
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y", "z"], n)})
    y = (X["a"] + (X["c"] == "x") + rng.normal(size=n) > 1).astype(int).to_numpy()
    settings = Settings.model_validate(
        {
            "workdir": str(tmp_path),
            "source": {
                "name": "gen",
                "path": "gen.csv",
                "id_column": "id",
                "label_column": "churn",
                "positive_label": 1,
                "negative_label": 0,
                "numeric_columns": ["a", "b"],
                "categorical_columns": ["c"],
                "uncertainty": CHEAP.model_dump(),
            },
            "training": {"lightgbm": {"n_estimators": 30, "num_leaves": 4, "min_child_samples": 20}},
        }
    )
    part = {"train": slice(0, 500), "valid": slice(500, 650), "test": slice(650, n)}
    data = TrainingSet(
        **{f"X_{k}": X.iloc[v].reset_index(drop=True) for k, v in part.items()},
        **{f"y_{k}": y[v] for k, v in part.items()},
        features=["a", "b", "c"],
        data_version="gen",
        params={},
        held_out="gen",
        split="gen",
        categories={"c": ["x", "y", "z"]},
        source="gen",
    )
    cands = build_table_candidates(settings, ["a", "b"], ["c"])
    fitted = {k: fit_candidate(settings, k, e, data, X.head(50), calibrate=True) for k, e in cands.items()}
    probs = {k: f.model.predict_proba(data.X_test) for k, f in fitted.items()}
    decision = decide({k: roc_auc_score(data.y_test, p) for k, p in probs.items()}, None)
    champion = Incumbent("1", "logistic", 0.0, proba=probs[decision.winner] + 1e-9)
    u = assess(settings, data, fitted, probs, decision, champion)
    assert u.cv_rows == 650 and set(u.candidates) == {"logistic", "lightgbm"}
    for c in u.candidates.values():
        assert set(c.intervals) == set(c.cv) == {"roc_auc", "pr_auc", "top_decile_lift"}
        assert len(c.cv["roc_auc"].scores) == 6 and c.cv["roc_auc"].sd > 0  # 3 folds x 2 repeats
        assert c.intervals["roc_auc"].low <= c.intervals["roc_auc"].estimate <= c.intervals["roc_auc"].high
    others = [m.other for m in u.margins]
    assert others == [next(k for k in fitted if k != decision.winner), "champion v1"]
    assert u.margins[1].inside_noise and u.decision_inside_noise  # the same scores as the champion's
    report = u.report()
    assert report["decision_inside_noise"] and report["cv"] == "repeated stratified 3-fold x 2"
    assert set(u.metrics("logistic")) >= {
        "roc_auc_ci_low",
        "roc_auc_ci_high",
        "cv_roc_auc_mean",
        "cv_roc_auc_sd",
    }
