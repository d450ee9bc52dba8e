"""The feature query on Apache Spark: ``features.engine: spark`` (the ``spark`` extra).

The same text as on DuckDB (``features/compute.py``), transpiled by ``features/spark_sql.py``, over
the same ingested parquet tables. :func:`feature_frame` returns a lazy Spark DataFrame, so a caller at
operator scale writes it from the executors (:func:`write_features`) and nothing passes through the
driver; :func:`compute_features` collects it (Arrow) for the pipeline's pandas steps.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from functools import cache
from pathlib import Path

import pandas as pd
from pyspark import SparkConf, SparkContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core.config import Settings, SparkConfig
from features import call_graph
from features.compute import RAW_TABLES, feature_params, feature_sql, split_labels
from features.spark_sql import SNAPSHOTS_VIEW, to_spark

log = logging.getLogger(__name__)

# Spark settings the queries rely on: UTC like DuckDB's session, and parquet timestamps without a
# zone read as TIMESTAMP_NTZ (DuckDB's TIMESTAMP), so comparisons never shift by a time zone.
REQUIRED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # what DuckDB and pandas write
}
QUIET_CONF = {"spark.ui.showConsoleProgress": "false"}


def spark_session(cfg: SparkConfig) -> SparkSession:
    """The active session, or a new one from ``cfg``. Under ``spark-submit`` what the launcher set
    (master, executor resources, any ``--conf``) wins and ``cfg`` only fills the rest; the settings
    the queries rely on (:data:`REQUIRED_CONF`) are always applied."""
    submitted = None
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # launched by spark-submit: read what it set
        SparkContext._ensure_initialized()
        submitted = SparkConf()
    wanted = {"spark.master": cfg.master, "spark.app.name": cfg.app_name, **QUIET_CONF, **cfg.conf}
    builder = SparkSession.builder
    for key, value in wanted.items():
        if submitted is None or not submitted.contains(key):
            builder = builder.config(key, value)
    for key, value in REQUIRED_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    for key, value in REQUIRED_CONF.items():  # an existing session: set what the queries need
        spark.conf.set(key, value)
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@cache
def feature_query(sql: str) -> str:
    """The Spark text of a DuckDB feature query (cached: the translation takes ~0.2 s)."""
    return to_spark(sql, drop_ctes=(SNAPSHOTS_VIEW,))


def register_raw(spark: SparkSession, raw_dir: Path) -> None:
    """The ingested tables as temporary views under the names the query uses (``cdr`` with its day
    partitions discovered, as DuckDB's hive partitioning does)."""
    raw_dir = Path(raw_dir).resolve()
    for t in RAW_TABLES:
        src = raw_dir / ("cdr" if t == "cdr" else f"{t}.parquet")
        frame = spark.read.parquet(str(src))
        if t == "subscribers" and call_graph.NUMBER_HASH not in frame.columns:
            log.warning(call_graph.NO_HASH_WARNING, raw_dir)
            frame = frame.withColumn(call_graph.NUMBER_HASH, F.lit(None).cast("string"))
        frame.createOrReplaceTempView(t)


def feature_frame(
    spark: SparkSession, raw_dir: Path, snapshots: list[dt.date], settings: Settings
) -> DataFrame:
    """The feature query's rows (features and the label column) as a lazy Spark DataFrame."""
    register_raw(spark, raw_dir)
    spark.createDataFrame([(d,) for d in snapshots], "snapshot_date DATE").createOrReplaceTempView(
        SNAPSHOTS_VIEW
    )
    params = {k: v for k, v in feature_params(settings, snapshots).items() if k != "snapshots"}
    return spark.sql(feature_query(feature_sql(settings)), args=params)


def compute_features(
    raw_dir: Path, snapshots: list[dt.date], settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``features.compute.compute_features`` on Spark: the same rows, order and dtypes."""
    spark = spark_session(settings.spark)
    df = feature_frame(spark, raw_dir, snapshots, settings).toPandas()
    return split_labels(df, len(snapshots))


def write_features(
    spark: SparkSession, raw_dir: Path, snapshots: list[dt.date], settings: Settings, out: Path
) -> None:
    """The feature rows written by the executors as parquet under ``out``, one folder per snapshot
    (``snapshot=YYYY-MM-DD``): the scale path, where no row reaches the driver."""
    frame = feature_frame(spark, raw_dir, snapshots, settings)
    frame.withColumn("snapshot", F.to_date("event_timestamp")).write.mode("overwrite").partitionBy(
        "snapshot"
    ).parquet(str(out))
