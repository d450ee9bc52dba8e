"""Every nightly score kept (``models/score_store.py``): one partition per date, atomic, retention."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from core.config import load_settings
from features.catalogue import FEATURE_NAMES
from models.score_store import keep_scores, read_scores, scored_dates


def _feats(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"subscriber_id": [f"S{i:07d}" for i in range(n)]} | {f: rng.random(n) for f in FEATURE_NAMES}
    )


def test_every_row_is_kept_with_its_features_and_old_dates_expire(tmp_path, make_config):
    settings = load_settings(make_config(tmp_path, monitoring={"retention_days": 10}))
    feats, proba = _feats(50), np.linspace(0, 1, 50)
    day = dt.date(2026, 5, 1)
    kept = keep_scores(settings, day, "churnwarn", "4", feats, proba, np.array([49, 3]))
    out = read_scores(settings, day)
    assert kept.rows == len(out) == 50 and out["listed"].sum() == 2 and out["listed"].iloc[[3, 49]].all()
    assert out["model_version"].unique().tolist() == ["4"]
    np.testing.assert_allclose(out["churn_probability"], proba)
    np.testing.assert_allclose(out[FEATURE_NAMES], feats[FEATURE_NAMES])
    assert kept.path == settings.workdir / "monitoring" / "scores" / "date=2026-05-01" / "scores.parquet"
    keep_scores(settings, day + dt.timedelta(days=5), "churnwarn", "4", feats, proba, np.array([], int))
    later = keep_scores(settings, day + dt.timedelta(days=11), "churnwarn", "4", feats, proba, np.array([0]))
    assert later.removed == (day,)
    assert scored_dates(settings) == [day + dt.timedelta(days=5), day + dt.timedelta(days=11)]
    assert read_scores(settings, day) is None
    assert not list(settings.workdir.glob("monitoring/scores/**/.*.tmp"))
