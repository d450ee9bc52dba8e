"""Risk tier, value at stake and VIP tier: one definition for the endpoint and the nightly list."""

import numpy as np
import pandas as pd
import pytest

from core.config import WarningConfig
from models import stakes


def test_risk_tiers_follow_the_thresholds():
    cfg = WarningConfig(high_risk=0.5, medium_risk=0.2)
    assert stakes.risk_tier([0.0, 0.19, 0.2, 0.49, 0.5, 1.0], cfg).tolist() == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]


def test_vip_tier_is_the_highest_tier_reached_and_missing_value_is_mass():
    cfg = WarningConfig()
    value = stakes.value_at_stake(pd.DataFrame({"arpu_3m": [0, 49.9, 50, 100, 199, 200, 900, None]}), cfg)
    assert stakes.vip_tier(value, cfg).tolist() == [
        "mass",
        "mass",
        "silver",
        "gold",
        "gold",
        "diamond",
        "diamond",
        "mass",
    ]


def test_a_table_without_the_value_column_has_no_value():
    assert np.isnan(stakes.value_at_stake(pd.DataFrame({"x": [1.0]}), WarningConfig())).all()


@pytest.mark.parametrize(
    "bad",
    [
        dict(high_risk=0.2, medium_risk=0.3),
        dict(
            vip_tiers=[
                {"name": "a", "min_value": 1, "subscribers_per_manager": 5},
                {"name": "b", "min_value": 9, "subscribers_per_manager": 5},
            ]
        ),
    ],
)
def test_inconsistent_tiers_are_refused(bad):
    with pytest.raises(ValueError):
        WarningConfig(**bad)
