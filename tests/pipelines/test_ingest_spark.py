"""Ingestion on Spark writes the same pseudonymised calls as on DuckDB: same rows, same order."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from messy_numbers import messy_export, raw_day

from core.io import PARTITION
from pipelines.errors import ValidationFailed
from pipelines.ingest import STATE, ingest

pytestmark = pytest.mark.slow  # a JVM and a whole ingestion


def _partitions(cdr_dir) -> dict[str, pd.DataFrame]:
    return {
        p.name: pd.concat([pd.read_parquet(f) for f in sorted(p.glob("*.parquet"))], ignore_index=True)
        for p in sorted(cdr_dir.glob(f"{PARTITION}=*"))
    }


def test_spark_ingestion_writes_the_duckdb_calls(spark, copy_trained):
    settings = copy_trained(features={"engine": "spark"})
    duck = _partitions(settings.raw_dir / "cdr")
    duck_report = (settings.reports_dir / "ingest.json").read_text()
    (settings.raw_dir / STATE).unlink()  # forget what was ingested: every day goes through Spark
    summary = ingest(settings)
    assert summary.partitions_ingested == len(duck) > 100
    spark_parts = _partitions(settings.raw_dir / "cdr")
    assert list(spark_parts) == list(duck)
    for day, frame in duck.items():
        pd.testing.assert_frame_equal(spark_parts[day], frame, check_dtype=False, obj=day)
        assert (spark_parts[day].dtypes == frame.dtypes).all(), day
    assert summary.callee_classes == json.loads(duck_report)["callee_classes"]


def test_an_unchanged_day_is_not_read_again_on_spark(spark, copy_trained):
    settings = copy_trained(features={"engine": "spark"})
    ingest(settings)  # first run: the recipe is the same, every day is kept as it was
    day = sorted((settings.landing_dir / "cdr").glob(f"{PARTITION}=*"))[-1]
    calls = pd.read_parquet(next(day.glob("*.parquet")))
    calls.iloc[:5].to_parquet(next(day.glob("*.parquet")), index=False)
    summary = ingest(settings, skip_validation=True)
    assert summary.partitions_ingested == 1
    shutil.rmtree(settings.workdir, ignore_errors=True)


def test_a_messy_export_classes_and_hashes_on_spark_as_the_clean_one_on_duckdb(spark, copy_trained):
    settings = copy_trained(features={"engine": "spark"})
    clean = raw_day(settings)  # ingested on DuckDB
    messy_export(settings)  # +86..., 0086..., 138 0013 8000, (010) 1234 5678...
    summary = ingest(settings)
    assert summary.partitions_ingested == 1
    pd.testing.assert_frame_equal(raw_day(settings), clean, check_dtype=False)
    shutil.rmtree(settings.workdir, ignore_errors=True)


def test_nanosecond_timestamps_are_a_clear_error_and_raw_stays(spark, copy_trained):
    settings = copy_trained(features={"engine": "spark"})
    day = sorted((settings.landing_dir / "cdr").glob(f"{PARTITION}=*"))[-1]
    file = next(day.glob("*.parquet"))
    calls = pd.read_parquet(file)
    calls["start_time"] = calls["start_time"].astype("datetime64[ns]") + pd.Timedelta(nanoseconds=1)
    calls.to_parquet(file, index=False)  # pandas keeps nanoseconds: Spark cannot read them
    before = {p: p.read_bytes() for p in sorted((settings.raw_dir / "cdr").rglob("*.parquet"))}
    with pytest.raises(ValidationFailed, match="nanoseconds, which Spark cannot read") as err:
        ingest(settings)
    assert day.name in str(err.value)
    assert {p: p.read_bytes() for p in sorted((settings.raw_dir / "cdr").rglob("*.parquet"))} == before
    shutil.rmtree(settings.workdir, ignore_errors=True)
