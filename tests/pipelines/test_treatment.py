"""The simulator's truth of retention actions: who would churn, who is a sleeping dog, what a contact does."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from core.config import load_settings
from core.hashing import hash_uniform
from pipelines.treatment import play_forward, state_on, true_uplift

D = dt.date(2026, 7, 1)


def _intents(n: int) -> pd.DataFrame:
    """Half would-be churners (contract expiry, ending in the horizon), half without an intent."""
    ids = [f"S{i:07d}" for i in range(n)]
    churner = np.arange(n) % 2 == 0
    end = pd.Series(pd.Timestamp(D) + pd.Timedelta(days=10), index=range(n)).where(churner)
    return pd.DataFrame(
        {
            "subscriber_id": ids,
            "churn_cause": np.where(churner, "contract_expiry", "none"),
            "churns": churner,
            "onset_date": end - pd.Timedelta(days=30),
            "end_date": end,
        }
    )


def test_true_uplift_is_saves_of_would_be_churners_minus_provoked_sleeping_dogs():
    settings = load_settings()
    cfg = settings.data.treatment
    state = true_uplift(state_on(_intents(2000), D, settings), settings)
    churners, content = state[state["y0"]], state[~state["y0"]]
    expected = cfg.contact_rate * cfg.actions["renewal_offer"].save["contract_expiry"]
    assert np.allclose(churners["uplift_renewal_offer"], expected)
    assert not churners["sleeping_dog"].any()
    dogs = content["sleeping_dog"]
    assert 0.1 < dogs.mean() < 0.2  # sleeping_dog_share 0.15 of the content subscribers
    assert np.allclose(
        content.loc[dogs, "uplift_renewal_offer"], -cfg.contact_rate * cfg.actions["renewal_offer"].provoke
    )
    assert (content.loc[~dogs, [c for c in state if c.startswith("uplift_")]] == 0).all().all()


def test_a_subscriber_who_left_before_the_date_has_no_state():
    settings = load_settings()
    it = _intents(4)
    it.loc[0, "end_date"] = pd.Timestamp(D) - pd.Timedelta(days=3)
    assert "S0000000" not in set(state_on(it, D, settings)["subscriber_id"])


def test_played_forward_outcomes_average_to_the_true_uplift_and_replay_the_same():
    settings = load_settings()
    state = true_uplift(state_on(_intents(20_000), D, settings), settings)
    group = np.where(hash_uniform(state["subscriber_id"], "test") < 0.5, "treatment", "control")
    orders = pd.DataFrame(
        {"subscriber_id": state["subscriber_id"], "group": group, "action": "renewal_offer"}
    )
    out = play_forward(orders, state, D, settings)
    stay = ~out["churned"].to_numpy()
    t, c = group == "treatment", group == "control"
    uplift = stay[t].mean() - stay[c].mean()
    se = np.sqrt(stay[t].var() / t.sum() + stay[c].var() / c.sum())
    assert abs(uplift - state["uplift_renewal_offer"].mean()) < 3 * se
    assert not out.loc[c, ["contacted", "offer_accepted"]].any().any() and (out.loc[c, "cost"] == 0).all()
    assert (
        out.loc[out["churned"], "churn_date"].notna().all()
        and out.loc[~out["churned"], "churn_date"].isna().all()
    )
    pd.testing.assert_frame_equal(out, play_forward(orders, state, D, settings))
