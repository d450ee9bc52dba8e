"""Point-in-time properties of ``compute_features``, checked on small generated worlds (hypothesis).

A. Adding events at or after T (calls, complaints, bills dated T or later, churn events on or after
   T, subscribers activated on or after T) leaves every feature row at T exactly as it was.
B. Moving any event that is at or after T to another time at or after T changes nothing at T.
C. A windowed feature sees exactly the days it claims: one extra event alone on day T-k, at any
   second of that day, moves a count by 1 (zero_call_days by -1) if T-k is inside the window and
   leaves it alone otherwise; the window edges are also checked at fixed instants.

Window semantics ("last N days"): the calendar days T-N .. T-1, both ends included, whatever the
time of day. That is what the SQL does: a call counts when ``CAST(start_time AS DATE) >= T - N days``
and ``start_time < T``; a complaint when ``complaint_time >= T - N days`` (midnight) and ``< T``.

A and B compare all columns, so they cover features added to the catalogue later without edits.
C is table-driven: a new windowed count is one more row in ``WINDOWED``. The call graph's features
(``features/call_graph.py``) get a C of their own: a close contact's departure on day T-k counts iff
T-k is inside the window. Every world's subscribers call each other by their own numbers' hashes
(``number_hash``), S0 always calls S1, and later events often make S1 leave on or after T.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from core.config import DEFAULT_CONFIG, load_settings
from features.compute import compute_features

T = pd.Timestamp("2026-04-01")
DAY = 86_400  # seconds

# Windowed features, one row each: (feature, table of the extra event, columns that make the event
# count - the others are drawn at random -, window N in days: the calendar days T-N .. T-1, and the
# change one event on an otherwise empty day of the window makes). Call windows longer than the
# config's lookback (recent_days + baseline_days = 74) cannot pass: the SQL reads no older call.
WINDOWED = [
    *[
        (
            f"competitor_hotline_calls_{n}d",
            "cdr",
            {"callee_class": "competitor_hotline", "direction": "out"},
            n,
            +1,
        )
        for n in (7, 30, 90)
    ],
    *[
        (f"own_hotline_calls_{n}d", "cdr", {"callee_class": "own_service", "direction": "out"}, n, +1)
        for n in (7, 30, 90)
    ],
    *[(f"complaints_{n}d", "complaints", {}, n, +1) for n in (7, 30, 90)],
    ("zero_call_days_7d", "cdr", {}, 7, -1),  # any call, in or out, of any class
    ("zero_call_days_30d", "cdr", {}, 30, -1),
]
WINDOWED_IDS = [w[0] for w in WINDOWED]

# compute_features opens a DuckDB connection per call (about 0.06-0.1 s with the parquet writes) and
# every example computes twice: 25 examples keep each property near 3-8 s on a busy 2-core machine.
PROPERTY = hyp_settings(
    max_examples=25,
    deadline=None,
    # no "explain" phase: it reruns the failing case many times only to name pandas lines. Shrinking
    # stays: a broken window shrinks to a one-call world, at up to a few minutes per failing test.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    # save_tables only hands back a pure function; every example writes into its own temp dir
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CATEGORIES = ["billing", "network", "service"]
EVENT_TYPES = ["port_out", "cancellation", "inactivity"]
CALLEE_CLASSES = ["competitor_hotline", "own_service", "on_net", "off_net", "landline"]
MONTH_ENDS = list(pd.date_range("2025-10-31", "2026-06-30", freq="ME"))  # bills are dated on these
MAX_SUBS, MAX_CALLS, MAX_COMPLAINTS = 5, 60, 10
SCHEMA = {
    "subscribers": {
        "subscriber_id": "string",
        "activation_date": "datetime64[ns]",
        "plan": "string",
        "contract_end_date": "datetime64[ns]",
        "monthly_fee": "float64",
        "vip_tier": "string",
        "region": "string",
        "number_hash": "string",  # the subscriber's own number as calls to them carry it (callee_hash)
    },
    "cdr": {
        "subscriber_id": "string",
        "callee_class": "string",
        "callee_hash": "string",
        "start_time": "datetime64[ns]",
        "duration_s": "int32",
        "direction": "string",
    },
    "complaints": {"subscriber_id": "string", "complaint_time": "datetime64[ns]", "category": "string"},
    "billing": {
        "subscriber_id": "string",
        "bill_month": "datetime64[ns]",
        "bill_date": "datetime64[ns]",
        "charge": "float64",
        "arrears": "float64",
    },
    "churn_events": {"subscriber_id": "string", "event_date": "datetime64[ns]", "event_type": "string"},
    "recharges": {"subscriber_id": "string", "recharge_time": "datetime64[ns]", "amount": "float64"},
}
TIME_COLUMN = {
    "cdr": "start_time",
    "complaints": "complaint_time",
    "billing": "bill_date",
    "churn_events": "event_date",
    "subscribers": "activation_date",
    "recharges": "recharge_time",
}
DATE_ONLY = {"billing", "churn_events", "subscribers"}  # day-stamped tables: times are whole days


CFG = load_settings(
    DEFAULT_CONFIG
)  # the shipped windows; its lookback (recent + baseline) bounds call windows


class World(dict):
    """Raw tables by name; printed in full so a falsifying example reads as a small data set."""

    def __repr__(self) -> str:
        shown = [f"--- {name} ---\n{df.to_string(index=False)}" for name, df in self.items() if len(df)]
        return "World(\n" + "\n".join(shown) + "\n)"


def _table(name: str, rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(SCHEMA[name])).astype(SCHEMA[name])


def _concat(*worlds: dict) -> World:
    return World(
        {
            name: pd.concat(
                [w[name] for w in worlds if name in w] or [_table(name, [])], ignore_index=True
            ).astype(SCHEMA[name])
            for name in SCHEMA
        }
    )


def _features(world: dict, save_tables) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        feats, _ = compute_features(save_tables(Path(tmp) / "raw", _concat(world)), [T.date()], CFG)
    return feats.sort_values("subscriber_id", ignore_index=True)


def _assert_same_rows(before: pd.DataFrame, after: pd.DataFrame) -> None:
    """assert_frame_equal, preceded by a plain account of which subscriber and feature moved."""
    b, a = before.set_index("subscriber_id"), after.set_index("subscriber_id")
    assert list(b.index) == list(a.index), f"rows at T changed: {list(b.index)} -> {list(a.index)}"
    # the tolerance assert_frame_equal uses for floats
    same = np.isclose(b.to_numpy(float), a.to_numpy(float), rtol=1e-5, atol=1e-8, equal_nan=True)
    moved = [
        f"{sid}.{col}: {b.at[sid, col]} -> {a.at[sid, col]}"
        for (i, j) in zip(*np.nonzero(~same), strict=False)
        for sid, col in [(b.index[i], b.columns[j])]
    ]
    assert not moved, "features at T changed: " + "; ".join(moved)
    pd.testing.assert_frame_equal(before, after)


# --- strategies ------------------------------------------------------------------------------


def _seconds_before_T():
    """1 s .. 120 days before T, with T-1 s and midnights (day edges) drawn on purpose."""
    return st.one_of(st.just(1), st.integers(1, 120).map(lambda d: d * DAY), st.integers(1, 120 * DAY))


def _seconds_from_T():
    """0 s .. 60 days at or after T, with T itself and midnights drawn on purpose."""
    return st.one_of(st.just(0), st.integers(0, 60).map(lambda d: d * DAY), st.integers(0, 60 * DAY))


def _days_from_T(most: int):
    """0 .. most whole days after T, with T itself drawn on purpose."""
    return st.one_of(st.just(0), st.integers(0, most))


def _at(offset_s: int) -> pd.Timestamp:
    return T + pd.Timedelta(seconds=offset_s)


def _call(sid, when, callee_class, callee_hash, duration, direction) -> dict:
    return {
        "subscriber_id": sid,
        "callee_class": callee_class,
        "callee_hash": callee_hash,
        "start_time": when,
        "duration_s": duration,
        "direction": direction,
    }


def _own_hash(sid: str) -> str:
    """A subscriber's ``number_hash``: calls to that subscriber carry it as their ``callee_hash``."""
    return "n" + sid


def _calls(sids, offsets):
    """Calls of ``sids`` with strangers (h0..h3) and with each other (their own numbers' hashes): the
    call graph, whose features read contacts who left."""
    return st.lists(
        st.builds(
            _call,
            st.sampled_from(sids),
            offsets.map(_at),
            st.sampled_from(CALLEE_CLASSES),
            st.sampled_from(["h0", "h1", "h2", "h3", *map(_own_hash, sids)]),
            st.integers(0, 3600),
            st.sampled_from(["in", "out"]),
        ),
        max_size=MAX_CALLS,
    )


def _complaints(sids, offsets, max_size=MAX_COMPLAINTS):
    return st.lists(
        st.builds(
            lambda sid, when, cat: {"subscriber_id": sid, "complaint_time": when, "category": cat},
            st.sampled_from(sids),
            offsets.map(_at),
            st.sampled_from(CATEGORIES),
        ),
        max_size=max_size,
    )


def _recharges(sids, offsets, max_size=MAX_COMPLAINTS):
    return st.lists(
        st.builds(
            lambda sid, when, amount: {"subscriber_id": sid, "recharge_time": when, "amount": amount},
            st.sampled_from(sids),
            offsets.map(_at),
            st.sampled_from([10.0, 30.0, 50.0]),
        ),
        max_size=max_size,
    )


def _money():
    return st.one_of(st.just(0.0), st.integers(0, 50_000).map(lambda c: c / 100))


def _bill(sid, bill_date, charge, arrears) -> dict:
    return {
        "subscriber_id": sid,
        "bill_month": bill_date.replace(day=1),
        "bill_date": bill_date,
        "charge": charge,
        "arrears": arrears,
    }


@st.composite
def worlds(draw) -> dict:
    """Up to 5 subscribers (at least one prepaid and one postpaid) and their events around T.

    S0 is always active at T (activated before T, no churn before T), so a world has a row at T.
    Bills are one per month and subscriber (ties in ``bill_date`` would make "latest bill" ambiguous).
    """
    n = draw(st.integers(2, MAX_SUBS))
    sids = [f"S{i}" for i in range(n)]
    subs, bills, churn = [], [], []
    for i, sid in enumerate(sids):
        plan = ("prepaid", "postpaid")[i] if i < 2 else draw(st.sampled_from(["prepaid", "postpaid"]))
        activation = T + pd.Timedelta(days=draw(st.integers(-800, -1 if i == 0 else 30)))
        contract_end = T + pd.Timedelta(days=draw(st.integers(-60, 500))) if plan == "postpaid" else pd.NaT
        subs.append(
            {
                "subscriber_id": sid,
                "activation_date": activation,
                "plan": plan,
                "contract_end_date": contract_end,
                "monthly_fee": 50.0,
                "vip_tier": "none",
                "region": "north",
                "number_hash": _own_hash(sid),
            }
        )
        for month_end in draw(st.sets(st.sampled_from(MONTH_ENDS), max_size=len(MONTH_ENDS))):
            bills.append(_bill(sid, month_end, draw(_money()), draw(_money())))
        churn_day = draw(st.none() | st.integers(0 if i == 0 else -70, 60))
        if churn_day is not None:
            churn.append(
                {
                    "subscriber_id": sid,
                    "event_date": T + pd.Timedelta(days=churn_day),
                    "event_type": draw(st.sampled_from(EVENT_TYPES)),
                }
            )
    any_time = st.one_of(_seconds_before_T().map(lambda s: -s), _seconds_from_T())
    # S0 and S1 are close: a few calls between them in the baseline window (T-74 .. T-15), so S1
    # leaving, before or after T, is what the call-graph features see or must not see
    baseline = st.integers(15 * DAY, 74 * DAY).map(lambda s: _at(-s))
    ties = draw(
        st.lists(
            st.builds(
                _call,
                st.just("S0"),
                baseline,
                st.just("on_net"),
                st.just(_own_hash("S1")),
                st.integers(0, 600),
                st.sampled_from(["in", "out"]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    return World(
        {
            "subscribers": _table("subscribers", subs),
            "cdr": _table("cdr", ties + draw(_calls(sids, any_time))),
            "complaints": _table("complaints", draw(_complaints(sids, any_time))),
            "billing": _table("billing", bills),
            "churn_events": _table("churn_events", churn),
            "recharges": _table("recharges", draw(_recharges(sids, any_time))),
        }
    )


@st.composite
def later_events(draw, sids: list[str]) -> dict:
    """Events stamped at or after T, for known subscribers and for new ones activated on T or later."""
    new = [f"N{i}" for i in range(draw(st.integers(0, 2)))]
    everyone = sids + new
    subs = [
        {
            "subscriber_id": sid,
            "activation_date": T + pd.Timedelta(days=draw(_days_from_T(30))),
            "plan": draw(st.sampled_from(["prepaid", "postpaid"])),
            "contract_end_date": pd.NaT,
            "monthly_fee": 50.0,
            "vip_tier": "none",
            "region": "north",
            "number_hash": _own_hash(sid),
        }
        for sid in new
    ]
    bills = draw(
        st.lists(
            st.builds(
                _bill,
                st.sampled_from(everyone),
                _days_from_T(90).map(lambda d: T + pd.Timedelta(days=d)),
                _money(),
                _money(),
            ),
            max_size=5,
        )
    )
    churn = draw(
        st.lists(
            st.builds(
                lambda sid, d, kind: {
                    "subscriber_id": sid,
                    "event_date": T + pd.Timedelta(days=d),
                    "event_type": kind,
                },
                st.one_of(st.just(sids[1]), st.sampled_from(everyone)),  # S1: S0's close contact
                _days_from_T(60),
                st.sampled_from(EVENT_TYPES),
            ),
            max_size=3,
        )
    )
    return World(
        {
            "subscribers": _table("subscribers", subs),
            "cdr": _table("cdr", draw(_calls(everyone, _seconds_from_T()).map(lambda c: c[:20]))),
            "complaints": _table("complaints", draw(_complaints(everyone, _seconds_from_T(), max_size=5))),
            "billing": _table("billing", bills),
            "churn_events": _table("churn_events", churn),
            "recharges": _table("recharges", draw(_recharges(everyone, _seconds_from_T(), max_size=5))),
        }
    )


@st.composite
def world_and_later_events(draw):
    world = draw(worlds())
    return world, draw(later_events(world["subscribers"]["subscriber_id"].tolist()))


# --- A: adding later events -------------------------------------------------------------------


@PROPERTY
@given(case=world_and_later_events())
def test_events_at_or_after_T_change_no_feature(case, save_tables):
    world, later = case
    before = _features(world, save_tables)
    after = _features(_concat(world, later), save_tables)
    _assert_same_rows(before, after)


# --- B: moving later events -------------------------------------------------------------------


@PROPERTY
@given(world=worlds(), data=st.data())
def test_moving_events_within_the_future_changes_no_feature(world, data, save_tables):
    moved = World()
    for name, df in world.items():
        col, df = TIME_COLUMN[name], df.copy()
        later = df[col] >= T
        n = int(later.sum())
        if name in DATE_ONLY:
            new = data.draw(st.lists(_days_from_T(60), min_size=n, max_size=n), label=name)
            df.loc[later, col] = [T + pd.Timedelta(days=d) for d in new]
        else:
            new = data.draw(st.lists(_seconds_from_T(), min_size=n, max_size=n), label=name)
            df.loc[later, col] = [_at(s) for s in new]
        if name == "billing":
            df["bill_month"] = df["bill_date"].dt.to_period("M").dt.to_timestamp()
        moved[name] = df
    before = _features(world, save_tables)
    after = _features(moved, save_tables)
    _assert_same_rows(before, after)


# --- C: windows include exactly the days they claim -------------------------------------------


def _event(table: str, sid: str, when: pd.Timestamp, attrs: dict, data) -> dict:
    """One raw event of ``table``; the columns ``attrs`` does not fix are drawn at random."""
    if table == "cdr":
        row = _call(
            sid,
            when,
            data.draw(st.sampled_from(CALLEE_CLASSES), label="callee_class"),
            "hx",
            data.draw(st.integers(0, 3600), label="duration_s"),
            data.draw(st.sampled_from(["in", "out"]), label="direction"),
        )
    elif table == "complaints":
        row = {
            "subscriber_id": sid,
            "complaint_time": when,
            "category": data.draw(st.sampled_from(CATEGORIES), label="category"),
        }
    else:
        raise ValueError(f"no event builder for table {table!r}: add one to use it in WINDOWED")
    return {table: _table(table, [row | attrs])}


def _quiet_day(world: dict, table: str, day: pd.Timestamp) -> World:
    """``world`` without any ``table`` event on ``day``, so an event added there is alone on its day."""
    df = world[table]
    return World(world, **{table: df[df[TIME_COLUMN[table]].dt.normalize() != day]})


def _days_back(window: int):
    """k in 1 .. max(100, window + 1), with 1, the window's first day and the day before it on purpose."""
    return st.one_of(st.sampled_from([1, window, window + 1]), st.integers(1, max(100, window + 1)))


def _second_of_day():
    return st.one_of(st.sampled_from([0, DAY - 1]), st.integers(0, DAY - 1))


def _check_window(feature, window, delta, before, after, sid, when):
    k = (T.normalize() - when.normalize()).days
    expected = delta if 1 <= k <= window else 0
    change = after.loc[sid, feature] - before.loc[sid, feature]
    assert change == expected, (
        f"{feature}: one event at {when} (day T-{k}) moved {sid} from {before.loc[sid, feature]} to "
        f"{after.loc[sid, feature]} ({change:+}); a {window}-day window (days T-{window} .. T-1) wants {expected:+}"
    )
    others = before.index != sid
    pd.testing.assert_frame_equal(before[others], after[others])


@pytest.mark.parametrize(("feature", "table", "attrs", "window", "delta"), WINDOWED, ids=WINDOWED_IDS)
@PROPERTY
@given(world=worlds(), data=st.data())
def test_one_event_k_days_before_T_counts_iff_inside_the_window(
    feature, table, attrs, window, delta, world, data, save_tables
):
    k = data.draw(_days_back(window), label="k")
    when = T - pd.Timedelta(days=k) + pd.Timedelta(seconds=data.draw(_second_of_day(), label="second"))
    quiet = _quiet_day(world, table, when.normalize())
    before = _features(quiet, save_tables).set_index("subscriber_id")
    assert len(before), "S0 is generated active at T, yet no row came back"
    sid = data.draw(st.sampled_from(sorted(before.index)), label="subscriber")
    after = _features(_concat(quiet, _event(table, sid, when, attrs, data)), save_tables).set_index(
        "subscriber_id"
    )
    _check_window(feature, window, delta, before, after, sid, when)


# The instants where an off-by-one lives, for each window: its first second, the second before it,
# the last second before T, and T itself (never counted).
EDGES = {
    "first second": lambda n: T - pd.Timedelta(days=n),
    "second before": lambda n: T - pd.Timedelta(days=n, seconds=1),
    "T - 1 s": lambda n: T - pd.Timedelta(seconds=1),
    "T": lambda n: T,
}


@pytest.mark.parametrize("edge", list(EDGES))
@pytest.mark.parametrize(("feature", "table", "attrs", "window", "delta"), WINDOWED, ids=WINDOWED_IDS)
def test_window_edges(feature, table, attrs, window, delta, edge, save_tables):
    """The same check at fixed instants, on a world of one quiet subscriber."""
    subs = _table(
        "subscribers",
        [
            {
                "subscriber_id": "S0",
                "activation_date": T - pd.Timedelta(days=400),
                "plan": "prepaid",
                "contract_end_date": pd.NaT,
                "monthly_fee": 50.0,
                "vip_tier": "none",
                "region": "north",
            }
        ],
    )
    when = EDGES[edge](window)
    row = (
        _call("S0", when, "off_net", "hx", 60, "out")
        if table == "cdr"
        else {"subscriber_id": "S0", "complaint_time": when, "category": "network"}
    ) | attrs
    before = _features({"subscribers": subs}, save_tables).set_index("subscriber_id")
    after = _features({"subscribers": subs, table: _table(table, [row])}, save_tables).set_index(
        "subscriber_id"
    )
    _check_window(feature, window, delta, before, after, "S0", when)


# --- C for the call graph: a contact's departure counts iff inside the window --------------------


def _graph_pair(k: int, kind: str, calls: int) -> World:
    """G0, active at T, called G1 and a stranger ``calls`` times each in the baseline window (T-20);
    G1 left on day T-k (``kind``). Ids of their own, so a drawn world's calls never reach them."""
    subs = [
        {
            "subscriber_id": sid,
            "activation_date": T - pd.Timedelta(days=400),
            "plan": "prepaid",
            "contract_end_date": pd.NaT,
            "monthly_fee": 50.0,
            "vip_tier": "none",
            "region": "north",
            "number_hash": _own_hash(sid),
        }
        for sid in ("G0", "G1")
    ]
    when = T - pd.Timedelta(days=20)
    cdr = [_call("G0", when, "on_net", h, 60, "out") for h in (_own_hash("G1"), "hz") for _ in range(calls)]
    churn = [{"subscriber_id": "G1", "event_date": T - pd.Timedelta(days=k), "event_type": kind}]
    return World(
        subscribers=_table("subscribers", subs),
        cdr=_table("cdr", cdr),
        churn_events=_table("churn_events", churn),
    )


@PROPERTY
@given(world=worlds(), data=st.data())
def test_a_contact_who_left_k_days_before_T_counts_iff_inside_the_window(world, data, save_tables):
    k = data.draw(st.one_of(st.sampled_from([-1, 0, 1, 30, 31, 60, 61]), st.integers(-30, 100)), label="k")
    kind = data.draw(st.sampled_from(EVENT_TYPES), label="event_type")
    calls = data.draw(st.integers(1, 3), label="calls")
    g0 = _features(_concat(world, _graph_pair(k, kind, calls)), save_tables).set_index("subscriber_id")
    g0 = g0.loc["G0"]
    in30, in60 = 1 <= k <= 30, 1 <= k <= 60
    expected = {
        "top_contacts_left_30d": in30,
        "top_contacts_left_60d": in60,
        "top_contacts_ported_60d": in60 and kind == "port_out",
        "contacts_moved_off_net_60d": in60 and kind == "port_out",
        "top_contacts_left_share_60d": 50 * in60,  # one of its two contacts
        "top_contacts_left_call_share_60d": 50 * in60,
        "calls_to_left_contacts_60d": calls * in60,
        "contact_churn_score": 50 * np.exp(-k / 30) * in60,
    }
    got = {f: g0[f] for f in expected}
    assert got == pytest.approx({f: float(v) for f, v in expected.items()}), f"G1 left on T-{k} ({kind})"
