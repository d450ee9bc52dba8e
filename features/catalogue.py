"""The feature catalogue: every feature defined once, with its meaning, unit and the signal it serves.

Feast schemas, model inputs, reason sentences and documentation all read this list, so adding a
feature here is the only place its name and meaning are written.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    name: str
    meaning: str
    unit: str
    signal: str  # which operator signal (DOMAIN.md) or attribute it measures
    risk: int = 0  # +1: higher value means more churn risk, -1: lower means more risk, 0: either


CATALOGUE: tuple[Feature, ...] = (
    Feature("minutes_recent_per_day", "outgoing+incoming call minutes per day over the recent window", "min/day", "usage", risk=-1),
    Feature("minutes_baseline_per_day", "call minutes per day over the baseline window before the recent one", "min/day", "usage"),
    Feature("minutes_change_pct", "change of daily minutes, recent vs. baseline window (negative = drop)", "%", "usage_drop", risk=-1),
    Feature("calls_change_pct", "change of daily call count, recent vs. baseline window (negative = drop)", "%", "usage_drop", risk=-1),
    Feature("zero_call_days_30d", "days without any call in the last 30 days", "days", "zero_call_streak", risk=1),
    Feature("longest_zero_streak_30d", "longest run of consecutive zero-call days in the last 30 days", "days", "zero_call_streak", risk=1),
    Feature("days_since_last_call", "days since the last call (capped at the lookback)", "days", "zero_call_streak", risk=1),
    Feature("competitor_hotline_calls_30d", "calls to competitors' service hotlines (10086/10010) in the last 30 days", "calls", "competitor_hotline", risk=1),
    Feature("own_hotline_calls_30d", "calls to the operator's own hotline (10000) in the last 30 days", "calls", "service_contact", risk=1),
    Feature("complaints_90d", "complaints filed in the last 90 days", "complaints", "complaints", risk=1),
    Feature("days_to_contract_end", "days until the postpaid contract ends (0 if ended; 365 cap, prepaid 365)", "days", "contract_expiry", risk=-1),
    Feature("tenure_days", "days since activation", "days", "tenure", risk=-1),
    Feature("is_postpaid", "1 for postpaid, 0 for prepaid", "flag", "plan"),
    Feature("monthly_charge", "latest monthly bill issued before the snapshot", "CNY", "value"),
    Feature("bill_change_pct", "latest bill vs. the mean of the three before it", "%", "bill_shock", risk=1),
    Feature("arrears", "amount in arrears on the latest bill", "CNY", "bill_shock", risk=1),
)

FEATURE_NAMES: list[str] = [f.name for f in CATALOGUE]
BY_NAME: dict[str, Feature] = {f.name: f for f in CATALOGUE}
MONOTONE: list[int] = [f.risk for f in CATALOGUE]  # LightGBM monotone constraints, in FEATURE_NAMES order


def markdown_table() -> str:
    """The catalogue as a Markdown table (the README's feature reference is generated from this)."""
    return "\n".join(f"| `{f.name}` | {f.meaning} | {f.unit} |" for f in CATALOGUE)


if __name__ == "__main__":  # python -m features.catalogue
    print(markdown_table())
