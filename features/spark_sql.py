"""The DuckDB queries, transpiled to Spark SQL by SQLGlot: one source of truth, two engines.

The feature query (``features/compute.py``) and ingestion's number plan and hash
(``pipelines/ingest.py``) are written once, in DuckDB's dialect; Spark runs the SQLGlot
translation of that text. Why SQLGlot and not Ibis: the definitions already are SQL, tested against
point-in-time leaks; Ibis would mean rewriting them as expressions (a second copy while migrating)
and adding a backend layer between us and both engines. SQLGlot changes nothing on the DuckDB side
and its output is plain Spark SQL one can read (``churn features --show-spark-sql``-style debugging
is ``print(to_spark(sql))``). The parity tests (``tests/features/test_engine_parity.py``) hold the
translation to the DuckDB results.

Three things SQLGlot cannot know are fixed here on the parsed tree:

- Decimal literals (``60.0``) are DECIMAL in both engines, but Spark rounds DECIMAL division to
  6 places where DuckDB goes to DOUBLE: every such literal becomes a DOUBLE.
- ``unnest($snapshots)`` in a select list is a generator nested in a cast, which Spark refuses: the
  ``snaps`` CTE is dropped and the engine registers a ``snaps`` view of the snapshot dates instead.
- DuckDB reads hex digits as an integer by casting ``'0x' || digits``; Spark's cast gives NULL there,
  so that cast becomes ``CAST(conv(digits, 16, 10) AS BIGINT)`` (ingestion's callee hash).

Named parameters (``$recent``) become Spark's named parameter markers (``:recent``), bound by
``spark.sql(query, args=...)``: no value is pasted into the text (the salt included).
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

SNAPSHOTS_VIEW = "snaps"


def to_spark(duckdb_sql: str, *, drop_ctes: tuple[str, ...] = ()) -> str:
    """``duckdb_sql`` in Spark's dialect, decimal literals as DOUBLE, the CTEs ``drop_ctes`` removed
    (their names then refer to views the caller registers)."""
    tree = sqlglot.parse_one(duckdb_sql, read="duckdb")
    for cte in list(tree.find_all(exp.CTE)):
        if cte.alias in drop_ctes:
            cte.pop()
    tree = tree.transform(_double_literal).transform(_hex_to_integer)
    return tree.sql(dialect="spark")


def _double_literal(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Literal) and not node.is_string and "." in node.this:
        return exp.cast(node.copy(), exp.DataType.build("DOUBLE"))
    return node


def _hex_to_integer(node: exp.Expression) -> exp.Expression:
    """``CAST(('0x' || digits) AS <integer>)`` as ``CAST(conv(digits, 16, 10) AS <integer>)``."""
    if not isinstance(node, exp.Cast):
        return node
    inner = node.this.unnest()
    if isinstance(inner, exp.DPipe) and inner.this.is_string and inner.this.name.lower() == "0x":
        conv = exp.Anonymous(
            this="conv", expressions=[inner.expression.copy(), exp.Literal.number(16), exp.Literal.number(10)]
        )
        return exp.Cast(this=conv, to=node.to.copy())
    return node
