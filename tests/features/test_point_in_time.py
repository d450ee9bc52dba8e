"""A feature as of T never sees an event at or after T: change the future, the features stay put."""

import numpy as np
import pandas as pd
import pytest

from features.catalogue import FEATURE_NAMES
from features.compute import RAW_TABLES, compute_features

T = pd.Timestamp("2026-04-01")


@pytest.fixture
def raw(trained, tmp_path, save_tables):
    tables = {t: pd.read_parquet(trained.raw_dir / (t if t == "cdr" else f"{t}.parquet")) for t in RAW_TABLES}
    tables["cdr"] = tables["cdr"].astype({"subscriber_id": str, "callee_class": str, "direction": str})
    return trained, tables, tmp_path, save_tables


def _features(settings, tables, where, save):
    feats, _ = compute_features(save(where, tables), [T.date()], settings)
    return feats.sort_values("subscriber_id", ignore_index=True)


def _rewrite_future(tables, rng):
    t = {k: v.copy() for k, v in tables.items()}
    cdr = t["cdr"]
    future = cdr["start_time"] >= T
    cdr.loc[future, "duration_s"] = rng.integers(0, 5000, future.sum()).astype(cdr["duration_s"].dtype)
    cdr.loc[future, "callee_class"] = "competitor_hotline"
    ids = t["subscribers"]["subscriber_id"].sample(200, random_state=1).to_numpy()
    extra = pd.DataFrame(
        {
            "subscriber_id": ids,
            "callee_class": "competitor_hotline",
            "callee_hash": 7,  # a 60-bit integer, as ingestion writes hashes
            "direction": "out",
            "duration_s": 300,
            "start_time": T + pd.to_timedelta(rng.integers(0, 30 * 86400, len(ids)), unit="s"),
        }
    )
    t["cdr"] = pd.concat([cdr, extra.assign(start_time=T), extra], ignore_index=True)  # also exactly at T
    t["complaints"] = pd.concat(
        [t["complaints"], pd.DataFrame({"subscriber_id": ids, "complaint_time": T, "category": "billing"})],
        ignore_index=True,
    )
    b = t["billing"]
    b.loc[b["bill_date"] >= T, ["charge", "arrears"]] = [999.0, 500.0]
    t["churn_events"] = pd.concat(
        [
            t["churn_events"],
            pd.DataFrame(
                {"subscriber_id": ids, "event_date": T + pd.Timedelta(days=3), "event_type": "port_out"}
            ),
        ],
        ignore_index=True,
    )
    return t


def test_future_events_change_no_feature_at_T(raw):
    settings, tables, tmp, save = raw
    before = _features(settings, tables, tmp / "orig", save)
    after = _features(settings, _rewrite_future(tables, np.random.default_rng(0)), tmp / "future", save)
    pd.testing.assert_frame_equal(before, after)


def test_the_check_would_catch_a_leak(raw):
    """The same comparison notices a change one second before T, so the test above has teeth."""
    settings, tables, tmp, save = raw
    before = _features(settings, tables, tmp / "orig", save)
    t = {k: v.copy() for k, v in tables.items()}
    sid = t["subscribers"]["subscriber_id"].iloc[0]
    t["cdr"] = pd.concat(
        [
            t["cdr"],
            pd.DataFrame(
                {
                    "subscriber_id": [sid],
                    "callee_class": ["competitor_hotline"],
                    "callee_hash": [7],
                    "direction": ["out"],
                    "duration_s": [60],
                    "start_time": [T - pd.Timedelta(seconds=1)],
                }
            ),
        ]
    )
    after = _features(settings, t, tmp / "past", save)
    changed = (before[FEATURE_NAMES] != after[FEATURE_NAMES]).any(axis=1)
    assert before.loc[changed, "subscriber_id"].tolist() == [sid]
    assert (
        after.loc[changed, "competitor_hotline_calls_30d"].item()
        == before.loc[changed, "competitor_hotline_calls_30d"].item() + 1
    )
