"""``churn features`` on Spark: the tables written by the executors, checked without collecting them,
equal to DuckDB's; a late CDR day recomputes only the snapshot reading it, kept snapshots untouched.

The session refuses any job returning more than 384 KiB to the driver (``driver_results_limit``): the
feature table is ~550 KiB, so a step that collected it would fail the build. The online store is
Redis, loaded by Feast's Spark engine from the executors (the SQLite store is read on the driver).
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd
import pytest
import redis

from features import compute
from features.catalogue import FEATURE_NAMES
from features.manifest import manifest_path
from pipelines.feature_build import build_features

pytestmark = pytest.mark.slow  # two Spark builds and a Redis load: ~1-2 min

LIMIT = "384k"
KEYS = ["event_timestamp", "subscriber_id"]


@pytest.fixture
def spark_settings(copy_trained):
    """A copy of the trained (DuckDB) workdir on the Spark engine, with a Redis project of its own."""
    project = f"churnwarn_test_build_{uuid.uuid4().hex[:8]}"
    client = redis.Redis(host="127.0.0.1", port=6379)
    client.ping()
    yield copy_trained(
        features={"engine": "spark"},
        feast={"project": project, "online_store": {"type": "redis", "redis_connection": "127.0.0.1:6379"}},
    )
    keys = list(client.scan_iter(match=b"*" + project.encode(), count=10_000))
    if keys:
        client.delete(*keys)


def _table(path) -> pd.DataFrame:
    """A table as pandas reads it, without Spark's partition column, in the DuckDB build's order."""
    return (
        pd.read_parquet(path).drop(columns="snapshot", errors="ignore").sort_values(KEYS, ignore_index=True)
    )


def _late_calls(settings, day: str, n: int = 200) -> pd.DataFrame:
    """``n`` more calls of ``day`` (some of its calls again, 7 s later), as a late delivery brings."""
    part = settings.landing_dir / "cdr" / f"date={day}"
    calls = pd.concat([pd.read_parquet(f) for f in sorted(part.glob("*.parquet"))], ignore_index=True)
    calls = calls.assign(start_time=calls["start_time"] + pd.Timedelta(seconds=7))
    return calls[calls["start_time"].dt.date.astype(str) == day].head(n)


def _inodes(table, snapshot: str) -> dict:
    return {f.name: f.stat().st_ino for f in (table / f"snapshot={snapshot}").glob("*.parquet")}


def test_spark_tables_stay_on_the_executors_equal_duckdb_and_grow_by_increments(
    trained, spark_settings, spark, driver_results_limit
):
    s = spark_settings
    with driver_results_limit(LIMIT):
        with pytest.raises(Exception, match="maxResultSize"):  # the control: a full collect fails
            spark.read.parquet(str(trained.feature_table)).toPandas()
        full = build_features(s)
    assert (full.build, full.computed, full.materialised) == ("full", 4, "full")
    assert s.feature_table.is_dir() and sorted(p.name for p in s.feature_table.glob("snapshot=*")) == [
        f"snapshot={d}" for d in s.features.snapshots
    ]
    feats, duck = _table(s.feature_table), _table(trained.feature_table)
    pd.testing.assert_frame_equal(feats[KEYS], duck[KEYS], check_exact=True)
    np.testing.assert_allclose(feats[FEATURE_NAMES], duck[FEATURE_NAMES], rtol=1e-9)
    pd.testing.assert_frame_equal(_table(s.label_table), _table(trained.label_table), check_exact=True)
    manifest = json.loads(manifest_path(s).read_text())
    assert manifest["snapshots"] == json.loads(manifest_path(trained).read_text())["snapshots"]
    assert full.churn_rate == pytest.approx(pd.read_parquet(trained.label_table)["churned"].mean(), abs=0)

    kept = {d: _inodes(s.feature_table, d) for d in ("2026-03-01", "2026-04-01", "2026-05-01")}
    late = _late_calls(s, "2026-05-15")
    late.to_parquet(  # microseconds, as exports are written: Spark reads no nanosecond timestamps
        s.landing_dir / "cdr" / "date=2026-05-15" / "late.parquet", index=False, coerce_timestamps="us"
    )
    with driver_results_limit(LIMIT):
        grown = build_features(s)
    assert (grown.build, grown.computed, grown.kept) == ("incremental", 1, 3)
    assert json.loads(manifest_path(s).read_text())["build"]["recomputed"] == {
        "2026-06-01": "cdr day 2026-05-15 changed"
    }
    assert {d: _inodes(s.feature_table, d) for d in kept} == kept  # linked, not rewritten
    again, _ = compute.compute_features(s.raw_dir, s.features.snapshots, s)  # DuckDB on the new data
    feats = _table(s.feature_table)
    pd.testing.assert_frame_equal(feats[KEYS], again[KEYS], check_exact=True)
    np.testing.assert_allclose(feats[FEATURE_NAMES], again[FEATURE_NAMES], rtol=1e-9)

    unchanged = build_features(s)  # nothing changed: nothing computed, the manifest's hashes still match
    assert (unchanged.build, unchanged.computed, unchanged.kept) == ("incremental", 0, 4)
