"""The ``train`` stage's rows on Spark (``features.engine: spark``): Feast's point-in-time join stays a
lazy Spark frame (``features.spark_store.training_frame``), is split out of time there, and only the
stratified training sample and the bounded held-out snapshots are collected (docs/scale-out.md)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pyspark.sql import functions as F

from core.config import Settings
from features.spark_engine import spark_session
from features.spark_store import training_frame
from features.store import FEATURE_REFS, get_store
from models.training_data import TrainingSample, split_snapshots
from models.training_data_spark import stratified_sample


@dataclass(frozen=True)
class SparkSample:
    """How the Spark engine bounded what reached the driver: the training sample, and the held-out
    parts' totals and sizes (``training.eval_rows``) as logged on the run."""

    train: TrainingSample
    held_out_params: dict


def spark_rows(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, SparkSample]:
    """Feast's point-in-time join on Spark (``spark_store.training_frame``, the labels read by the
    executors), split out of time there; only the stratified training sample (``training.sample_rows``)
    and the held-out snapshots, each bounded by ``training.eval_rows``, are collected."""
    spark, cfg = spark_session(settings.spark), settings.training
    entities = spark.read.parquet(str(settings.label_table)).select(
        "subscriber_id", "event_timestamp", "churned"
    )
    frame = training_frame(get_store(settings), settings, entities, FEATURE_REFS)
    snaps = sorted(pd.Timestamp(r[0], tz="UTC") for r in frame.select("event_timestamp").distinct().collect())
    train_snaps, valid_t, test_t = split_snapshots(snaps, settings)
    ts = F.col("event_timestamp")
    train_df, sample = stratified_sample(
        frame.filter(ts.isin([t.to_pydatetime() for t in train_snaps])), cfg.sample_rows, cfg.seed
    )
    held, params = [], {} if cfg.eval_rows is None else {"eval_rows": cfg.eval_rows}
    for part, t in (("valid", valid_t), ("test", test_t)):
        rows, drawn = stratified_sample(frame.filter(ts == t.to_pydatetime()), cfg.eval_rows, cfg.seed, by=())
        held.append(rows)
        if cfg.eval_rows is not None:
            params[f"{part}_rows_total"] = drawn.rows_total
    parts = [train_df, *held]
    for df in parts:  # the session's zone is UTC (features.spark_engine.REQUIRED_CONF)
        df["event_timestamp"] = pd.to_datetime(df["event_timestamp"]).dt.tz_localize("UTC")
    return *parts, SparkSample(sample, params)
