"""Shared fixtures: a small configuration in a temporary workdir, and one full pipeline run on it.

Everything is real: parquet files, GX suites, a Feast repo with a SQLite online store, an MLflow
SQLite tracking store and registry. The pipeline runs once per session; tests that change inputs
work on a copy of its workdir.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest
import yaml

from core.config import DEFAULT_CONFIG, Settings, load_settings

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

SMALL = {"data": {"n_subscribers": 1000, "seed": 11}}


def write_config(workdir: Path, **changes) -> Path:
    """A copy of the default config pointing at ``workdir``, with ``changes`` merged per section."""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["workdir"] = str(workdir)
    for section, values in {**SMALL, **changes}.items():
        if isinstance(values, dict):
            raw[section] = {**raw.get(section, {}), **values}
        else:
            raw[section] = values
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Settings:
    """Settings of a workdir where generate -> validate -> features -> train has run once."""
    from pipelines.stages import run_all

    workdir = tmp_path_factory.mktemp("pipeline")
    settings = load_settings(write_config(workdir))
    run_all(settings)
    return settings


@pytest.fixture
def copy_trained(trained, tmp_path):
    """``copy_trained(section={...})``: settings of a private copy of the trained workdir."""

    def _copy(**changes) -> Settings:
        dst = tmp_path / "copy"
        shutil.copytree(trained.workdir, dst)
        return load_settings(write_config(dst, **changes))

    return _copy


@pytest.fixture
def trained_copy(copy_trained) -> Settings:
    """A private copy of the trained workdir, safe to corrupt."""
    return copy_trained()


@pytest.fixture
def make_config():
    """``make_config(workdir, section={...})`` -> path of a small config (see :func:`write_config`)."""
    return write_config


US = {"coerce_timestamps": "us", "allow_truncated_timestamps": False}  # as ingestion writes: Spark reads it


def write_tables(folder: Path, tables: dict) -> Path:
    """Write tables the way the pipeline lays them out: ``cdr`` as one partition, the rest as files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        if name == "cdr":
            part = folder / "cdr" / "date=all"
            part.mkdir(parents=True, exist_ok=True)
            df.drop(columns=["date"], errors="ignore").to_parquet(part / "part-0.parquet", index=False, **US)
        else:
            df.to_parquet(folder / f"{name}.parquet", index=False, **US)
    return folder


@pytest.fixture
def save_tables():
    """``save_tables(folder, {"cdr": df, ...})`` (see :func:`write_tables`)."""
    return write_tables


@pytest.fixture
def out_of_range_features(monkeypatch):
    """``out_of_range_features(n)``: from then on ``compute_features`` gives its first ``n`` rows a
    ``zero_call_days_30d`` of 45, outside its 0..30 range, so the feature-table suite must refuse them."""
    import features.compute

    real = features.compute.compute_features

    def _break(n: int) -> None:
        def broken(raw_dir, snapshots, settings):
            feats, labels = real(raw_dir, snapshots, settings)
            feats.loc[feats.index[:n], "zero_call_days_30d"] = 45.0
            return feats, labels

        monkeypatch.setattr(features.compute, "compute_features", broken)

    return _break


@pytest.fixture(scope="session")
def spark():
    """One local Spark session (local[2]) for every Spark test of the run: a JVM start costs ~6 s.

    Tests that need another master (the standalone cluster) run their job in a subprocess, so this
    session is never replaced under other tests.
    """
    from core.config import SparkConfig
    from features.spark_engine import spark_session

    session = spark_session(SparkConfig(master="local[2]", conf={"spark.sql.shuffle.partitions": "4"}))
    yield session
    session.stop()


@pytest.fixture
def driver_results_limit(spark):
    """``with driver_results_limit("384k"):`` the session refuses any Spark job whose results to the
    driver add up to more (``spark.driver.maxResultSize``, read by every new stage): a step that
    collected a whole table fails. Broadcast joins are off meanwhile: Spark collects a join's small
    side on the driver to broadcast it (capped at 10 MB by ``autoBroadcastJoinThreshold``), which on
    test-sized tables would be the whole table. Folders are listed by the driver itself, not by a
    job that returns their file lists to it (Spark's parallel discovery above 32 folders, e.g. the CDR
    days): the same metadata either way. Restored afterwards; the session is shared."""
    from contextlib import contextmanager

    conf = spark.sparkContext._jsc.sc().conf()  # the JVM's live SparkConf, not Python's copy
    key = "spark.driver.maxResultSize"
    sql = {
        "spark.sql.autoBroadcastJoinThreshold": "-1",
        "spark.sql.adaptive.autoBroadcastJoinThreshold": "-1",
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000000",
    }

    @contextmanager
    def _limit(size: str):
        before, sql_before = conf.get(key, "1g"), {k: spark.conf.get(k, None) for k in sql}
        conf.set(key, size)
        for k, v in sql.items():
            spark.conf.set(k, v)
        try:
            yield
        finally:
            conf.set(key, before)
            for k, v in sql_before.items():
                spark.conf.unset(k) if v is None else spark.conf.set(k, v)

    return _limit
