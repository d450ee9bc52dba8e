"""The nightly list on Spark (``features.engine: spark``) is the DuckDB list: same subscribers, order,
probabilities, reasons, tiers and files, without ever bringing everyone's rows to the driver."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import WarnError
from pipelines.warn import FILES, nightly_list


def _engine(settings, engine: str, **warnings):
    features = settings.features.model_copy(update={"engine": engine})
    return settings.model_copy(
        update={"features": features, "warnings": settings.warnings.model_copy(update=warnings)}
    )


@pytest.fixture(scope="module")
def champion(trained):
    from models.registry import load_registered

    return load_registered(trained)


def _refuse_full_collect(monkeypatch) -> None:
    """From here on, the path that brings every subscriber's features to the driver fails."""
    import features.engine
    import features.spark_engine

    def refuse(*a, **k):
        raise AssertionError("every subscriber's features were collected to the driver")

    monkeypatch.setattr(features.engine, "compute_features", refuse)
    monkeypatch.setattr(features.spark_engine, "compute_features", refuse)


@pytest.mark.parametrize(
    "capacity",
    [
        {},  # the default: the mass quota takes every candidate of the small session data
        {"orders_per_manager": 1, "mass_capacity": 7, "min_probability": 0.05},  # every tier cut
    ],
    ids=["default", "tight"],
)
def test_the_spark_list_is_the_duckdb_list(trained_copy, champion, spark, tmp_path, monkeypatch, capacity):
    date = trained_copy.features.snapshots[-1]
    on_duckdb = _engine(trained_copy, "duckdb", **capacity)
    on_spark = _engine(trained_copy, "spark", **capacity)
    want = nightly_list(on_duckdb, date, model=champion, out_root=tmp_path / "duckdb")
    _refuse_full_collect(monkeypatch)
    got = nightly_list(on_spark, date, model=champion, out_root=tmp_path / "spark")

    a, b = want.warnings, got.warnings
    assert len(a) > 0 and b["subscriber_id"].tolist() == a["subscriber_id"].tolist()
    np.testing.assert_allclose(b["churn_probability"], a["churn_probability"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(b["expected_loss"], a["expected_loss"], rtol=1e-9, atol=0)
    for col in ("rank", "vip_tier", "risk_tier", "action_code", "action_text", "reason_1_sentence"):
        assert b[col].tolist() == a[col].tolist(), col
    for ra, rb in zip(a["reasons"], b["reasons"], strict=True):
        assert [r["code"] for r in rb] == [r["code"] for r in ra]
        assert [r["sentence"] for r in rb] == [r["sentence"] for r in ra]
        np.testing.assert_allclose(
            [r["contribution"] for r in rb], [r["contribution"] for r in ra], rtol=1e-9, atol=1e-12
        )
    s_a, s_b = want.summary, got.summary
    assert (s_b.active, s_b.listed, s_b.tiers) == (s_a.active, s_a.listed, s_a.tiers)
    if capacity:
        assert any(t.listed < t.candidates for t in s_b.tiers)  # the window's cut decided the list
    assert sorted(p.name for p in got.folder.iterdir()) == sorted(FILES)
    summary = json.loads((got.folder / "summary.json").read_text())
    assert set(summary["timings_s"]) >= {"features", "validate", "predict", "choose", "explain", "write"}
    pd.testing.assert_frame_equal(  # the files of both engines
        pd.read_parquet(got.folder / "warnings.parquet").drop(columns="reasons"),
        pd.read_parquet(want.folder / "warnings.parquet").drop(columns="reasons"),
        rtol=1e-9,
    )
    # the score histogram is counted on the executors: the same page as the DuckDB run draws
    assert (got.folder / "summary.html").read_text() == (want.folder / "summary.html").read_text()


def test_a_non_finite_input_on_spark_stops_the_run_before_anything_is_written(
    trained_copy, champion, spark, tmp_path, monkeypatch
):
    from pyspark.sql import functions as F

    import pipelines.warn_spark as ws

    original = ws.feature_frame

    def broken(*a, **k):
        frame = original(*a, **k)
        victim = frame.agg(F.max("subscriber_id")).first()[0]
        bad = F.when(F.col("subscriber_id") == victim, F.lit(float("inf"))).otherwise(F.col("arpu_3m"))
        return frame.withColumn("arpu_3m", bad)

    monkeypatch.setattr(ws, "feature_frame", broken)
    settings = _engine(trained_copy, "spark", validate_sample=10)
    date = trained_copy.features.snapshots[-1]
    out = tmp_path / "warnings"
    out.mkdir()
    with pytest.raises(
        WarnError, match=r"1 subscriber\(s\) with missing or infinite inputs in \['arpu_3m'\]"
    ):
        nightly_list(settings, date, model=champion, out_root=out)
    assert not any(out.iterdir())


def test_the_window_cut_is_choose_with_ties_and_missing_values(spark):
    """The per-tier window picks what ``choose`` picks, ties (probability, then id) and NaN expected
    loss (no value: last) included."""
    from core.config import VipTier, WarningConfig
    from pipelines.warn import choose, rank_order
    from pipelines.warn_spark import cut

    cfg = WarningConfig(
        vip_tiers=[VipTier(name="gold", min_value=100, subscribers_per_manager=4)],
        orders_per_manager=2,
        mass_capacity=12,  # 19 mass candidates: 8 with a value, then 4 of the 11 without one
        min_probability=0.1,
    )
    rng = np.random.default_rng(3)
    n = 60
    scored = pd.DataFrame(
        {
            "subscriber_id": [f"s{i:03d}" for i in rng.permutation(n)],
            "churn_probability": rng.choice([0.05, 0.3, 0.3, 0.6, 0.9], n),
            "value_at_stake": rng.choice([50.0, 120.0, 120.0, 300.0, np.nan], n),
        }
    )
    scored["expected_loss"] = scored["churn_probability"] * scored["value_at_stake"]
    scored["vip_tier"] = np.where(scored["value_at_stake"] >= 100, "gold", "mass")
    want, tiers = choose(scored, cfg)
    got = cut(spark.createDataFrame(scored).repartition(3), tiers, cfg).toPandas()
    got = got.iloc[rank_order(got)]
    assert got["subscriber_id"].tolist() == want["subscriber_id"].tolist()
    assert want["expected_loss"].isna().sum() == 4  # NaN last: the cut fell among them
    assert [t.listed < t.candidates for t in tiers] == [True, True]
