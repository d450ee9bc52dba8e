"""The nightly list's heavy part on Spark (``features.engine: spark``): operator scale, 10^7-10^8 subscribers.

The night's features stay a Spark DataFrame; the champion is broadcast to the executors and scores
every active subscriber there (``mapInPandas``, the same ``predict_proba`` and :func:`at_stake` as the
DuckDB path); tiers are counted with one aggregate and the choice per tier is a window
(``row_number`` over the tier, ordered by the shared :data:`pipelines.warn.RANKING`). The driver
receives counts, a validation sample and the chosen rows, never a row per subscriber: explaining,
the files and the summary are :mod:`pipelines.warn`'s own.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.broadcast import Broadcast
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from core.config import Settings, WarningConfig
from features.catalogue import FEATURE_NAMES
from features.compute import split_labels
from features.spark_engine import feature_frame, spark_session
from pipelines.errors import WarnError
from pipelines.warn import (
    RANKING,
    SCORE_BINS,
    SCORED_COLUMNS,
    Night,
    TierCapacity,
    at_stake,
    log_checked,
    log_choice,
    rank_order,
    refuse_duplicates,
    refuse_non_finite,
    score_bin,
    tier_capacities,
    validate_sample,
    with_counts,
)

log = logging.getLogger(__name__)

_TYPES = {"churn_probability": "double", "value_at_stake": "double", "expected_loss": "double"}
SCORED_SCHEMA = ", ".join(f"{c} {_TYPES.get(c, 'string')}" for c in SCORED_COLUMNS) + ", score_bin int"
# a window's per-partition pre-cut (Spark's WindowGroupLimit) applies up to this many rows per tier
GROUP_LIMIT_CONF = "spark.sql.optimizer.windowGroupLimitThreshold"


def score_night(settings: Settings, date: dt.date, loaded, clock) -> Night:
    """``pipelines.warn.score_night`` on Spark: features, checks, scores and the choice on the executors."""
    spark = spark_session(settings.spark)
    feats = feature_frame(spark, settings.raw_dir, [date], settings).persist(StorageLevel.MEMORY_AND_DISK)
    model_bc, scored = spark.sparkContext.broadcast(loaded.model), None  # one copy per executor
    try:
        active = feats.count()
        if not active:
            raise WarnError(f"no subscriber is active on {date}")
        clock.lap("features", f"features of {active:,} subscribers active on {date} computed (Spark)")
        log_checked(clock, check_features(feats, active, settings, date))
        scored = score(feats, loaded.model.features, model_bc, settings.warnings).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        tiers, counts = tally(scored, settings.warnings)
        clock.lap("predict", f"{active:,} subscribers scored on the executors")
        listed, rows = chosen(scored, feats, tiers, settings.warnings)
        tiers = with_counts(tiers, {t.tier: t.candidates for t in tiers}, listed["vip_tier"].value_counts())
        log_choice(clock, len(listed), tiers, settings.warnings)
        return Night(active, listed, rows, tiers, counts)
    finally:
        for frame in (scored, feats):
            if frame is not None:
                frame.unpersist()
        model_bc.destroy()


def _driver_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Feature rows collected to the driver, in the dtypes the DuckDB path has (``split_labels``)."""
    return split_labels(frame, 1)[0]


def check_features(feats: DataFrame, active: int, settings: Settings, date: dt.date) -> int:
    """``pipelines.warn._check_features`` on Spark: the suite on a random sample of ``validate_sample`` rows
    collected to the driver; uniqueness and finiteness of every row as one aggregate on the executors."""
    n = settings.warnings.validate_sample
    if n is None:  # the suite on every row would bring every row to the driver
        n = type(settings.warnings).model_fields["validate_sample"].default
        log.warning("warn: validate_sample is null; on Spark the suite checks a sample of %d rows", n)
    fraction = min(1.0, (n + 10 * n**0.5 + 100) / active)  # Bernoulli: enough rows, then exactly n
    sample = _driver_rows(feats.sample(fraction=fraction, seed=0).orderBy(F.rand(0)).limit(n).toPandas())
    validate_sample(sample, settings, date)
    bad = {c: ~_finite(F.col(c)) for c in FEATURE_NAMES}
    any_bad = F.greatest(*[b.cast("int") for b in bad.values()]) > 0
    agg = feats.agg(
        F.count_distinct("subscriber_id").alias("_ids"),
        F.sum(any_bad.cast("long")).alias("_rows"),
        *[F.sum(b.cast("long")).alias(c) for c, b in bad.items()],
    ).first()
    if agg["_ids"] != active:
        dupes = feats.groupBy("subscriber_id").count().filter("count > 1").limit(3).collect()
        refuse_duplicates(date, active - agg["_ids"], [r["subscriber_id"] for r in dupes])
    if agg["_rows"]:
        named = sorted(c for c in FEATURE_NAMES if agg[c])
        examples = feats.filter(any_bad).select("subscriber_id").limit(3).collect()
        refuse_non_finite(date, agg["_rows"], named, [r["subscriber_id"] for r in examples])
    return len(sample)


def _finite(c: Column) -> Column:
    d = c.cast("double")
    return c.isNotNull() & ~F.isnan(d) & (F.abs(d) != float("inf"))


def score(feats: DataFrame, features: list[str], model_bc: Broadcast, cfg: WarningConfig) -> DataFrame:
    """Every row's SCORED_COLUMNS and its score-histogram bin, computed on the executors by the broadcast
    model (only the columns the model and the value need travel to Python)."""
    needed = list(dict.fromkeys(["subscriber_id", cfg.value_feature, *features]))
    inputs = feats.select(*[c for c in needed if c in feats.columns])

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        scorer = model_bc.value
        for batch in batches:
            proba = scorer.predict_proba(batch)
            out = at_stake(batch, proba, cfg)
            out["score_bin"] = score_bin(proba)
            yield out

    return inputs.mapInPandas(score_batches, SCORED_SCHEMA)


def tally(scored: DataFrame, cfg: WarningConfig) -> tuple[list[TierCapacity], np.ndarray]:
    """One aggregate: active subscribers and candidates per tier (their capacities), the score histogram."""
    cand = (F.col("churn_probability") >= cfg.list_min_probability).cast("long")
    cells = (
        scored.groupBy("vip_tier", "score_bin")
        .agg(F.count("*").alias("n"), F.sum(cand).alias("cand"))
        .toPandas()
    )
    per_tier = cells.groupby("vip_tier")[["n", "cand"]].sum()
    tiers = tier_capacities(per_tier["n"].to_dict(), cfg)
    tiers = with_counts(tiers, per_tier["cand"].to_dict(), {})
    counts = np.zeros(len(SCORE_BINS) - 1, dtype=np.int64)
    np.add.at(counts, cells["score_bin"].to_numpy(dtype=int), cells["n"].to_numpy(dtype=np.int64))
    return tiers, counts


def rank_columns() -> list[Column]:
    """:data:`pipelines.warn.RANKING` as a Spark ordering (NaN and null last, as ``np.lexsort`` puts NaN)."""
    return [
        F.nanvl(F.col(k.column), F.lit(None)).desc_nulls_last()
        if k.descending
        else F.col(k.column).asc_nulls_last()
        for k in RANKING
    ]


def cut(scored: DataFrame, tiers: list[TierCapacity], cfg: WarningConfig) -> DataFrame:
    """Per tier the first ``capacity`` candidates by ``row_number`` over the tier (:func:`rank_columns`):
    ``pipelines.warn.choose``'s list, unordered. The literal bound lets Spark cut each task's rows to the
    largest capacity before the shuffle (``WindowGroupLimit``, under :data:`GROUP_LIMIT_CONF`)."""
    caps = {t.tier: t.capacity for t in tiers}
    cap_of = F.coalesce(
        F.create_map(*[F.lit(x) for kv in caps.items() for x in kv])[F.col("vip_tier")], F.lit(0)
    )
    within = F.row_number().over(Window.partitionBy("vip_tier").orderBy(*rank_columns()))
    return (
        scored.filter(F.col("churn_probability") >= cfg.list_min_probability)
        .withColumn("_within", within)
        .filter((F.col("_within") <= max(caps.values(), default=0)) & (F.col("_within") <= cap_of))
        .select(*SCORED_COLUMNS)
    )


def chosen(
    scored: DataFrame, feats: DataFrame, tiers: list[TierCapacity], cfg: WarningConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The work orders (:func:`cut`) joined to their features and collected, in list order
    (:func:`pipelines.warn.rank_order`): scores and feature rows."""
    spark = scored.sparkSession
    before = spark.conf.get(GROUP_LIMIT_CONF)
    spark.conf.set(GROUP_LIMIT_CONF, str(max([int(before), *(t.capacity for t in tiers)])))
    try:  # the chosen few with their features (none of SCORED_COLUMNS is a feature name)
        rows = F.broadcast(cut(scored, tiers, cfg)).join(feats, "subscriber_id").toPandas()
    finally:
        spark.conf.set(GROUP_LIMIT_CONF, before)
    rows = rows.iloc[rank_order(rows)].reset_index(drop=True)
    return rows[list(SCORED_COLUMNS)], _driver_rows(rows[feats.columns].copy())
