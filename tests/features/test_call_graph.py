"""The call-graph features (``features/call_graph.py``): hand-computed values, and no number in the output."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from core.config import load_settings
from features.compute import compute_features
from pipelines.validate import read_cdr

T = pd.Timestamp("2026-03-01")


def _sub(sid: str, own: str) -> dict:
    return {
        "subscriber_id": sid,
        "activation_date": pd.Timestamp("2025-01-01"),
        "plan": "prepaid",
        "contract_end_date": pd.NaT,
        "monthly_fee": 30.0,
        "vip_tier": "none",
        "region": "north",
        "number_hash": own,
    }


def _calls(callee: str, n: int, days_before: int, callee_class: str = "on_net") -> list[dict]:
    when = T - pd.Timedelta(days=days_before) + pd.Timedelta(hours=9)
    return [
        {
            "subscriber_id": "A",
            "callee_class": callee_class,
            "callee_hash": callee,
            "start_time": when + pd.Timedelta(minutes=i),
            "duration_s": 60,
            "direction": "out" if i % 2 else "in",  # either way it is the same tie
        }
        for i in range(n)
    ]


@pytest.fixture
def graph_case(tmp_path, make_config, save_tables):
    """A's on-net ties in the baseline window (T-74 .. T-15): c1 5 calls, c2 4, c3 3; c5 3 off-net
    and c6 3 landline calls (not on-net: no tie); c4 10 calls in the recent window only (not a tie).
    With the 2 closest contacts: c1 and c2."""
    s = load_settings(
        make_config(tmp_path, features={"snapshots": ["2026-03-01", "2026-04-01"], "graph_top_contacts": 2})
    )
    subs = pd.DataFrame(
        [
            _sub("A", "ca"),
            _sub("X1", "c1"),
            _sub("X2", "c2"),
            _sub("X3", "c3"),
            _sub("X4", "c4"),
            _sub("X5", "c5"),
        ]
    )
    cdr = pd.DataFrame(
        _calls("c1", 5, 30)
        + _calls("c2", 4, 50)
        + _calls("c3", 3, 70)
        + _calls("c5", 3, 20, "off_net")  # X5 left on T-5: an off-net number is never a tie
        + _calls("c6", 3, 20, "landline")
        + _calls("c4", 10, 3)
    )
    churn = pd.DataFrame(
        {
            "subscriber_id": ["X1", "X2", "X3", "X4", "X5"],
            "event_date": T - pd.to_timedelta([10, 0, 40, 5, 5], unit="D"),  # X2 leaves on T: not yet
            "event_type": ["cancellation", "port_out", "port_out", "port_out", "port_out"],
        }
    )
    none = pd.Series([], dtype="string")
    raw = save_tables(
        s.raw_dir,
        {
            "subscribers": subs,
            "cdr": cdr,
            "churn_events": churn,
            "billing": pd.DataFrame(
                {
                    "subscriber_id": none,
                    "bill_month": pd.to_datetime([]),
                    "bill_date": pd.to_datetime([]),
                    "charge": pd.Series([], dtype="float64"),
                    "arrears": pd.Series([], dtype="float64"),
                }
            ),
            "complaints": pd.DataFrame(
                {"subscriber_id": none, "complaint_time": pd.to_datetime([]), "category": none}
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


def test_closest_contacts_who_left_by_hand(graph_case):
    a = graph_case.loc["A"]
    expected = {
        "top_contacts_left_30d": 1,  # c1 (T-10); c3 left too but is not among the 2 closest
        "top_contacts_left_60d": 1,
        "top_contacts_ported_60d": 0,  # c1 cancelled; c3's port-out is outside the top 2
        "contacts_moved_off_net_60d": 0,
        "top_contacts_left_share_60d": 50.0,  # 1 of 2
        "top_contacts_left_call_share_60d": 100 * 5 / 9,  # c1's 5 of the top 2's 9 calls
        "calls_to_left_contacts_60d": 5 + 3,  # c1 and c3, any rank; c4 was called only after T-15
        "contact_churn_score": 100 * (5 * np.exp(-10 / 30) + 3 * np.exp(-40 / 30)) / 12,
    }
    assert {f: a[f] for f in expected} == pytest.approx({f: float(v) for f, v in expected.items()})
    assert "X2" in graph_case.index  # leaving on T: still active at T, and not yet a contact who left


def test_graph_features_hold_no_phone_number(trained):
    """Every value of every row, as text, against the subscribers' own numbers and every number called."""
    snaps = list(trained.features.snapshots)
    feats, _ = compute_features(trained.raw_dir, snaps, trained)
    graph_cols = [
        c for c in feats.columns if "contact" in c and c not in ("contacts_recent", "contacts_change_pct")
    ]
    assert len(graph_cols) == 8
    text = feats[["subscriber_id", *graph_cols]].to_csv(index=False)
    subs = pd.read_parquet(trained.landing_dir / "subscribers.parquet")
    others = set(read_cdr(trained.landing_dir / "cdr")["other_party"].astype(str))
    numbers = {n for n in others | set(subs["msisdn"].astype(str)) if len(n) >= 8}
    found = set(re.findall(r"\d{8,}", text)) & numbers
    assert not found, f"phone numbers in the graph features: {sorted(found)[:3]}"
    assert not re.search(r"(?<![\d.])1[3-9]\d{9}(?!\d)", text), (
        "an 11-digit mobile number pattern in the output"
    )
