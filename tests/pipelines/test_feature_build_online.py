"""A recomputed newest snapshot updates the online store by its changed rows: the store then serves
what a full reload would, and a case that a partial write cannot get right reloads in full."""

import json
import logging
import sqlite3

import numpy as np
import pandas as pd
import pytest

from features.catalogue import FEATURE_NAMES
from features.manifest import manifest_path
from features.store import apply_and_materialize, get_store, online_features
from pipelines.errors import ValidationFailed
from pipelines.feature_build import build_features


def _late_calls(settings, day: str, n: int = 50) -> pd.DataFrame:
    part = settings.landing_dir / "cdr" / f"date={day}"
    calls = pd.concat([pd.read_parquet(f) for f in sorted(part.glob("*.parquet"))], ignore_index=True)
    calls = calls.assign(start_time=calls["start_time"] + pd.Timedelta(seconds=7))
    return calls[calls["start_time"].dt.date.astype(str) == day].head(n)


def _newest(settings) -> pd.DataFrame:
    feats = pd.read_parquet(settings.feature_table)
    return feats[feats["event_timestamp"] == feats["event_timestamp"].max()].set_index("subscriber_id")


def test_a_late_day_in_the_newest_window_writes_only_the_changed_rows(copy_trained, caplog):
    s = copy_trained()
    before = _newest(s)
    late = _late_calls(s, "2026-05-20")  # read by the newest snapshot (2026-06-01) alone
    late.to_parquet(s.landing_dir / "cdr" / "date=2026-05-20" / "late.parquet", index=False)

    with caplog.at_level(logging.INFO):
        summary = build_features(s)

    assert summary.computed == 1 and summary.materialised == "changed rows"
    now = _newest(s)
    changed = (now[FEATURE_NAMES] != before.loc[now.index, FEATURE_NAMES]).any(axis=1).sum()
    assert 0 < changed < len(now)
    assert f"wrote the {changed} of {len(now)} rows" in caplog.text
    assert json.loads(manifest_path(s).read_text())["online"]["mode"] == "changed rows"
    ids = list(now.index)
    online = online_features(get_store(s), ids).set_index("subscriber_id")  # as a full reload serves
    np.testing.assert_allclose(online.loc[ids, FEATURE_NAMES], now.loc[ids, FEATURE_NAMES], rtol=1e-12)
    written = _online_table(s)
    apply_and_materialize(s)  # a full reload over it: not one byte of the store changes
    assert _online_table(s) == written


def _online_table(settings) -> list[tuple]:
    db = sqlite3.connect(settings.feast_dir / "online_store.db")
    try:
        return db.execute(
            f"SELECT entity_key, feature_name, value, value_text, event_ts, created_ts "
            f"FROM {settings.feast.project}_subscriber_features ORDER BY entity_key, feature_name"
        ).fetchall()
    finally:
        db.close()


def test_a_late_day_in_an_older_window_reloads_in_full(copy_trained):
    s = copy_trained()
    late = _late_calls(s, "2026-03-20")  # read by older snapshots too: their rows are not the newest
    late.to_parquet(s.landing_dir / "cdr" / "date=2026-03-20" / "late.parquet", index=False)

    summary = build_features(s)

    assert summary.computed > 1 and summary.materialised == "full"


def test_a_recomputed_snapshot_checks_its_changed_rows_and_fails_on_a_bad_one(
    copy_trained, caplog, out_of_range_features
):
    """Rows equal to the table's (checked when written) are not checked again; a changed row that breaks
    the suite still stops the build before anything is written."""
    s = copy_trained()
    late = _late_calls(s, "2026-05-20")
    late.to_parquet(s.landing_dir / "cdr" / "date=2026-05-20" / "late.parquet", index=False)
    table = s.feature_table.read_bytes()
    out_of_range_features(2)
    with caplog.at_level(logging.INFO), pytest.raises(ValidationFailed) as err:
        build_features(s)
    assert "zero_call_days_30d" in str(err.value) and s.feature_table.read_bytes() == table
    n = len(_newest(s))
    assert f"of {n} new rows differ from rows checked before" in caplog.text
