"""The feature-table suite on Spark (``features.engine: spark``): the same expectations, evaluated as
Spark aggregations on the executors, so the table is never collected to be checked.

GX's own Spark datasource runs this suite too, but as 168 Spark jobs for its 79 expectations (about
one pass over the data per metric; docs/scale-out.md). Here the expectations of
``pipelines.validate._feature_table`` (one definition) become one aggregation pass for every null
and range count plus one group-by for duplicate keys; only counts and at most 20 example rows per
failing expectation (GX's partial list; five are shown) reach the driver.
The failures read as GX's do (:func:`pipelines.validate._failure`): same expectation, column,
counts and bounds. An expectation type not translated here is an error, not a silent pass.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, FloatType, TimestampNTZType, TimestampType

from core.config import Settings
from features.catalogue import FEATURE_NAMES
from pipelines.errors import Failure, ValidationFailed
from pipelines.validate import FEATURE_TABLE, _examples, _suite

REQUIRED = ["subscriber_id", "event_timestamp", *FEATURE_NAMES]
KEYS_DUPLICATED = "__churnwarn_key_rows"


def _missing(frame: DataFrame, column: str) -> Column:
    """Null as pandas counts it: null, and NaN in a floating column."""
    col = F.col(column)
    if isinstance(frame.schema[column].dataType, (DoubleType, FloatType)):
        return col.isNull() | F.isnan(col)
    return col.isNull()


def _unexpected(frame: DataFrame, e) -> Column:
    """The rows an expectation of the feature suite does not accept, as a Spark condition."""
    kind = e.expectation_type
    if kind == "expect_column_values_to_not_be_null":
        return _missing(frame, e.column)
    if kind == "expect_column_values_to_be_between":  # nulls are not judged here (GX skips them)
        col, out = F.col(e.column), F.lit(False)
        if e.min_value is not None:
            out = out | (col < F.lit(e.min_value))
        if e.max_value is not None:
            out = out | (col > F.lit(e.max_value))
        return ~_missing(frame, e.column) & out
    if kind == "expect_compound_columns_to_be_unique":  # every row of a repeated key, as GX counts
        return F.col(KEYS_DUPLICATED) > 1
    raise NotImplementedError(f"{kind} has no Spark translation in pipelines/validate_spark.py")


def _with_key_counts(frame: DataFrame, keys: list[str]) -> DataFrame:
    """``frame`` with how many rows share each row's key (a group-by joined back, no window)."""
    counts = frame.groupBy(*keys).agg(F.count(F.lit(1)).alias(KEYS_DUPLICATED))
    return frame.join(counts, on=keys, how="left")


def _example_value(value, timestamp: bool):
    if timestamp and isinstance(value, dt.datetime):
        return pd.Timestamp(value, tz="UTC") if value.tzinfo is None else pd.Timestamp(value)
    return value


def _examples_of(frame: DataFrame, e, condition: Column) -> list:
    """Up to 20 unexpected values (rows of the key for a duplicate), as GX's partial list: bounded."""
    columns = list(getattr(e, "column_list", None) or [e.column])
    stamps = {c for c in columns if isinstance(frame.schema[c].dataType, (TimestampType, TimestampNTZType))}
    rows = frame.filter(condition).select(*columns).limit(20).collect()
    if len(columns) == 1 and not getattr(e, "column_list", None):
        return _examples([_example_value(r[0], columns[0] in stamps) for r in rows])
    return _examples([{c: _example_value(r[c], c in stamps) for c in columns} for r in rows])


def feature_failures(frame: DataFrame, settings: Settings, file: str) -> list[Failure]:
    """The feature-table suite's failures on ``frame`` (a lazy Spark DataFrame): errors and warnings
    as ``pipelines.validate.validate_table`` reports them on a pandas frame."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        return [
            Failure(FEATURE_TABLE, file, "expect_table_columns_to_include", c, "required column is missing")
            for c in missing
        ]
    expectations = _suite(FEATURE_TABLE, settings).expectations
    keys = next(
        (list(e.column_list) for e in expectations if e.expectation_type.startswith("expect_compound")), None
    )
    checked = _with_key_counts(frame, keys) if keys else frame
    conditions = [_unexpected(checked, e) for e in expectations]
    sums = [F.sum(F.when(c, 1).otherwise(0)).alias(f"e{i}") for i, c in enumerate(conditions)]
    row = checked.agg(F.count(F.lit(1)).alias("rows"), *sums).collect()[0]
    out = []
    for i, e in enumerate(expectations):
        unexpected = int(row[f"e{i}"] or 0)
        if unexpected:
            out.append(
                _failure(e, unexpected, int(row["rows"]), file, _examples_of(checked, e, conditions[i]))
            )
    return out


def _failure(e, unexpected: int, rows: int, file: str, examples: list) -> Failure:
    bounds = {k: getattr(e, k, None) for k in ("min_value", "max_value")}
    bounds = {k: v for k, v in bounds.items() if v is not None}
    detail = f"{unexpected} of {rows} rows unexpected" + (f" (expected {bounds})" if bounds else "")
    check = (e.meta or {}).get("check")
    column = getattr(e, "column", None) or ",".join(getattr(e, "column_list", None) or []) or None
    severity = "warning" if str(getattr(e, "severity", "critical")).lower().endswith("warning") else "error"
    detail = f"[{check}] {detail}" if check else detail
    return Failure(FEATURE_TABLE, file, e.expectation_type, column, detail, examples, severity)


def validate_features(frame: DataFrame, settings: Settings, file: str) -> None:
    """``pipelines.validate.validate_features`` on Spark: raises ``ValidationFailed`` on any error."""
    failures = [f for f in feature_failures(frame, settings, file) if f.severity == "error"]
    if failures:
        raise ValidationFailed(failures)
