"""What retention actions do, in the simulator (``data.treatment``; docs/retention-loop.md).

The truth is a function of each subscriber's simulated intent (``data/truth/intents.parquet``) on the
list date D, so it holds for any list: a subscriber *would churn* within the horizon (``y0``) when
the intent ends in churn on a day in [D, D + horizon); the intent is *under way* when D lies in its
lead-up; a *content* subscriber has neither, and a share ``sleeping_dog_share`` of them (by a hash of
the subscriber, so the same ones on every list) are sleeping dogs a contact can push out.

A work order with action ``a`` reaches the subscriber with probability ``contact_rate``; a reached
would-be churner stays with probability ``save[a][cause]``; a reached sleeping dog leaves with
probability ``provoke[a]``. The true individual uplift (retention probability with the action minus
without it) is therefore::

    uplift_a = contact_rate x (y0 x save[a][cause] - sleeping_dog x provoke[a])

:func:`true_uplift` returns it per action; ``churn generate`` writes it for every snapshot and the
default list date to ``data/truth/treatment_effects.parquet``, and ``churn evaluate`` computes it for
the evaluated lists to set beside its estimates. :func:`play_forward` draws what happened (reached,
saved, provoked, accepted the offer, the churn date) from hashes of (subscriber, list date), so
replaying a list gives the same outcomes.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from core.config import Settings, TreatmentConfig
from core.hashing import hash_uniform

TRUTH_FILE = "treatment_effects.parquet"


def _treatment(settings: Settings) -> TreatmentConfig:
    cfg = settings.data.treatment
    if cfg is None:
        raise ValueError("data.treatment is not set: the simulator has no truth of what actions do")
    return cfg


def state_on(intents: pd.DataFrame, date: dt.date, settings: Settings) -> pd.DataFrame:
    """Per subscriber still active on ``date``: cause, ``y0`` (churns within the horizon without a
    contact), its churn date, ``under_way``, ``sleeping_dog``."""
    d = pd.Timestamp(date)
    horizon = pd.Timedelta(days=settings.features.label_horizon_days)
    onset, end = intents["onset_date"], intents["end_date"]
    churns = intents["churns"].to_numpy(dtype=bool)
    active = ~(churns & (end < d).to_numpy())
    y0 = churns & ((end >= d) & (end < d + horizon)).to_numpy()
    under_way = ((onset <= d) & (end > d)).to_numpy()
    share = _treatment(settings).sleeping_dog_share
    dog = hash_uniform(intents["subscriber_id"], f"{settings.data.seed}|sleeping-dog") < share
    out = pd.DataFrame(
        {
            "subscriber_id": intents["subscriber_id"].to_numpy(),
            "churn_cause": intents["churn_cause"].to_numpy(),
            "y0": y0,
            "y0_churn_date": end.where(y0).to_numpy(),
            "under_way": under_way,
            "sleeping_dog": dog & ~under_way & ~y0,
        }
    )
    return out[active].reset_index(drop=True)


def true_uplift(state: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """``state`` with ``uplift_<action>`` per action: the true change in P(stay within the horizon)."""
    cfg = _treatment(settings)
    out = state.copy()
    y0 = state["y0"].to_numpy(dtype=float)
    dog = state["sleeping_dog"].to_numpy(dtype=float)
    for action, eff in cfg.actions.items():
        save = state["churn_cause"].map(eff.save).fillna(0.0).to_numpy()
        out[f"uplift_{action}"] = cfg.contact_rate * (y0 * save - dog * eff.provoke)
    return out


def truth_for_dates(intents: pd.DataFrame, dates: list[dt.date], settings: Settings) -> pd.DataFrame:
    """:func:`true_uplift` for each date, long: one row per (date, active subscriber)."""
    frames = [
        true_uplift(state_on(intents, d, settings), settings).assign(date=pd.Timestamp(d)) for d in dates
    ]
    return pd.concat(frames, ignore_index=True)


def truth_dates(settings: Settings) -> list[dt.date]:
    """The dates ``churn generate`` writes the truth for: every snapshot and the default list date."""
    return sorted({*settings.features.snapshots, settings.data.end_date})


def read_intents(settings: Settings) -> pd.DataFrame:
    path = settings.truth_dir / "intents.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no simulator truth (run `churn generate`)")
    return pd.read_parquet(path)


def play_forward(
    orders: pd.DataFrame, state: pd.DataFrame, date: dt.date, settings: Settings
) -> pd.DataFrame:
    """What each work order led to: ``orders`` (subscriber_id, group, action) with contacted,
    offer_accepted, cost, churned, churn_date. Control orders are never worked."""
    cfg = _treatment(settings)
    s = orders[["subscriber_id"]].merge(state, on="subscriber_id", how="left", validate="one_to_one")
    if s["y0"].isna().any():
        missing = s.loc[s["y0"].isna(), "subscriber_id"].head(3).tolist()
        raise ValueError(
            f"work orders of subscribers the simulator has no state for on {date}, e.g. {missing}"
        )
    u = {k: hash_uniform(orders["subscriber_id"], f"{settings.data.seed}|{date}|{k}") for k in _DRAWS}
    action = orders["action"].to_numpy()
    eff = {a: cfg.actions[a] for a in np.unique(action) if a in cfg.actions}
    par = {
        k: np.array([getattr(eff[a], k) if a in eff else 0.0 for a in action])
        for k in ("contact_cost", "offer_cost", "provoke", "windfall_accept")
    }
    save = np.array(
        [eff[a].save.get(c, 0.0) if a in eff else 0.0 for a, c in zip(action, s["churn_cause"], strict=True)]
    )
    treated = (orders["group"] == "treatment").to_numpy() & np.isin(action, list(eff))
    y0, dog = s["y0"].to_numpy(dtype=bool), s["sleeping_dog"].to_numpy(dtype=bool)
    contacted = treated & (u["contact"] < cfg.contact_rate)
    saved = contacted & y0 & (u["save"] < save)
    provoked = contacted & dog & (u["provoke"] < par["provoke"])
    has_offer = par["offer_cost"] > 0
    accepted = has_offer & contacted & (saved | (~y0 & ~provoked & (u["accept"] < par["windfall_accept"])))
    provoked_on = pd.Timestamp(date) + pd.to_timedelta(
        np.floor(u["day"] * settings.features.label_horizon_days), unit="D"
    )
    churn_date = pd.Series(pd.to_datetime(s["y0_churn_date"]).to_numpy()).where(y0 & ~saved)
    churn_date = churn_date.where(~provoked, pd.Series(provoked_on))
    return pd.DataFrame(
        {
            "contacted": contacted,
            "offer_accepted": accepted,
            "cost": np.where(treated, par["contact_cost"], 0.0) + np.where(accepted, par["offer_cost"], 0.0),
            "contact_cost": np.where(treated, par["contact_cost"], 0.0),
            "offer_cost": np.where(accepted, par["offer_cost"], 0.0),
            "churned": (y0 & ~saved) | provoked,
            "churn_date": churn_date.to_numpy(),
        }
    )


_DRAWS = ("contact", "save", "provoke", "accept", "day")
