"""The feature-table suite as Spark aggregations gives GX's verdicts: the same failures, counts,
bounds and examples as ``validate_table`` on the same rows in pandas, and a clean table passes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import ValidationFailed
from pipelines.validate import FEATURE_TABLE, validate_table
from pipelines.validate_spark import feature_failures, validate_features

pytestmark = pytest.mark.slow  # a JVM


def test_spark_verdicts_are_the_gx_verdicts(trained, spark):
    table = pd.read_parquet(trained.feature_table)
    bad = table.copy()
    bad.loc[3, "tenure_days"] = np.nan
    bad.loc[5, "arpu_3m"] = -7.0  # below the catalogue's range
    bad.loc[6, "minutes_recent_per_day"] = np.nan
    bad = pd.concat([bad, bad.iloc[[10, 11]]], ignore_index=True)  # two keys twice: four rows

    on_gx = validate_table(bad, FEATURE_TABLE, "f", trained)
    on_spark = feature_failures(spark.createDataFrame(bad), trained, "f")

    assert sorted(map(str, on_spark)) == sorted(map(str, on_gx))
    assert len(on_gx) == 4
    with pytest.raises(ValidationFailed, match=f"4 of {len(bad)} rows unexpected"):
        validate_features(spark.createDataFrame(bad), trained, "f")
    validate_features(spark.createDataFrame(table), trained, "f")  # the pipeline's own table passes
    missing = feature_failures(spark.createDataFrame(table.drop(columns="arpu_3m")), trained, "f")
    assert [(f.expectation, f.column) for f in missing] == [("expect_table_columns_to_include", "arpu_3m")]
