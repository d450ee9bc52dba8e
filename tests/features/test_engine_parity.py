"""Parity of the two feature engines: the DuckDB query and its SQLGlot translation on Spark.

Every feature of every snapshot, for every subscriber: exact where the DuckDB value is a whole number
(counts, days, flags, tiers), within 1e-9 relative otherwise (ratios, means); labels and row order
identical. On the pipeline's generated data, and on hypothesis-generated small worlds built for the
edges (events one second before T and at midnight of window edges, empty windows, subscribers with
no calls, bills or complaints; the generators of ``test_point_in_time_properties``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from test_point_in_time_properties import CFG, SCHEMA, T, _concat, worlds

from features import compute, spark_engine
from features.catalogue import FEATURE_NAMES
from features.spark_sql import to_spark

pytestmark = pytest.mark.slow  # a JVM, and Spark plans the 40-feature query per run (~5-20 s)


def assert_same_features(duck: pd.DataFrame, other: pd.DataFrame) -> None:
    """Same rows in the same order; whole-number columns exact, the rest within 1e-9 relative."""
    assert list(duck["subscriber_id"]) == list(other["subscriber_id"])
    assert (duck["event_timestamp"].to_numpy() == other["event_timestamp"].to_numpy()).all()
    assert list(duck.columns) == list(other.columns) and (duck.dtypes == other.dtypes).all()
    for name in FEATURE_NAMES:
        a, b = duck[name].to_numpy(), other[name].to_numpy()
        if np.all(a == np.round(a)):
            bad = np.flatnonzero(a != b)
        else:
            bad = np.flatnonzero(~np.isclose(a, b, rtol=1e-9, atol=0))
        assert not len(bad), f"{name}: {len(bad)} rows differ, e.g. {a[bad[:3]]} vs {b[bad[:3]]}"


def test_the_translation_is_spark_sql_with_double_literals():
    sql = to_spark("SELECT sum(x) / 60.0 AS m, date_diff('day', a, b) AS d FROM t WHERE y = $p")
    assert "CAST(60.0 AS DOUBLE)" in sql and "DATEDIFF(DAY, a, b)" in sql and ":p" in sql


def test_spark_features_equal_duckdb_on_the_pipeline_data(spark, trained):
    snaps = list(trained.features.snapshots)
    duck_f, duck_l = compute.compute_features(trained.raw_dir, snaps, trained)
    spark_f, spark_l = spark_engine.compute_features(trained.raw_dir, snaps, trained)
    assert len(duck_f) > 3000 and duck_f["event_timestamp"].nunique() == len(snaps)
    assert_same_features(duck_f, spark_f)
    pd.testing.assert_frame_equal(duck_l, spark_l)


def _renamed(world: dict, prefix: str) -> dict:
    return {
        name: df.assign(subscriber_id=prefix + df["subscriber_id"].astype(str)).astype(SCHEMA[name])
        for name, df in world.items()
    }


@hyp_settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(many=st.lists(worlds(), min_size=8, max_size=8))
def test_spark_features_equal_duckdb_on_edge_case_worlds(spark, save_tables, many):
    """8 worlds side by side (ids prefixed) per example: one Spark run checks them all."""
    world = _concat(*[_renamed(w, f"W{i}-") for i, w in enumerate(many)])
    with tempfile.TemporaryDirectory() as tmp:
        raw = save_tables(Path(tmp) / "raw", world)
        duck_f, duck_l = compute.compute_features(raw, [T.date()], CFG)
        spark_f, spark_l = spark_engine.compute_features(raw, [T.date()], CFG)
    assert_same_features(duck_f, spark_f)
    pd.testing.assert_frame_equal(duck_l, spark_l)
