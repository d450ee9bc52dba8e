"""A customer table's derived columns: row-wise DuckDB SQL over the mapped feature columns.

``source.derived_columns`` names each one and gives its SQL, e.g. ``charges_per_tenure_month:
"total_charges / NULLIF(tenure, 0)"``. :func:`derived_columns` checks them against the mapping
before anything runs (one expression, known columns only, no aggregate, window, subquery or
volatile function, a number or text as result); :func:`add_derived` computes them. Training calls it
once on the table, and the trained ``ChurnModel`` calls it on every row it scores (pyfunc, scoring
with reasons, the endpoint's feature rows): one code path, so a served row cannot be derived
differently from a training row.

Inputs are typed as the model reads them (numeric columns DOUBLE, categoricals VARCHAR, missing
values NULL), so the check binds an expression exactly as it will run. Division by zero: write
``NULLIF(x, 0)`` to get NULL; any result still infinite or NaN (``x / 0`` is infinite in DuckDB)
becomes missing, which both models handle.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from core.config import CustomerTableConfig, DerivedColumn

# DuckDB result types a derived column may have: numbers (booleans as 0/1) or text (a categorical)
NUMERIC_SQL = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
    "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "BOOLEAN",
}  # fmt: skip
TEXT_SQL = {"VARCHAR"}
# functions whose value changes from call to call: a served row would not get its training value
VOLATILE = {"random", "setseed", "uuid", "gen_random_uuid", "uuidv4", "uuidv7", "now", "today",
            "current_date", "current_time", "current_timestamp", "get_current_time",
            "get_current_timestamp", "transaction_timestamp", "nextval"}  # fmt: skip


class DerivedColumnError(ValueError):
    """A derived column that cannot work as configured: the message names it and says why."""


@dataclass(frozen=True)
class Derived:
    """A derived column as the model carries it."""

    name: str
    sql: str
    kind: Literal["numeric", "categorical"]
    inputs: tuple[str, ...]  # the mapped columns it reads


_local = threading.local()


def _connection() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB (opening one per call costs more than the query), which sees
    only the frames it is given: no files, no Python variables."""
    con = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect(config={"enable_external_access": False})
        con.execute("SET python_enable_replacements = false")
        _local.con = con
    return con


def _walk(node) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _parse(con, name: str, sql: str, mapped: Sequence[str]) -> tuple[str, ...]:
    """One row-wise expression (no subquery, nothing volatile); returns the mapped columns it reads."""
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [f"SELECT {sql}"]).fetchall()[0][0])
    where = f"derived column {name!r} (`{sql}`)"
    if tree.get("error") or len(tree.get("statements", [])) != 1:
        raise DerivedColumnError(f"{where} is not one SQL expression")
    nodes = list(_walk(tree["statements"]))
    if any(n.get("class") == "SUBQUERY" for n in nodes):
        raise DerivedColumnError(f"{where} has a subquery: a derived column reads its own row only")
    volatile = sorted(VOLATILE & {str(n.get("function_name", "")).lower() for n in nodes})
    if volatile:
        raise DerivedColumnError(f"{where} calls {volatile}: another value on every call")
    refs = {n["column_names"][-1] for n in nodes if n.get("class") == "COLUMN_REF"}
    return tuple(c for c in mapped if c in refs)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def _bind_error(exc: duckdb.BinderException, mapped: Sequence[str]) -> str:
    """DuckDB's binder error in the config's terms."""
    text = _first_line(exc).removeprefix("Binder Error: ")
    unknown = re.search(r'column "([^"]+)" not found', text)
    if unknown:
        return (
            f"unknown column {unknown.group(1)!r}: it may use only the mapped feature columns {list(mapped)}"
        )
    if "aggregate" in text or "window function" in text or "GROUP BY" in text:
        return "an aggregate or window function reads other rows: a derived column is row-wise"
    return text


def _kind(where: str, sql_type: str, declared: str | None) -> Literal["numeric", "categorical"]:
    if sql_type in TEXT_SQL:
        kind = "categorical"
    elif sql_type in NUMERIC_SQL or sql_type.startswith("DECIMAL"):
        kind = "numeric"
    else:
        raise DerivedColumnError(f"{where} gives {sql_type}: a derived column must be a number or text")
    if declared == "numeric" and kind != "numeric":
        raise DerivedColumnError(f"{where} is declared numeric but gives {sql_type}")
    return declared or kind  # a number may be declared categorical (its values become categories)


def _check_one(con, rel, name: str, spec: DerivedColumn, mapped: Sequence[str]) -> Derived:
    """Parse, then bind against the typed, empty mapped columns; the kind follows the result type."""
    sql = spec.sql.strip()
    where = f"derived column {name!r} (`{sql}`)"
    try:
        expr = duckdb.SQLExpression(sql)
        inputs = _parse(con, name, sql, mapped)
        _ = rel.filter(expr.isnull().isnotnull()).types  # a WHERE clause refuses aggregates and windows
        sql_type = str(rel.select(expr.alias(name)).types[0])
    except duckdb.BinderException as exc:
        raise DerivedColumnError(f"{where}: {_bind_error(exc, mapped)}") from None
    except duckdb.Error as exc:
        raise DerivedColumnError(f"{where}: {_first_line(exc)}") from None
    if not inputs:
        raise DerivedColumnError(f"{where} reads no mapped column: a constant tells the model nothing")
    return Derived(name, sql, _kind(where, sql_type, spec.type), inputs)


def derived_columns(cfg: CustomerTableConfig) -> list[Derived]:
    """The config's derived columns, each checked against the mapping (raises :class:`DerivedColumnError`).

    Only the mapped feature columns are visible: not the id, not the label (a derived column must not
    read the answer), not the file's unmapped columns."""
    if not cfg.derived_columns:
        return []
    schema = [(c, pa.float64()) for c in cfg.numeric_columns] + [
        (c, pa.string()) for c in cfg.categorical_columns
    ]
    con = _connection()
    rel = con.from_arrow(pa.schema(schema).empty_table())
    return [_check_one(con, rel, n, spec, cfg.features) for n, spec in cfg.derived_columns.items()]


def _inputs(df: pd.DataFrame, columns: Iterable[str], categorical: Collection[str]) -> pa.Table:
    """The columns as the model reads them: numbers as float64, categoricals as text, missing as NULL."""
    cols = {
        c: df[c].astype("string") if c in categorical else pd.to_numeric(df[c]).astype("float64")
        for c in columns
    }
    return pa.Table.from_pandas(pd.DataFrame(cols).reset_index(drop=True), preserve_index=False)


def add_derived(df: pd.DataFrame, derived: Iterable[Derived], categorical: Collection[str]) -> pd.DataFrame:
    """``df`` with every derived column (re)computed from its mapped columns, row for row; an input
    column in ``categorical`` is read as text, any other as a number.

    Numeric results are float64 with infinities and NaN as missing; categorical ones text (None when
    missing). Raises :class:`DerivedColumnError` when DuckDB cannot evaluate one on these rows."""
    derived = list(derived)
    if not derived:
        return df
    used = dict.fromkeys(c for d in derived for c in d.inputs)
    missing = [c for c in used if c not in df.columns]
    if missing:
        raise ValueError(f"missing feature columns: {missing}")
    rel = _connection().from_arrow(_inputs(df, used, categorical))
    try:
        out = rel.select(*(duckdb.SQLExpression(d.sql).alias(d.name) for d in derived)).df()
    except duckdb.Error as exc:
        names = [d.name for d in derived]
        raise DerivedColumnError(
            f"derived columns {names} could not be computed: {_first_line(exc)}"
        ) from None
    cols = {}
    for d in derived:
        v = out[d.name]
        if d.kind == "numeric":
            cols[d.name] = v.astype("float64").replace([np.inf, -np.inf], np.nan).to_numpy()
        else:
            cols[d.name] = v.map(lambda x: None if pd.isna(x) else str(x)).astype(object).to_numpy()
    return df.assign(**cols)
