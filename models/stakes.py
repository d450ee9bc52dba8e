"""What is at stake in a warning: risk tier, monthly value, expected loss and VIP tier.

DOMAIN.md: retention capacity is finite and "the list must be ranked by what is at stake, not just
by probability". The endpoint and the nightly list both call these, so a warning reads the same
wherever it comes from. Value is the subscriber's own monthly revenue (``warnings.value_feature``,
ARPU by default); expected loss = calibrated probability x value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.config import WarningConfig

RISK_TIERS = ("high", "medium", "low")


def risk_tier(probability: np.ndarray, cfg: WarningConfig) -> np.ndarray:
    """'high' / 'medium' / 'low' by the configured calibrated-probability thresholds."""
    p = np.asarray(probability, dtype=float)
    return np.where(p >= cfg.high_risk, "high", np.where(p >= cfg.medium_risk, "medium", "low"))


def value_at_stake(X: pd.DataFrame, cfg: WarningConfig) -> np.ndarray:
    """Monthly value per row (NaN when the input has no value column, e.g. a table without one)."""
    if cfg.value_feature not in X.columns:
        return np.full(len(X), np.nan)
    return pd.to_numeric(X[cfg.value_feature], errors="coerce").to_numpy(dtype=float)


def vip_tier(value: np.ndarray, cfg: WarningConfig) -> np.ndarray:
    """The highest VIP tier whose ``min_value`` the monthly value reaches, else ``non_vip_tier``."""
    v = np.asarray(value, dtype=float)
    out = np.full(len(v), cfg.non_vip_tier, dtype=object)
    for tier in reversed(cfg.vip_tiers):  # lowest first, so higher tiers overwrite
        out[v >= tier.min_value] = tier.name
    return out
