"""A simulated shift for monitoring to find (``data.campaign``; docs/monitoring.md).

From ``campaign.start`` a competitor runs a campaign. It adds competitor churn intents at
``extra_monthly_churn`` among subscribers who had none, with short lead-ups (``lead_days``) that
mostly show faintly (``weak_share``): the offer converts fast, so the signature the model learnt
(weeks of hotline calls, usage drop, off-net lean) barely shows before the port-out. And a share
``reach`` of the stayers ring the competitor's hotline about the offer in its first
``RING_DAYS`` days, and stay: the model's strongest competitor signal now also marks loyal
subscribers. So the competitor-hotline features drift, and the matured ranking gets worse.

Both draw from random streams of their own, and without ``data.campaign`` nothing changes: the
generator's output is the same bytes as without this module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.config import DataConfig

RING_DAYS = 14  # reached stayers ring the competitor's hotline in the campaign's first two weeks


def campaign_intents(cfg: DataConfig, chunk: int, it: pd.DataFrame) -> pd.DataFrame:
    """``it`` (the chunk's intents) with the campaign's extra competitor intents."""
    c = cfg.campaign
    if c is None or c.extra_monthly_churn == 0:
        return it
    rng = np.random.default_rng([cfg.seed, chunk, 4])
    n, d0 = len(it), (c.start - cfg.start_date).days
    daily = -np.log1p(-c.extra_monthly_churn) / 30.4
    onset = d0 + np.floor(rng.exponential(1 / daily, n)).astype(np.int64)
    lead = rng.integers(c.lead_days[0], c.lead_days[1] + 1, n)
    churns = rng.random(n) < cfg.intent_churn_share
    weak = rng.random(n) < c.weak_share
    new = (it["churn_cause"] == "none").to_numpy() & (onset < cfg.n_days)
    out = it.copy()
    out.loc[new, "churn_cause"] = "competitor"
    out.loc[new, "onset_day"] = onset[new]
    out.loc[new, "end_day"] = onset[new] + lead[new]
    out.loc[new, "lead_days"] = lead[new]
    out.loc[new, "churns"] = churns[new]
    out.loc[new, "weak_signal"] = weak[new]
    return out


def campaign_hotline_calls(
    cfg: DataConfig, chunk: int, it: pd.DataFrame, n_days: int
) -> tuple[list[tuple[int, int]], list[str]]:
    """(subscriber row, day) of each stayer's call to a competitor hotline about the offer, and the number."""
    c = cfg.campaign
    if c is None or c.reach == 0:
        return [], []
    rng = np.random.default_rng([cfg.seed, chunk, 5])
    d0 = (c.start - cfg.start_date).days
    reached = np.flatnonzero((it["churn_cause"] == "none").to_numpy() & (rng.random(len(it)) < c.reach))
    calls = [(int(i), int(d)) for i in reached for d in d0 + rng.integers(0, RING_DAYS, rng.integers(1, 4))]
    calls = [(i, d) for i, d in calls if 0 <= d < n_days]
    return calls, [str(x) for x in rng.choice(cfg.competitor_hotlines, len(calls))]
