"""Great Expectations suites that guard the raw tables before anything downstream runs.

A failing batch raises :class:`ValidationFailed` whose message names the file, each failed
expectation and example bad values; the full result is written to ``reports/validation.json``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.catalogue import FEATURE_NAMES
from pipelines.config import Settings
from pipelines.io import write_json_atomic

log = logging.getLogger(__name__)

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

# table -> required columns (a missing one fails the batch before any value check)
SCHEMAS: dict[str, list[str]] = {
    "subscribers": ["subscriber_id", "activation_date", "plan", "contract_end_date", "monthly_fee", "vip_tier", "region"],
    "cdr": ["subscriber_id", "other_party", "start_time", "duration_s", "direction"],
    "billing": ["subscriber_id", "bill_month", "bill_date", "charge", "arrears"],
    "complaints": ["subscriber_id", "complaint_time", "category"],
    "churn_events": ["subscriber_id", "event_date", "event_type"],
}
FEATURE_TABLE = "subscriber_features"


class ValidationFailed(RuntimeError):
    """Raised when a raw table breaks its expectations; nothing downstream has been touched."""

    def __init__(self, failures: list["Failure"]):
        self.failures = failures
        lines = [f"raw data failed validation ({len(failures)} problem(s)); nothing downstream was changed:"]
        lines += [f"  - {f}" for f in failures]
        super().__init__("\n".join(lines))


@dataclass
class Failure:
    table: str
    file: str
    expectation: str
    column: str | None
    detail: str
    examples: list = field(default_factory=list)

    def __str__(self) -> str:
        col = f" column '{self.column}'" if self.column else ""
        ex = f"; e.g. {self.examples[:5]}" if self.examples else ""
        return f"{self.file}: {self.expectation}{col}: {self.detail}{ex}"


def _suite(table: str, settings: Settings):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"raw_{table}")
    add = suite.add_expectation
    add(gxe.ExpectColumnValuesToNotBeNull(column="subscriber_id"))
    if table == "subscribers":
        add(gxe.ExpectColumnValuesToBeUnique(column="subscriber_id"))
        add(gxe.ExpectColumnValuesToBeInSet(column="plan", value_set=["prepaid", "postpaid"]))
        add(gxe.ExpectColumnValuesToBeInSet(column="vip_tier", value_set=["diamond", "gold", "silver", "none"]))
        add(gxe.ExpectColumnValuesToBeBetween(column="monthly_fee", min_value=0))
        add(gxe.ExpectColumnValuesToNotBeNull(column="activation_date"))
    elif table == "cdr":
        add(gxe.ExpectColumnValuesToNotBeNull(column="start_time"))
        add(gxe.ExpectColumnValuesToNotBeNull(column="other_party"))
        add(gxe.ExpectColumnValuesToBeBetween(column="duration_s", min_value=0, max_value=86_400))
        add(gxe.ExpectColumnValuesToBeInSet(column="direction", value_set=["in", "out"]))
    elif table == "billing":
        add(gxe.ExpectColumnValuesToBeBetween(column="charge", min_value=0))
        add(gxe.ExpectColumnValuesToBeBetween(column="arrears", min_value=0))
        add(gxe.ExpectColumnValuesToNotBeNull(column="bill_date"))
    elif table == "complaints":
        add(gxe.ExpectColumnValuesToNotBeNull(column="complaint_time"))
    elif table == "churn_events":
        add(gxe.ExpectColumnValuesToNotBeNull(column="event_date"))
        add(gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=["port_out", "cancellation", "inactivity"]))
    elif table == FEATURE_TABLE:
        add(gxe.ExpectCompoundColumnsToBeUnique(column_list=["subscriber_id", "event_timestamp"]))
        for name in FEATURE_NAMES:
            add(gxe.ExpectColumnValuesToNotBeNull(column=name))
        for name in ("zero_call_days_30d", "longest_zero_streak_30d"):
            add(gxe.ExpectColumnValuesToBeBetween(column=name, min_value=0, max_value=30))
        for name in ("competitor_hotline_calls_30d", "own_hotline_calls_30d", "complaints_90d", "tenure_days",
                     "monthly_charge", "arrears", "minutes_recent_per_day", "minutes_baseline_per_day"):
            add(gxe.ExpectColumnValuesToBeBetween(column=name, min_value=0))
        add(gxe.ExpectColumnValuesToBeBetween(column="days_to_contract_end", min_value=0, max_value=365))
        add(gxe.ExpectColumnValuesToBeBetween(column="minutes_change_pct", min_value=-100))
    return suite


def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def validate_table(df: pd.DataFrame, table: str, file: str, settings: Settings, ctx=None) -> list[Failure]:
    """Run the named table's suite on ``df``; return the failures (empty when the batch is good)."""
    required = SCHEMAS.get(table, ["subscriber_id", "event_timestamp", *FEATURE_NAMES])
    return run_suite(df, lambda: _suite(table, settings), table, file, required, ctx)


def run_suite(df: pd.DataFrame, make_suite, table: str, file: str, required: list[str], ctx=None) -> list[Failure]:
    """Check ``required`` columns, then run the GX suite ``make_suite()`` on ``df``.

    The reusable core: any table (raw, feature or a customer snapshot) is validated through here,
    so every failure reads the same way.
    """
    missing = [c for c in required if c not in df.columns]
    if missing:  # value checks on absent columns say nothing useful: report the schema problem alone
        return [Failure(table, file, "expect_table_columns_to_include", c, "required column is missing") for c in missing]
    ctx = ctx or _context()
    asset = ctx.data_sources.add_or_update_pandas("raw").add_dataframe_asset(table)
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(make_suite(), result_format="SUMMARY")
    failures = []
    for r in result.results:
        if r.success:
            continue
        kw = r.expectation_config.kwargs
        res = r.result or {}
        if res.get("unexpected_count") is not None:
            detail = f"{res['unexpected_count']} of {res.get('element_count')} rows unexpected"
            bounds = {k: kw[k] for k in ("min_value", "max_value", "value_set") if kw.get(k) is not None}
            if bounds:
                detail += f" (expected {bounds})"
        else:
            detail = str((r.exception_info or {}).get("exception_message") or "expectation failed")
        examples = [None if pd.isna(v) else v for v in (res.get("partial_unexpected_list") or [])]
        failures.append(Failure(table, file, r.expectation_config.type, kw.get("column"), detail, examples))
    return failures


def validate_raw(settings: Settings) -> dict:
    """Validate every raw table in ``settings.raw_dir``; raise :class:`ValidationFailed` on any failure."""
    ctx = _context()
    failures: list[Failure] = []
    summary = {}
    for table in SCHEMAS:
        path = settings.raw_dir / f"{table}.parquet"
        if not path.exists():
            failures.append(Failure(table, str(path), "file_exists", None, "raw table file not found"))
            continue
        df = pd.read_parquet(path)
        found = validate_table(df, table, str(path), settings, ctx)
        summary[table] = {"file": str(path), "rows": len(df), "fingerprint": _fingerprint(path),
                          "failures": [str(f) for f in found]}
        failures += found
        log.info("validated %-12s %9d rows: %s", table, len(df), "ok" if not found else f"{len(found)} failure(s)")
    report = {"success": not failures, "tables": summary}
    (settings.reports_dir / "validation_failed.json").unlink(missing_ok=True)
    write_json_atomic(report, settings.reports_dir / ("validation.json" if not failures else "validation_failed.json"))
    if failures:
        raise ValidationFailed(failures)
    return report


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def ensure_validated(settings: Settings) -> None:
    """Re-validate unless the last passing report covers exactly the raw files on disk now."""
    report_path = settings.reports_dir / "validation.json"
    if report_path.exists():
        report = json.loads(report_path.read_text())
        tables = report.get("tables", {})
        current = {t: settings.raw_dir / f"{t}.parquet" for t in SCHEMAS}
        if report.get("success") and all(
            p.exists() and tables.get(t, {}).get("fingerprint") == _fingerprint(p) for t, p in current.items()
        ):
            return
    validate_raw(settings)


def validate_features(df: pd.DataFrame, settings: Settings, file: str) -> None:
    """The feature-table suite: no nulls, values in range, one row per subscriber and snapshot."""
    failures = validate_table(df, FEATURE_TABLE, file, settings)
    if failures:
        raise ValidationFailed(failures)

