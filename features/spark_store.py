"""Feast on Spark (``features.engine: spark``): the training join and the Redis load on the executors.

Feast does both itself once ``features.store`` configures it for Spark: its Spark offline store
(``SparkSource`` over the feature table) runs the point-in-time join as Spark SQL, and its Spark
compute engine (``batch_engine: spark.engine``) materialises with ``mapInArrow``, each executor
writing its partition's rows through the online store's own ``online_write_batch``, so only a
count returns to the driver and the keys are exactly those ``feast materialize`` writes. Both find
the session as the active one: :func:`feast_session` starts the project's session first
(docs/scale-out-feast.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from core.config import Settings
from features.spark_engine import spark_session

# Feast's Spark offline store turns this parser option on in the session it is given: backquoted
# names in a SELECT list become regular expressions for every later query of the session.
FEAST_PARSER_CONF = "spark.sql.parser.quotedRegexColumnNames"


@contextmanager
def feast_session(settings: Settings) -> Iterator[SparkSession]:
    """The project's session (UTC, Arrow) made active for Feast, and the session as it was afterwards.

    Feast's Spark store and engine take the active session; without one they would start their own
    from ``feature_store.yaml``. The parser option Feast sets is put back, so the shared session
    parses other queries as before, and Feast's import-time warning filters stay inside.
    """
    spark = spark_session(settings.spark)
    before = spark.conf.get(FEAST_PARSER_CONF, None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental feature in alpha development", per call
            yield spark
    finally:
        if before is None:
            spark.conf.unset(FEAST_PARSER_CONF)
        else:
            spark.conf.set(FEAST_PARSER_CONF, before)


def training_frame(
    store, settings: Settings, entity_df: pd.DataFrame | DataFrame, features: list[str]
) -> DataFrame:
    """Feast's point-in-time join on Spark, lazy: sample or write it on the executors.

    ``entity_df`` may be a Spark DataFrame (e.g. ``spark.read.parquet(label_table)``), so the
    entities need not fit the driver either; a pandas one is copied (Feast converts it in place).
    """
    entities = entity_df.copy() if isinstance(entity_df, pd.DataFrame) else entity_df
    with feast_session(settings):
        return store.get_historical_features(entity_df=entities, features=features).to_spark_df()


def historical_features(
    store, settings: Settings, entity_df: pd.DataFrame, features: list[str]
) -> pd.DataFrame:
    """:func:`training_frame` collected (Arrow) as the file offline store returns it: the entity columns,
    then the features, timestamps in UTC."""
    frame = training_frame(store, settings, entity_df, features).toPandas()
    # the session's time zone is UTC (features.spark_engine.REQUIRED_CONF): naive values are UTC
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"]).dt.tz_localize("UTC")
    return frame[[*entity_df.columns, *(f.split(":", 1)[1] for f in features)]]
