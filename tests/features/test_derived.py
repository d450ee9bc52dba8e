"""Derived columns of a customer table: checked against the mapping up front, computed row-wise by DuckDB."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from core.config import CustomerTableConfig
from features.derived import Derived, DerivedColumnError, add_derived, derived_columns

MAPPING = {
    "name": "t",
    "path": "t.csv",
    "id_column": "id",
    "label_column": "churn",
    "positive_label": "Yes",
    "negative_label": "No",
    "numeric_columns": ["tenure", "monthly", "total"],
    "categorical_columns": ["contract"],
}


def table_config(**derived) -> CustomerTableConfig:
    return CustomerTableConfig.model_validate({**MAPPING, "derived_columns": derived})


@pytest.fixture
def rows() -> pd.DataFrame:
    """Generated rows with the awkward cases: a zero tenure, a missing total, an integer column."""
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "churn": ["Yes", "No", "No", "Yes"],
            "tenure": [0, 10, 20, 5],
            "monthly": [20.0, 30.0, 50.0, 40.0],
            "total": [np.nan, 300.0, 900.0, 200.0],
            "contract": ["Month-to-month", "One year", None, "Two year"],
        }
    )


@pytest.mark.parametrize(
    "sql, needle",
    [
        ("total / tenur", "unknown column 'tenur'"),
        ("churn = 'Yes'", "unknown column 'churn'"),  # the label is not visible: no leak
        ("id * 2", "unknown column 'id'"),
        ("total / (tenure", "Parser Error"),
        ("total, tenure", "single expression"),
        ("total - avg(total)", "row-wise"),
        ("total - avg(total) OVER ()", "row-wise"),
        ("(SELECT max(tenure) FROM range(3) t(tenure))", "subquery"),
        ("tenure * random()", "random"),
        ("CAST('2024-01-01' AS DATE) + CAST(tenure AS INTEGER)", "must be a number or text"),
        ("42", "reads no mapped column"),
    ],
)
def test_a_bad_expression_is_named_with_why(sql, needle):
    with pytest.raises(DerivedColumnError, match="bad_one") as exc:
        derived_columns(table_config(ok="total / NULLIF(tenure, 0)", bad_one=sql))
    assert needle in str(exc.value)


def test_declared_type_must_match_the_result():
    with pytest.raises(DerivedColumnError, match="declared numeric but gives VARCHAR"):
        derived_columns(table_config(band={"sql": "contract || '!'", "type": "numeric"}))
    (band,) = derived_columns(
        table_config(band={"sql": "CAST(tenure / 12 AS INTEGER)", "type": "categorical"})
    )
    assert band.kind == "categorical"  # a number may be declared categorical


@pytest.mark.parametrize(
    "derived, needle",
    [
        ({"tenure": "monthly * 2"}, "mapped once"),
        ({"has space": "monthly * 2"}, "identifiers"),
        ({"x": {"sql": "monthly", "kind": "numeric"}}, "kind"),
        ({"x": ""}, "at least 1 character"),
    ],
)
def test_bad_names_and_keys_fail_when_the_config_loads(derived, needle):
    with pytest.raises(ValidationError, match=needle):
        table_config(**derived)


def test_kinds_inputs_and_values(rows):
    cfg = table_config(
        per_month="total / NULLIF(tenure, 0)",
        raw_ratio="total / tenure",
        long_contract="contract <> 'Month-to-month'",
        plan="contract || ' @ ' || CAST(monthly AS INTEGER)",
    )
    d = {x.name: x for x in derived_columns(cfg)}
    assert d["per_month"] == Derived("per_month", "total / NULLIF(tenure, 0)", "numeric", ("tenure", "total"))
    assert d["long_contract"].kind == "numeric" and d["plan"].kind == "categorical"
    out = add_derived(rows, d.values(), cfg.categorical_columns)
    assert list(out.columns) == [*rows.columns, *d]  # the input columns untouched, in order
    np.testing.assert_allclose(out["per_month"], [np.nan, 30.0, 45.0, 40.0])  # 0 tenure: NULL
    # a plain division by zero is infinite in DuckDB: it becomes missing too, never inf
    assert np.isnan(out.loc[0, "raw_ratio"]) and np.isfinite(out["raw_ratio"].dropna()).all()
    assert out["long_contract"].tolist()[:2] == [0.0, 1.0] and np.isnan(out.loc[2, "long_contract"])
    assert out["plan"].tolist() == ["Month-to-month @ 20", "One year @ 30", None, "Two year @ 40"]


def test_row_wise_and_in_order_whatever_the_batch(rows):
    """A row is derived the same alone as in a table (serving one row = training on many), in row order."""
    cfg = table_config(per_month="total / NULLIF(tenure, 0)", plan="contract || '-' || tenure")
    d = derived_columns(cfg)
    big = pd.concat([rows] * 500, ignore_index=True).sample(frac=1, random_state=3)
    together = add_derived(big, d, cfg.categorical_columns)
    for i in (0, 1, 2, 3, 1999):
        alone = add_derived(big.iloc[[i]], d, cfg.categorical_columns)
        pd.testing.assert_frame_equal(alone, together.iloc[[i]])


def test_integer_or_float_inputs_give_the_same_values(rows):
    """Inputs are typed as the model reads them, so a caller's 10 and 10.0 derive alike."""
    cfg = table_config(half="tenure / 2")
    d = derived_columns(cfg)
    a = add_derived(rows, d, cfg.categorical_columns)["half"]
    b = add_derived(rows.astype({"tenure": "float64"}), d, cfg.categorical_columns)["half"]
    pd.testing.assert_series_equal(a, b)
    assert a.tolist() == [0.0, 5.0, 10.0, 2.5]  # not integer division


def test_a_runtime_error_names_the_columns(rows):
    cfg = table_config(bad="CAST(contract AS INTEGER)")
    with pytest.raises(DerivedColumnError, match=r"\['bad'\] could not be computed"):
        add_derived(rows, derived_columns(cfg), cfg.categorical_columns)


def test_missing_input_column_is_refused(rows):
    cfg = table_config(per_month="total / NULLIF(tenure, 0)")
    with pytest.raises(ValueError, match="missing feature columns"):
        add_derived(rows.drop(columns=["total"]), derived_columns(cfg), cfg.categorical_columns)
