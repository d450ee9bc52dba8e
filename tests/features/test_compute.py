"""Feature values on a hand-made case, computed by hand."""

import duckdb
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from core.config import FeatureConfig, load_settings
from features.catalogue import FEATURE_NAMES
from features.compute import compute_features, longest_run_sql

T = pd.Timestamp("2026-03-01")


def _calls(sid, days, seconds, callee="off_net", direction="out", hashes="h"):
    return pd.DataFrame(
        {
            "subscriber_id": sid,
            "callee_class": callee,
            "callee_hash": hashes,
            "start_time": [pd.Timestamp(d) + pd.Timedelta(hours=10) for d in days],
            "duration_s": seconds,
            "direction": direction,
        }
    )


@pytest.fixture
def hand_case(tmp_path, make_config, save_tables):
    s = load_settings(make_config(tmp_path, features={"snapshots": ["2026-03-01", "2026-04-01"]}))
    subs = pd.DataFrame(
        {
            "subscriber_id": ["A", "B", "C"],
            "activation_date": pd.to_datetime(["2025-01-01", "2026-02-01", "2024-01-01"]),
            "plan": ["postpaid", "prepaid", "prepaid"],
            "contract_end_date": pd.to_datetime(["2026-03-21", None, None]),
            "monthly_fee": [100.0, 30.0, 30.0],
            "vip_tier": "none",
            "region": "north",
            "number_hash": ["ha", "hb", "h"],  # C's own number is A's baseline contact h
        }
    )
    cdr = pd.concat(
        [
            _calls(
                "A", pd.date_range("2025-12-17", "2026-01-15"), 120, callee="on_net"
            ),  # baseline: 60 days x 2 min,
            _calls("A", pd.date_range("2026-01-16", "2026-02-14"), 120),  # half of them off-net
            _calls(
                "A", pd.date_range("2026-02-15", "2026-02-20"), 60, hashes=list("pqpqpq")
            ),  # recent: 6 days x 1 min
            _calls("A", ["2026-02-25"], 60, callee="competitor_hotline", hashes="x"),  # 10086
            pd.DataFrame(
                {
                    "subscriber_id": "A",
                    "callee_class": "on_net",
                    "callee_hash": "h",
                    "direction": "in",
                    "duration_s": 600,
                    "start_time": [T],
                }
            ),  # at T: must not count
            _calls("C", ["2026-01-05"], 60),
        ],
        ignore_index=True,
    )
    raw = save_tables(s.raw_dir, {"subscribers": subs, "cdr": cdr})
    pd.DataFrame(
        {
            "subscriber_id": "A",
            "bill_month": pd.to_datetime(["2025-12-01", "2026-01-01", "2026-02-01"]),
            "bill_date": pd.to_datetime(["2025-12-31", "2026-01-31", "2026-02-28"]),
            "charge": [100.0, 100.0, 150.0],
            "arrears": [0.0, 0.0, 20.0],
        }
    ).to_parquet(raw / "billing.parquet")
    pd.DataFrame(
        {
            "subscriber_id": ["A", "A"],
            "complaint_time": pd.to_datetime(["2026-01-15 09:00", "2025-11-15 09:00"]),
            "category": "network",
        }
    ).to_parquet(raw / "complaints.parquet")
    pd.DataFrame(
        {
            "subscriber_id": ["C", "A"],
            "event_date": pd.to_datetime(["2026-02-10", "2026-03-20"]),
            "event_type": ["port_out", "port_out"],
        }
    ).to_parquet(raw / "churn_events.parquet")
    pd.DataFrame(
        {
            "subscriber_id": ["B", "B"],
            "recharge_time": pd.to_datetime(["2026-02-10 12:00", "2026-03-01 08:00"]),
            "amount": [50.0, 50.0],
        }
    ).to_parquet(raw / "recharges.parquet")  # the second one is at T
    feats, labels = compute_features(raw, [T.date()], s)
    return feats.set_index("subscriber_id"), labels.set_index("subscriber_id")


def test_hand_computed_values(hand_case):
    feats, labels = hand_case
    assert set(feats.index) == {"A", "B"}  # C churned before T: not active
    a = feats.loc["A"]
    weekly = [14, 14, 14, 14, 14, 14, 6, 1]  # minutes in the 8 weeks before T, oldest first
    slope = np.polyfit(np.arange(8), weekly, 1)[0]
    expected = {
        "minutes_baseline_per_day": 2.0,
        "minutes_recent_per_day": 7 / 14,  # 6 x 1 min + the 1-min hotline call
        "minutes_change_pct": -75.0,
        "minutes_diff_per_day": -1.5,
        "out_minutes_change_pct": -75.0,  # every call of A's is outgoing
        "in_minutes_change_pct": 0.0,  # no incoming minutes before or after: no change
        "calls_change_pct": -50.0,  # 0.5 calls/day vs 1.0
        "calls_change_pct_7d": 100 * (1 / 7 - 1),  # the hotline call alone in Feb 22-28 vs 1.0 a day
        "minutes_trend_pct_8w": 100 * slope / (sum(weekly) / 8),
        "contacts_recent": 3.0,  # p, q and the hotline
        "contacts_change_pct": 200.0,  # 3 vs. 1 (h) in the 14 days before
        "zero_call_days_7d": 6.0,  # Feb 22-28: only Feb 25
        "zero_call_days_30d": 7.0,  # 30 days from Jan 30: 23 with calls
        "longest_zero_streak_30d": 4.0,  # Feb 21-24
        "days_since_last_call": 4.0,  # Feb 25
        "competitor_hotline_calls_7d": 1.0,
        "competitor_hotline_calls_30d": 1.0,
        "competitor_hotline_calls_90d": 1.0,
        "days_since_competitor_hotline": 4.0,
        "own_hotline_calls_7d": 0.0,
        "own_hotline_calls_30d": 0.0,
        "own_hotline_calls_90d": 0.0,
        "days_since_own_hotline": 90.0,  # none
        "complaints_7d": 0.0,
        "complaints_30d": 0.0,  # Jan 15 is 45 days back
        "complaints_90d": 1.0,  # the November one is older than 90 days
        "days_to_contract_end": 20.0,
        "days_since_contract_end": 365.0,  # not ended yet
        "in_renewal_window": 1.0,  # 20 <= 60 days
        "tenure_days": 424.0,
        "is_postpaid": 1.0,
        "tariff_fee": 100.0,
        "monthly_charge": 150.0,
        "arpu_3m": 350 / 3,
        "arpu_tier": 2.0,  # reaches 50 and 100, not 200
        "bill_change_pct": 50.0,
        "arrears": 20.0,
        "days_since_recharge": 0.0,  # postpaid
        "offnet_share_recent": 100.0,  # the recent mobile calls are all off-net
        "offnet_share_change": 50.0,  # vs. half of them in the baseline
        # the call graph: A's one on-net baseline contact is h (30 calls), C's number; C ported out Feb 10, T-19
        "top_contacts_left_30d": 1.0,
        "top_contacts_left_60d": 1.0,
        "top_contacts_ported_60d": 1.0,
        "top_contacts_left_share_60d": 100.0,
        "top_contacts_left_call_share_60d": 100.0,
        "calls_to_left_contacts_60d": 30.0,  # the off-net half of the calls to h are no tie
        "contacts_moved_off_net_60d": 1.0,
        "contact_churn_score": 100 * np.exp(-19 / 30),
    }
    assert set(expected) == set(FEATURE_NAMES)
    for name, value in expected.items():
        assert a[name] == pytest.approx(value), name
    b = feats.loc["B"]
    assert (b["zero_call_days_7d"], b["zero_call_days_30d"], b["longest_zero_streak_30d"]) == (7, 30, 30)
    assert (b["days_since_last_call"], b["days_since_competitor_hotline"]) == (
        90,
        90,
    )  # capped at the lookback
    assert (b["days_to_contract_end"], b["in_renewal_window"], b["tenure_days"], b["monthly_charge"]) == (
        365,
        0,
        28,
        0,
    )
    assert (b["tariff_fee"], b["arpu_tier"], b["offnet_share_recent"], b["contacts_change_pct"]) == (
        30,
        0,
        0,
        0,
    )
    assert b["days_since_contract_end"] == 365  # prepaid: no contract
    assert (b["days_since_own_hotline"], b["calls_change_pct_7d"]) == (90, 0)
    assert b["days_since_recharge"] == 19  # Feb 10; the top-up at T does not count yet
    assert (b["top_contacts_left_60d"], b["contact_churn_score"]) == (0, 0)  # no calls: no contacts
    assert labels.loc["A", "churned"] == 1 and labels.loc["B", "churned"] == 0


@pytest.fixture
def service_call_and_fee_case(tmp_path, make_config, save_tables):
    """Own-hotline recency, calls in the last 7 days and the bill against the fee, at their edges."""
    s = load_settings(make_config(tmp_path, features={"snapshots": ["2026-03-01", "2026-04-01"]}))
    subs = pd.DataFrame(
        {
            "subscriber_id": ["D", "E", "F"],
            "activation_date": pd.to_datetime(["2025-01-01", "2025-01-01", "2025-06-01"]),
            "plan": ["postpaid", "prepaid", "prepaid"],
            "contract_end_date": pd.to_datetime([None, None, None]),
            "monthly_fee": [50.0, 30.0, 0.0],
            "vip_tier": "none",
            "region": "north",
        }
    )
    cdr = pd.concat(
        [
            _calls("D", pd.date_range("2026-01-01", "2026-01-30"), 60),  # baseline: 30 calls in 60 days
            _calls("D", ["2026-02-21"], 60, callee="own_service"),  # 10000 on T-8: outside the 7 days
            _calls("D", ["2026-02-22", "2026-02-26"], 60),  # T-7 (first day of the 7) and T-3
            _calls("D", [T.date()], 60, callee="own_service"),  # at T: not seen
            _calls("E", ["2025-11-30"], 60, callee="own_service"),  # T-91: before the 90-day lookback
            _calls(
                "E", ["2026-02-27"], 60, callee="own_service", direction="in"
            ),  # 10000 calling E: not E's call
            _calls("E", ["2026-02-25"], 60),
            _calls("E", [T.date()], 60, callee="own_service"),  # on T: not seen
        ],
        ignore_index=True,
    )
    billing = pd.DataFrame(
        {
            "subscriber_id": ["D", "D", "D", "D", "E", "F"],
            "bill_date": pd.to_datetime(
                ["2026-01-31", "2026-02-28", "2026-03-01", "2026-03-31", "2026-03-01", "2026-02-28"]
            ),  # dated T or later: not issued yet
            "charge": [65.0, 35.0, 500.0, 900.0, 80.0, 12.0],
            "arrears": 0.0,
        }
    )
    billing.insert(1, "bill_month", billing["bill_date"].dt.to_period("M").dt.to_timestamp())
    none = pd.Series([], dtype="string")
    raw = save_tables(
        s.raw_dir,
        {
            "subscribers": subs,
            "cdr": cdr,
            "billing": billing,
            "complaints": pd.DataFrame(
                {"subscriber_id": none, "complaint_time": pd.to_datetime([]), "category": none}
            ),
            "churn_events": pd.DataFrame(
                {"subscriber_id": none, "event_date": pd.to_datetime([]), "event_type": none}
            ),
            "recharges": pd.DataFrame(
                {
                    "subscriber_id": none,
                    "recharge_time": pd.to_datetime([]),
                    "amount": pd.Series([], dtype="float64"),
                }
            ),
        },
    )
    feats, _ = compute_features(raw, [T.date()], s)
    return feats.set_index("subscriber_id")


def test_days_since_own_hotline(service_call_and_fee_case):
    f = service_call_and_fee_case
    assert f.loc["D", "days_since_own_hotline"] == 8  # Feb 21; the call at T is not seen yet
    assert f.loc["E", "days_since_own_hotline"] == 90  # only T-91 (outside the lookback), incoming, and on T
    assert f.loc["F", "days_since_own_hotline"] == 90  # no call at all
    assert (f.loc["D", "own_hotline_calls_7d"], f.loc["D", "own_hotline_calls_30d"]) == (0, 1)


def test_calls_change_pct_7d(service_call_and_fee_case):
    f = service_call_and_fee_case
    # D: 2 calls in Feb 22-28 (the 10000 call on Feb 21 is in neither window) vs 30 in the 60 baseline days
    assert f.loc["D", "calls_change_pct_7d"] == pytest.approx(100 * (2 / 7 - 0.5) / 0.5)  # -42.9
    assert f.loc["D", "calls_change_pct"] == pytest.approx(100 * (3 / 14 - 0.5) / 0.5)  # the 14-day view
    # E: zero-call baseline: the change is taken against the floor of 0.1 calls a day, never infinite
    assert f.loc["E", "calls_change_pct_7d"] == pytest.approx(100 * (2 / 7) / 0.1)  # 285.7
    assert f.loc["F", "calls_change_pct_7d"] == 0  # nothing either side


def test_bills_dated_at_or_after_t_are_not_used(service_call_and_fee_case):
    f = service_call_and_fee_case
    assert f.loc["D", "monthly_charge"] == 35  # Feb 28; the bills of T and later unused
    assert f.loc["E", "monthly_charge"] == 0  # its only bill is dated T: no bill yet


@pytest.mark.parametrize("width", [1, 5, 8, 12])
def test_longest_run_sql_equals_counting_bit_by_bit(width):
    """The binary-lifting SQL against a plain loop, for every value of ``width`` bits."""

    def longest(v: int) -> int:
        best = run = 0
        for i in range(width):
            run = run + 1 if v >> i & 1 else 0
            best = max(best, run)
        return best

    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT CAST(range AS BIGINT) AS v FROM range($n)", {"n": 1 << width})
    got = dict(con.execute(f"SELECT v, longest_run FROM ({longest_run_sql('t', 'v', width)}) q").fetchall())
    assert got == {v: longest(v) for v in range(1 << width)}


def test_longest_run_sql_at_30_bits():
    """The feature's width: the edges and a run at every length and place."""

    cases = {0: 0, (1 << 30) - 1: 30, (1 << 29) - 1: 29, 1 << 29: 1, 0b1011: 2}
    cases |= {((1 << n) - 1) << at: n for n in range(1, 31) for at in range(0, 31 - n)}
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest($v) AS v", {"v": list(cases)})
    got = dict(con.execute(f"SELECT v, longest_run FROM ({longest_run_sql('t', 'v', 30)}) q").fetchall())
    assert got == cases


def test_the_duckdb_memory_limit_bounds_the_query(service_call_and_fee_case, tmp_path):
    """``features.duckdb_memory_limit`` reaches DuckDB: the same values under a limit they fit in, and
    an error, not a bigger process, under one nothing fits in."""
    s = load_settings(tmp_path / "config.yaml")  # the fixture's settings and tables
    s.features.duckdb_memory_limit = "256MB"
    feats, _ = compute_features(s.raw_dir, [T.date()], s)
    pd.testing.assert_frame_equal(feats.set_index("subscriber_id"), service_call_and_fee_case)
    s.features.duckdb_memory_limit = "1MB"
    with pytest.raises(duckdb.OutOfMemoryException):
        compute_features(s.raw_dir, [T.date()], s)
    with pytest.raises(ValidationError, match="duckdb_memory_limit"):
        FeatureConfig(snapshots=["2026-03-01", "2026-04-01"], duckdb_memory_limit="a lot")
