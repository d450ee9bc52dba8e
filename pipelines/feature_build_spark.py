"""The ``features`` stage's tables on Spark (``features.engine: spark``): computed, checked and written
by the executors; no feature or label row passes through the driver.

The feature and label tables are then folders of parquet, one ``snapshot=YYYY-MM-DD`` partition per
snapshot, at the paths the DuckDB engine writes single files to (``pandas.read_parquet``, Feast's
``SparkSource`` and ``spark.read.parquet`` read either). A build writes the snapshots it computes into
staging folders beside the tables, checks them there with the feature-table suite as Spark aggregations
(``pipelines.validate_spark``), hard-links the kept snapshots' files in (an increment copies nothing),
then swaps labels, then features, into place (``core.io.replace_dir_atomic``) and writes the manifest
last, as the DuckDB build does: a failed or stopped run leaves the previous tables as they were.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from core.config import Settings
from core.io import replace_dir_atomic
from features.catalogue import FEATURE_NAMES
from features.spark_engine import feature_frame, spark_session
from pipelines.feature_build import BuildPlan, Written, write_manifest
from pipelines.validate_spark import validate_features

log = logging.getLogger(__name__)

PARTITION = "snapshot"  # the tables' partition column: the snapshot's date


def _snapshot_dir(table: Path, day: dt.date) -> Path:
    return table / f"{PARTITION}={day.isoformat()}"


def _staging(table: Path) -> Path:
    """A fresh folder beside ``table``, named as ``core.io``'s atomic writes name theirs, so a dead
    run's leftover is removed by the next atomic write there (``core.io.remove_dead_leftovers``)."""
    return Path(tempfile.mkdtemp(prefix=f".{table.name}.{os.getpid()}.", suffix=".partial", dir=table.parent))


def table_frames(frame: DataFrame) -> tuple[DataFrame, DataFrame]:
    """The query's rows as (features, labels) in the catalogue's order and types, as
    ``features.compute.split_labels`` makes them, each with its snapshot partition column."""
    ts = F.col("event_timestamp").cast("timestamp")
    snapshot = F.to_date(ts).alias(PARTITION)
    feats = frame.select(
        "subscriber_id",
        ts.alias("event_timestamp"),
        *(F.col(n).cast("double") for n in FEATURE_NAMES),
        snapshot,
    )
    labels = frame.select(
        "subscriber_id",
        ts.alias("event_timestamp"),
        F.col("churned_within_horizon").cast("int").alias("churned"),
        snapshot,
    )
    return feats, labels


def _write(frame: DataFrame, out: Path) -> None:
    frame.write.mode("overwrite").partitionBy(PARTITION).parquet(str(out))


def _link_kept(table: Path, stage: Path, keep: list[dt.date]) -> None:
    """Hard links of the kept snapshots' files into ``stage``: same bytes and inode, no copy, and the
    live table untouched until the swap."""
    for day in keep:
        src, dst = _snapshot_dir(table, day), _snapshot_dir(stage, day)
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file() and not f.name.startswith((".", "_")):
                os.link(f, dst / f.name)


def build_tables(settings: Settings, todo: BuildPlan) -> Written:
    """Compute the plan's snapshots on Spark, check them, and put the tables and manifest in place."""
    plan, spark = todo.plan, spark_session(settings.spark)
    feats_out, labels_out = settings.feature_table, settings.label_table
    feats_out.parent.mkdir(parents=True, exist_ok=True)
    stage_f, stage_l = _staging(feats_out), _staging(labels_out)
    try:
        if plan.compute:
            frame = feature_frame(spark, settings.raw_dir, plan.compute, settings)
            frame = frame.persist(StorageLevel.MEMORY_AND_DISK)  # the query runs once for both tables
            try:
                feats, labels = table_frames(frame)
                _write(feats, stage_f)
                _write(labels, stage_l)
            finally:
                frame.unpersist()
            what = "new" if plan.mode == "full" else f"new rows for {', '.join(map(str, plan.compute))}"
            file = f"{feats_out} ({what}, not yet written)"
            validate_features(spark.read.parquet(str(stage_f)), settings, file=file)
        if plan.mode == "incremental":
            _link_kept(feats_out, stage_f, plan.keep)
            _link_kept(labels_out, stage_l, plan.keep)
        for stage in (stage_f, stage_l):
            stage.mkdir(parents=True, exist_ok=True)  # no snapshot computed or kept: an empty table
        replace_dir_atomic(stage_l, labels_out)
        replace_dir_atomic(stage_f, feats_out)
    finally:
        shutil.rmtree(stage_f, ignore_errors=True)
        shutil.rmtree(stage_l, ignore_errors=True)
    return write_manifest(settings, todo, label_counts(settings))


def label_counts(settings: Settings) -> dict[dt.date, tuple[int, int]]:
    """Rows and churners per snapshot of the label table, counted on the executors (a row per
    snapshot reaches the driver)."""
    spark = spark_session(settings.spark)
    labels = spark.read.parquet(str(settings.label_table))
    day = F.to_date("event_timestamp")
    rows = labels.groupBy(day.alias("day")).agg(
        F.count(F.lit(1)).alias("rows"), F.sum("churned").alias("churners")
    )
    return {r["day"]: (int(r["rows"]), int(r["churners"] or 0)) for r in rows.collect()}
