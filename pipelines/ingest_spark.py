"""CDR ingestion on Spark (``features.engine: spark``): the same normalisation, number plan and HMAC.

The select is ``pipelines.ingest.select_calls_sql``, DuckDB's text, translated by SQLGlot
(``features/spark_sql.py``); the number normalisation is the same Python function registered as a
pandas UDF (``pipelines/numbers.py``); the HMAC's padded keys are bound as named parameters, never
written into the query.
All the changed days are read and written in one job: the executors write one file per day partition
(``date=YYYY-MM-DD``), its rows in the order DuckDB's ``ORDER BY ALL`` gives, so either engine's
partition holds the same calls in the same order. Only the calls per class and day reach the driver.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import functions as F

from core.config import Settings
from core.io import PARTITION
from features.spark_engine import spark_session
from features.spark_sql import to_spark
from pipelines.errors import Failure, ValidationFailed
from pipelines.ingest import CDR_COLUMNS, hmac_params, select_calls_sql
from pipelines.numbers import UDF_NAME, normalise_series

LANDING_VIEW = "landing_calls"


def _register_normalise(spark, region: str) -> None:
    """``pipelines.numbers``' normalisation as the SQL function the select calls: a pandas UDF,
    Arrow batches on the executors, the same Python as DuckDB's UDF."""

    @F.pandas_udf("string")
    def normalise(values: pd.Series) -> pd.Series:
        return normalise_series(values, region)

    spark.udf.register(UDF_NAME, normalise)


def refuse_nanoseconds(folders: list[str]) -> None:
    """Spark cannot read a parquet ``TIMESTAMP(NANOS)`` column (pandas writes one by default) and says
    only "Illegal Parquet type"; the files' footers say which, before any job: a clear error naming
    them and the fix, nothing written."""
    bad = [
        f
        for folder in folders
        for f in sorted(Path(folder).glob("*.parquet"))
        if any(pa.types.is_timestamp(t.type) and t.type.unit == "ns" for t in pq.read_schema(f))
    ]
    if bad:
        raise ValidationFailed(
            [
                Failure(
                    table="cdr",
                    file=str(bad[0]),
                    expectation="timestamps Spark can read",
                    column="start_time",
                    detail=f"{len(bad)} CDR file(s) store timestamps in nanoseconds, which Spark cannot "
                    "read: write them in microseconds (pandas: to_parquet(..., coerce_timestamps='us')) "
                    "or ingest with features.engine: duckdb",
                    partitions=sorted({Path(f).parent.name for f in bad}),
                )
            ]
        )


def classify_partitions(
    settings: Settings, src: Path, dst: Path, key: bytes, days: tuple[str, ...]
) -> dict[str, dict[str, int]]:
    """The landing partitions ``days`` classified and hashed into ``dst`` on Spark; the calls per class
    of number called, per day (``pipelines.ingest._classify_partitions`` on DuckDB)."""
    spark = spark_session(settings.spark)
    _register_normalise(spark, settings.data.number_region)
    out: dict[str, dict[str, int]] = {d: {} for d in days}
    folders = [Path(src) / f"{PARTITION}={d}" for d in days]
    folders = [str(f) for f in folders if any(f.glob("*.parquet"))]
    if not folders:
        return out
    refuse_nanoseconds(folders)
    landing = spark.read.option("basePath", str(Path(src).resolve())).parquet(*folders)
    # a day partition is read as a DATE, whose string is the folder's yyyy-MM-dd again
    landing.withColumn(PARTITION, F.col(PARTITION).cast("string")).createOrReplaceTempView(LANDING_VIEW)
    calls = spark.sql(
        to_spark(select_calls_sql(settings, LANDING_VIEW, carry=PARTITION)), args=hmac_params(key)
    )
    calls.repartition(PARTITION).sortWithinPartitions(
        PARTITION,  # first: the writer then keeps this order instead of sorting by day alone
        *[F.col(c).asc_nulls_last() for c in CDR_COLUMNS],
    ).write.mode("append").partitionBy(PARTITION).parquet(str(dst))
    written = spark.read.option("basePath", str(dst)).parquet(
        *[str(Path(dst) / f"{PARTITION}={d}") for d in out if (Path(dst) / f"{PARTITION}={d}").is_dir()]
    )
    for row in written.groupBy(F.col(PARTITION).cast("string").alias("d"), "callee_class").count().collect():
        out[row["d"]][row["callee_class"]] = int(row["count"])
    return out
