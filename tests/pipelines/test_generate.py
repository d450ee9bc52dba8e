import numpy as np
import pytest
import pandas as pd

from pipelines.config import load_settings
from pipelines.generate import generate


@pytest.fixture
def tables(make_config):
    def _tables(workdir):
        return generate(load_settings(make_config(workdir, data={"n_subscribers": 1500, "seed": 3})))

    return _tables


def test_same_seed_same_data(tmp_path, tables):
    a, b = tables(tmp_path / "a"), tables(tmp_path / "b")
    pd.testing.assert_frame_equal(a.cdr, b.cdr)
    pd.testing.assert_frame_equal(a.churn_events, b.churn_events)


def test_churners_carry_the_operator_signals(tmp_path, tables):
    t = tables(tmp_path)
    truth = t.truth.set_index("subscriber_id")
    months = (pd.Timestamp("2026-07-01") - pd.Timestamp("2025-12-01")).days / 30.4
    monthly = 1 - (1 - len(t.churn_events) / len(t.subscribers)) ** (1 / months)
    assert 0.02 < monthly < 0.07  # around the configured 4.5%: half-year churn 15-30%

    hot = t.cdr[t.cdr["other_party"].isin(["10086", "10010"])]
    callers = set(hot["subscriber_id"])
    comp = truth.index[truth["churn_cause"] == "competitor"]
    stay = truth.index[truth["churn_cause"] == "none"]
    assert np.mean([s in callers for s in comp]) > 0.6
    assert 0 < np.mean([s in callers for s in stay]) < 0.1  # loyal callers exist: a confounder

    complainers = set(t.complaints["subscriber_id"])
    diss = truth.index[truth["churn_cause"] == "dissatisfaction"]
    assert np.mean([s in complainers for s in diss]) > 3 * np.mean([s in complainers for s in stay])


def test_no_activity_after_churn(tmp_path, tables):
    t = tables(tmp_path)
    last_call = t.cdr.groupby("subscriber_id")["start_time"].max()
    ev = t.churn_events.set_index("subscriber_id")["event_date"]
    common = ev.index.intersection(last_call.index)
    assert (last_call[common] < ev[common]).all()
