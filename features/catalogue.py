"""The feature catalogue: every feature defined once, with its meaning, unit, window and signal.

Feast schemas, model inputs, monotone constraints, reason sentences and the documentation all read
this list, so adding a feature here is the only place its name and meaning are written. The values
come from one engine-neutral SQL query (``features/compute.py``).

Windows: "last N d" is the N calendar days before the snapshot T (T-N .. T-1); "recent" is the last
``features.recent_days`` (default 14) days and "baseline" the ``features.baseline_days`` (default 60)
days before those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from features import call_graph


@dataclass(frozen=True)
class Feature:
    name: str
    meaning: str
    unit: str
    window: str
    signal: str  # which operator signal (DOMAIN.md) or attribute it measures
    risk: int = 0  # +1: higher value means more churn risk, -1: lower means more risk, 0: either
    # the model is held to ``risk`` (a LightGBM monotone constraint) unless another group shares the
    # value with the opposite risk: prepaid subscribers' 365 "days to contract end" is the value of
    # postpaid contracts far from their end, and prepaid churn more. Held there, the model loses
    # 0.02 ROC-AUC on 60,000 simulated subscribers (docs/data.md)
    monotone: bool = True
    lo: float | None = None  # the range every value must lie in (the feature table's validation suite)
    hi: float | None = None


_R_B = "recent vs. baseline"
# graph features: departures in the last N days of the on-net contacts of the baseline window; the
# closest contacts are the `features.graph_top_contacts` (10) on-net numbers with the most calls there
_LEFT_30, _LEFT_60 = ("last 30 d (contacts: baseline)", "last 60 d (contacts: baseline)")
CATALOGUE: tuple[Feature, ...] = (
    # usage drop (业务量突降)
    Feature(
        "minutes_recent_per_day",
        "call minutes (in + out) per day",
        "min/day",
        "recent",
        "usage",
        risk=-1,
        lo=0,
    ),
    Feature(
        "minutes_baseline_per_day", "call minutes (in + out) per day", "min/day", "baseline", "usage", lo=0
    ),
    Feature(
        "minutes_change_pct",
        "change of daily call minutes (negative = drop)",
        "%",
        _R_B,
        "usage_drop",
        risk=-1,
        lo=-100,
    ),
    Feature(
        "minutes_diff_per_day",
        "daily call minutes, recent minus baseline",
        "min/day",
        _R_B,
        "usage_drop",
        risk=-1,
    ),
    Feature(
        "out_minutes_change_pct",
        "change of daily outgoing minutes",
        "%",
        _R_B,
        "usage_drop",
        risk=-1,
        lo=-100,
    ),
    Feature(
        "in_minutes_change_pct", "change of daily incoming minutes", "%", _R_B, "usage_drop", risk=-1, lo=-100
    ),
    Feature("calls_change_pct", "change of daily number of calls", "%", _R_B, "usage_drop", risk=-1, lo=-100),
    Feature(
        "calls_change_pct_7d",
        "change of daily number of calls, last 7 days vs. the baseline (negative = drop)",
        "%",
        "last 7 d vs. baseline",
        "usage_drop",
        risk=-1,
        lo=-100,
    ),
    Feature(
        "minutes_trend_pct_8w",
        "least-squares slope of weekly minutes, as % of the weekly mean",
        "%/week",
        "last 56 d (8 weeks)",
        "usage_drop",
        risk=-1,
    ),
    Feature(
        "contacts_recent",
        "distinct numbers called or calling (by salted hash)",
        "numbers",
        "recent",
        "usage",
        risk=-1,
        lo=0,
    ),
    Feature(
        "contacts_change_pct",
        "change of distinct contacts vs. the window of the same length before",
        "%",
        "recent vs. the same length before",
        "usage_drop",
        risk=-1,
        lo=-100,
    ),
    # zero-call days (多日零通话)
    Feature(
        "zero_call_days_7d",
        "days without any call",
        "days",
        "last 7 d",
        "zero_call_streak",
        risk=1,
        lo=0,
        hi=7,
    ),
    Feature(
        "zero_call_days_30d",
        "days without any call",
        "days",
        "last 30 d",
        "zero_call_streak",
        risk=1,
        lo=0,
        hi=30,
    ),
    Feature(
        "longest_zero_streak_30d",
        "longest run of consecutive zero-call days",
        "days",
        "last 30 d",
        "zero_call_streak",
        risk=1,
        lo=0,
        hi=30,
    ),
    Feature(
        "days_since_last_call",
        "days since the last call (capped at the lookback)",
        "days",
        "last 90 d",
        "zero_call_streak",
        risk=1,
        lo=1,
    ),
    # competitor hotlines (拨打竞争对手客服电话) and own service contact
    Feature(
        "competitor_hotline_calls_7d",
        "calls to competitors' service hotlines (10086/10010)",
        "calls",
        "last 7 d",
        "competitor_hotline",
        risk=1,
        lo=0,
    ),
    Feature(
        "competitor_hotline_calls_30d",
        "calls to competitors' service hotlines (10086/10010)",
        "calls",
        "last 30 d",
        "competitor_hotline",
        risk=1,
        lo=0,
    ),
    Feature(
        "competitor_hotline_calls_90d",
        "calls to competitors' service hotlines (10086/10010)",
        "calls",
        "last 90 d",
        "competitor_hotline",
        risk=1,
        lo=0,
    ),
    Feature(
        "days_since_competitor_hotline",
        "days since the last competitor-hotline call (90 = none)",
        "days",
        "last 90 d",
        "competitor_hotline",
        risk=-1,
        lo=1,
        hi=90,
    ),
    Feature(
        "own_hotline_calls_7d",
        "calls to the operator's own service numbers (10000)",
        "calls",
        "last 7 d",
        "service_contact",
        risk=1,
        lo=0,
    ),
    Feature(
        "own_hotline_calls_30d",
        "calls to the operator's own service numbers (10000)",
        "calls",
        "last 30 d",
        "service_contact",
        risk=1,
        lo=0,
    ),
    Feature(
        "own_hotline_calls_90d",
        "calls to the operator's own service numbers (10000)",
        "calls",
        "last 90 d",
        "service_contact",
        risk=1,
        lo=0,
    ),
    Feature(
        "days_since_own_hotline",
        "days since the last call to the operator's own service numbers (90 = none)",
        "days",
        "last 90 d",
        "service_contact",
        risk=-1,
        lo=1,
        hi=90,
    ),
    Feature("complaints_7d", "complaints filed", "complaints", "last 7 d", "complaints", risk=1, lo=0),
    Feature("complaints_30d", "complaints filed", "complaints", "last 30 d", "complaints", risk=1, lo=0),
    Feature("complaints_90d", "complaints filed", "complaints", "last 90 d", "complaints", risk=1, lo=0),
    # contract and plan (协议到期)
    Feature(
        "days_to_contract_end",
        "days until the postpaid contract ends (0 if ended; cap and prepaid 365)",
        "days",
        "at T",
        "contract_expiry",
        risk=-1,
        lo=0,
        hi=365,
        monotone=False,
    ),
    Feature(
        "days_since_contract_end",
        "days since the postpaid contract ended (365 if not ended, capped; prepaid "
        "365): a contract that just ended is a decision point, one that ended long ago is not",
        "days",
        "at T",
        "contract_expiry",
        risk=-1,
        lo=0,
        hi=365,
        monotone=False,
    ),
    Feature(
        "in_renewal_window",
        "1 if a postpaid contract ends within the renewal window (`features.renewal_window_days`)",
        "flag",
        "at T",
        "contract_expiry",
        risk=1,
        lo=0,
        hi=1,
    ),
    Feature("tenure_days", "days since activation", "days", "at T", "tenure", risk=-1, lo=0),
    Feature("is_postpaid", "1 for postpaid, 0 for prepaid", "flag", "at T", "plan", lo=0, hi=1),
    Feature("tariff_fee", "monthly fee of the subscriber's tariff plan", "CNY", "at T", "plan", lo=0),
    # value and billing
    Feature("monthly_charge", "latest monthly bill issued before T", "CNY", "last bill", "value", lo=0),
    Feature("arpu_3m", "mean of the last three monthly bills (ARPU)", "CNY", "last 3 bills", "value", lo=0),
    Feature(
        "arpu_tier",
        "ARPU tier: number of `features.arpu_tiers` thresholds the ARPU reaches (0 = lowest)",
        "tier",
        "last 3 bills",
        "value",
        lo=0,
    ),
    Feature(
        "bill_change_pct",
        "latest bill vs. the mean of the three before it (up: bill shock; down: usage falling)",
        "%",
        "last 4 bills",
        "bill_shock",
    ),
    Feature(
        "arrears", "amount in arrears on the latest bill", "CNY", "last bill", "bill_shock", risk=1, lo=0
    ),
    Feature(
        "days_since_recharge",
        "days since the last top-up, prepaid (capped at 90; postpaid 0)",
        "days",
        "last 90 d",
        "recharge",
        risk=1,
        lo=0,
        hi=90,
    ),
    # social: contacts moving to another network pull subscribers with them
    Feature(
        "offnet_share_recent",
        "share of mobile calls with other networks' numbers",
        "%",
        "recent",
        "social",
        lo=0,
        hi=100,
    ),
    Feature(
        "offnet_share_change",
        "off-net share, recent minus baseline",
        "points",
        _R_B,
        "social",
        risk=1,
        lo=-100,
        hi=100,
    ),
    # the call graph (关系圈分析): closest contacts who left, matched by salted hash (features/call_graph.py)
    Feature(
        "top_contacts_left_30d",
        "closest on-net contacts who left (churn event of our subscriber with that number)",
        "contacts",
        _LEFT_30,
        "contacts_left",
        risk=1,
        lo=0,
    ),
    Feature(
        "top_contacts_left_60d",
        "closest on-net contacts who left (churn event of our subscriber with that number)",
        "contacts",
        _LEFT_60,
        "contacts_left",
        risk=1,
        lo=0,
    ),
    Feature(
        "top_contacts_ported_60d",
        "closest on-net contacts who moved to another network (port-out)",
        "contacts",
        _LEFT_60,
        "contacts_left",
        risk=1,
        lo=0,
    ),
    Feature(
        "top_contacts_left_share_60d",
        "share of the closest on-net contacts who left",
        "%",
        _LEFT_60,
        "contacts_left",
        risk=1,
        lo=0,
        hi=100,
    ),
    Feature(
        "top_contacts_left_call_share_60d",
        "share of the calls with the closest on-net contacts that were with contacts who left (call-weighted)",
        "%",
        _LEFT_60,
        "contacts_left",
        risk=1,
        lo=0,
        hi=100,
    ),
    Feature(
        "calls_to_left_contacts_60d",
        "calls in the baseline window with any on-net contact who has since left",
        "calls",
        _LEFT_60,
        "contacts_left",
        risk=1,
        lo=0,
    ),
    Feature(
        "contacts_moved_off_net_60d",
        "1 if one of the closest on-net contacts moved to another network (port-out)",
        "flag",
        _LEFT_60,
        "contacts_left",
        risk=1,
        lo=0,
        hi=1,
    ),
    Feature(
        "contact_churn_score",
        "on-net contacts who left, weighted by calls and by how recently they left (weight e^(-days/30)): "
        "one label-propagation step over the call graph",
        "%",
        _LEFT_60,
        "contacts_left",
        risk=1,
        lo=0,
        hi=100,
    ),
)

FEATURE_NAMES: list[str] = [f.name for f in CATALOGUE]
BY_NAME: dict[str, Feature] = {f.name: f for f in CATALOGUE}
MONOTONE: list[int] = [
    f.risk if f.monotone else 0 for f in CATALOGUE
]  # LightGBM constraints, FEATURE_NAMES order


def window_spans(feature: Feature, recent_days: int, baseline_days: int) -> tuple[tuple[int, int], ...]:
    """The calendar windows ``feature`` reads, as (first, last) days before T (1 is T-1), one per part
    of a comparison; none for a value as of T or per bill. Monitoring uses them to know which
    features a holiday moves (models/drift.py)."""
    spans = []
    for part in feature.window.split(" vs. "):
        if m := re.fullmatch(r"last (\d+) d.*", part):
            spans.append((1, int(m.group(1))))
        elif part == "recent":
            spans.append((1, recent_days))
        elif part == "baseline":
            spans.append((recent_days + 1, recent_days + baseline_days))
        elif part == "the same length before":
            spans.append((recent_days + 1, 2 * recent_days))
        elif not (part == "at T" or part.endswith(("bill", "bills"))):
            raise ValueError(f"feature {feature.name}: window {feature.window!r} has no calendar reading")
    return tuple(spans)


def markdown_table() -> str:
    """The catalogue as a Markdown table."""
    rows = ["| feature | meaning | unit | window | signal | risk |", "|---|---|---|---|---|---|"]
    arrow = {1: "higher = riskier", -1: "lower = riskier", 0: "either"}
    rows += [
        f"| `{f.name}` | {f.meaning} | {f.unit} | {f.window} | {f.signal} | {arrow[f.risk]}"
        f"{'' if f.monotone or not f.risk else ' (not constrained)'} |"
        for f in CATALOGUE
    ]
    return "\n".join(rows)


def reference_doc() -> str:
    """``docs/features.md``: the feature reference, generated from this module (a test keeps it in step)."""
    intro = __doc__.split("\n\n", 1)[1].strip()
    return (
        f"# Feature reference\n\n<!-- generated by `uv run python -m features.catalogue > docs/features.md`;"
        f' do not edit -->\n\n{intro}\n\n{len(CATALOGUE)} features. "risk" is the direction the models are'
        f' constrained to (LightGBM monotone constraints), except where it says "not constrained".\n\n{markdown_table()}\n'
        f"\n## The call graph (signal `contacts_left`)\n\n{call_graph.__doc__.strip()}\n"
    )


if __name__ == "__main__":  # python -m features.catalogue > docs/features.md
    print(reference_doc(), end="")
