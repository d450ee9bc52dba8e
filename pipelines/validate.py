"""Great Expectations suites that guard the operator's export before anything downstream runs.

Every landing table gets a suite: schema, nulls in keys, value ranges, allowed categories,
timestamps inside the batch period and not in the future, duplicate calls and recharges,
referential integrity (calls, bills, complaints, events and recharges of known subscribers); the
CDR partitions are checked for presence (freshness: the latest day is there; no day is missing).
Checks listed in ``validation.warn`` only warn. A failing batch raises :class:`ValidationFailed`
whose message names each failed expectation, the table, the file or partition and example bad
values; the full result goes to ``reports/validation.json`` and GX Data Docs HTML to
``reports/data_docs/index.html``.

Incremental: the passing report records, per CDR day partition and per small table, the content hash
it passed with, the checks' version (:func:`suite_key`: this module, the validation settings and,
for every table but subscribers, the subscribers table the orphan check reads) and the span of its
timestamps. The next run re-checks only units whose bytes or checks changed, or whose span left
the batch period; a new day is read and checked alone, and a changed subscribers table re-checks
everything. Presence of the day partitions is checked every run (it reads no data).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.execution_engine import pandas_execution_engine
from great_expectations.expectations.metadata_types import FailureSeverity

from core.config import Settings
from core.io import (
    PARTITION,
    cached_content_hash,
    fingerprint,
    partition_hashes,
    sha256_files,
    write_json_atomic,
)
from features.catalogue import CATALOGUE, FEATURE_NAMES
from features.manifest import hash_cache
from pipelines.errors import Failure, ValidationFailed
from pipelines.numbers import normalise_series

# Great Expectations is imported inside the functions that build and run suites (_suite, _context,
# run_suite), to keep the `churn` CLI fast to start: GX costs seconds to import, and the CLI imports
# this module for ValidationFailed on every stage command, also those that never validate (generate,
# train).

log = logging.getLogger(__name__)

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# GX fingerprints every in-memory batch under this many bytes by hashing all its values, for a batch
# marker nothing here reads: a tenth of a 10^7-call export's validation. 0: never.
pandas_execution_engine.HASH_THRESHOLD = 0

# landing table -> required columns (a missing one fails the batch before any value check)
SCHEMAS: dict[str, list[str]] = {
    "subscribers": [
        "subscriber_id",
        "msisdn",
        "activation_date",
        "plan",
        "tariff",
        "contract_end_date",
        "monthly_fee",
        "vip_tier",
        "region",
    ],
    "cdr": ["subscriber_id", "other_party", "start_time", "duration_s", "direction"],
    "billing": ["subscriber_id", "bill_month", "bill_date", "charge", "arrears"],
    "complaints": ["subscriber_id", "complaint_time", "category"],
    "churn_events": ["subscriber_id", "event_date", "event_type"],
    "recharges": ["subscriber_id", "recharge_time", "amount"],
}
# table -> the kind of value each column must hold: checked before any value check, so a timestamp
# stored as text is reported as text, not as values out of range
TYPES: dict[str, dict[str, str]] = {
    "subscribers": {
        "activation_date": "timestamp",
        "contract_end_date": "timestamp",
        "monthly_fee": "number",
    },
    "cdr": {"other_party": "text", "start_time": "timestamp", "duration_s": "number"},
    "billing": {"bill_date": "timestamp", "charge": "number", "arrears": "number"},
    "complaints": {"complaint_time": "timestamp"},
    "churn_events": {"event_date": "timestamp"},
    "recharges": {"recharge_time": "timestamp", "amount": "number"},
}
HOLDS = {
    "text": "text",
    "timestamp": "timestamps",
    "number": "numbers",
    "true/false": "true/false values",
    "mixed": "mixed kinds of values",
}
WANTED = {"text": "text", "timestamp": "a timestamp", "number": "a number"}
PRIVATE_COLUMNS = ("other_party", "msisdn")  # phone numbers: never in an example of a duplicate row
MAX_EXAMPLES = 5
MAX_RECHARGE = 10_000  # CNY: a larger single prepaid top-up is an export error
FEATURE_TABLE = "subscriber_features"
ORPHAN = "orphan_subscriber_id"  # added to a batch: its subscriber id when not a known subscriber
# table -> the column its suite checks against the batch period, and whether its start is checked
# too (an activation date only must not lie in the future): a passing unit's recorded span of it
# still passes while it lies inside the period
PERIOD_COLUMN = {
    "subscribers": ("activation_date", False),
    "cdr": ("start_time", True),
    "complaints": ("complaint_time", True),
    "churn_events": ("event_date", True),
    "recharges": ("recharge_time", True),
}
_counter = itertools.count()


def callee_regex(settings: Settings) -> str:
    """Numbers ingestion knows how to classify: mobile, landline, international, service numbers."""
    return r"^(?:1\d{10}|0[1-9]\d{9,10}|00\d{6,15}|1\d{4}|95\d{3})$"


def _period(settings: Settings) -> tuple[dt.datetime, dt.datetime]:
    """The batch period: timestamps before its start or after its end (or now) are export errors."""
    cfg = settings.data
    return (
        pd.Timestamp(cfg.start_date).to_pydatetime(),
        min(pd.Timestamp(cfg.end_date), pd.Timestamp(dt.datetime.now())).to_pydatetime(),
    )


def _in_period(column: str, period, **kw) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=period[0], max_value=period[1], **kw)


INSIDE_PERIOD = {"check": "timestamps inside the batch period, not in the future"}


def _subscribers(settings: Settings, period) -> list:
    return [
        gxe.ExpectColumnValuesToBeUnique(column="subscriber_id"),
        gxe.ExpectColumnValuesToBeInSet(column="plan", value_set=["prepaid", "postpaid"]),
        gxe.ExpectColumnValuesToBeInSet(column="vip_tier", value_set=["diamond", "gold", "silver", "none"]),
        gxe.ExpectColumnValuesToBeBetween(column="monthly_fee", min_value=0, max_value=100_000),
        gxe.ExpectColumnValuesToNotBeNull(column="activation_date"),
        gxe.ExpectColumnValuesToBeBetween(column="activation_date", max_value=period[1]),
    ]


def _cdr(settings: Settings, period) -> list:
    warn_only = "callee_format" in settings.validation.warn
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="start_time"),
        gxe.ExpectColumnValuesToNotBeNull(column="other_party"),
        _in_period("start_time", period, meta=INSIDE_PERIOD),
        gxe.ExpectColumnValuesToBeBetween(column="duration_s", min_value=0, max_value=86_400),
        gxe.ExpectColumnValuesToBeInSet(column="direction", value_set=["in", "out"]),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["subscriber_id", "start_time", "other_party"], meta={"check": "duplicate calls"}
        ),
        gxe.ExpectColumnValuesToMatchRegex(
            column="other_party",
            regex=callee_regex(settings),
            mostly=settings.validation.callee_format_mostly,
            severity=FailureSeverity.WARNING if warn_only else FailureSeverity.CRITICAL,
            meta={"check": "callee_format"},
        ),
    ]


def _billing(settings: Settings, period) -> list:
    return [
        gxe.ExpectColumnValuesToBeBetween(column="charge", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="arrears", min_value=0),
        gxe.ExpectColumnValuesToNotBeNull(column="bill_date"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["subscriber_id", "bill_month"]),
    ]


def _complaints(settings: Settings, period) -> list:
    return [gxe.ExpectColumnValuesToNotBeNull(column="complaint_time"), _in_period("complaint_time", period)]


def _churn_events(settings: Settings, period) -> list:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="event_date"),
        gxe.ExpectColumnValuesToBeInSet(
            column="event_type", value_set=["port_out", "cancellation", "inactivity"]
        ),
        _in_period("event_date", period),
    ]


def _recharges(settings: Settings, period) -> list:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="recharge_time"),
        _in_period("recharge_time", period, meta=INSIDE_PERIOD),
        gxe.ExpectColumnValuesToNotBeNull(column="amount"),
        gxe.ExpectColumnValuesToBeBetween(
            column="amount",
            min_value=0,
            max_value=MAX_RECHARGE,
            strict_min=True,
            meta={"check": f"recharge amount above 0 and at most {MAX_RECHARGE} CNY"},
        ),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["subscriber_id", "recharge_time"], meta={"check": "duplicate recharges"}
        ),
    ]


def _feature_table(settings: Settings, period) -> list:
    out = [gxe.ExpectCompoundColumnsToBeUnique(column_list=["subscriber_id", "event_timestamp"])]
    for f in CATALOGUE:  # not null, inside the range the catalogue states
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=f.name))
        if f.lo is not None or f.hi is not None:
            out.append(gxe.ExpectColumnValuesToBeBetween(column=f.name, min_value=f.lo, max_value=f.hi))
    return out


# table -> its expectations (beyond a non-null subscriber id, and no orphans where ids are known)
EXPECTATIONS = {
    "subscribers": _subscribers,
    "cdr": _cdr,
    "billing": _billing,
    "complaints": _complaints,
    "churn_events": _churn_events,
    "recharges": _recharges,
    FEATURE_TABLE: _feature_table,
}


def _suite(table: str, settings: Settings, orphans: bool = False) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name=f"{table}_{next(_counter)}")
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="subscriber_id"))
    if orphans:  # the ids were looked up before (see validate_table): the suite holds no id list
        suite.add_expectation(gxe.ExpectColumnValuesToBeNull(column=ORPHAN, meta={"check": "orphans"}))
    for expectation in EXPECTATIONS[table](settings, _period(settings)) if table in EXPECTATIONS else []:
        suite.add_expectation(expectation)
    return suite


def _context(settings: Settings | None = None):
    """An in-memory GX context whose only Data Docs site (given ``settings``) is the workdir's
    ``reports/data_docs``: GX's default ephemeral context adds a site in a new folder of the system
    temp dir, built on every checkpoint run and never removed."""
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    )
    ctx = gx.get_context(mode="ephemeral", project_config=config)
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    if settings is not None:
        ctx.add_data_docs_site(
            site_name="churnwarn",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(settings.reports_dir / "data_docs"),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return ctx


def validate_table(
    df: pd.DataFrame, table: str, file: str, settings: Settings, ctx=None, known_ids: list[str] | None = None
) -> list[Failure]:
    """Run the named table's suite on ``df``; return the failures (empty when the batch is good).

    Orphans (ids not in ``known_ids``) are looked up here, in one hash join, into a column the suite
    expects empty: an id list inside the expectation would be copied by GX on every use, minutes per
    batch at a million subscribers."""
    required = SCHEMAS.get(table, ["subscriber_id", "event_timestamp", *FEATURE_NAMES])
    orphans = known_ids is not None and table != "subscribers" and "subscriber_id" in df.columns
    numbers = table == "cdr" and "other_party" in df.columns and _kind(df["other_party"]) == "text"
    if orphans or numbers:
        df = df.copy(deep=False)
    if numbers:  # checked (format, duplicates) in the canonical form ingestion classifies
        df["other_party"] = normalise_series(df["other_party"], settings.data.number_region)
    if orphans:
        ids = df["subscriber_id"]
        df[ORPHAN] = ids.astype(object).where(~ids.astype(str).isin(known_ids) & ids.notna())
    return run_suite(df, lambda: _suite(table, settings, orphans), table, file, required, ctx)


def _short(value):
    if isinstance(value, (list, set, tuple)) and len(value) > 10:
        return f"{len(value)} allowed values"
    return value


def run_suite(
    df: pd.DataFrame, make_suite, table: str, file: str, required: list[str], ctx=None
) -> list[Failure]:
    """Check ``required`` columns, then run the GX suite ``make_suite()`` on ``df``.

    The reusable core: any table (landing, feature or a customer snapshot) is validated through
    here, so every failure reads the same way. When ``ctx`` has a Data Docs site, the run is added
    to it. A ``date`` column (the CDR partition) names the partitions of failing rows.
    """

    missing = [c for c in required if c not in df.columns]
    if missing:  # value checks on absent columns say nothing useful: report the schema problem alone
        return [
            Failure(table, file, "expect_table_columns_to_include", c, "required column is missing")
            for c in missing
        ]
    mistyped = type_failures(df, table, file)  # their value checks would only restate the type
    skip = {f.column for f in mistyped}
    result = _run_checkpoint(ctx or _context(), df, make_suite, table, skip)
    return mistyped + [f for r in result.results if (f := _failure(r, df, table, file)) is not None]


def _kind(column: pd.Series) -> str:
    """What a column holds: timestamp, number, text, or mixed (several of these)."""
    dtype = column.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamp"
    if pd.api.types.is_bool_dtype(dtype):
        return "true/false"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if not pd.api.types.is_object_dtype(dtype):
        return "text"  # string, categorical
    inferred = pd.api.types.infer_dtype(column, skipna=True)  # one C pass over the values
    if inferred in ("datetime64", "datetime", "date"):
        return "timestamp"
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return "number"
    if inferred == "boolean":
        return "true/false"
    return "text" if inferred in ("string", "empty") else "mixed"


def _value_kind(value) -> str:
    if isinstance(value, (dt.date, pd.Timestamp)):
        return "timestamp"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "number"
    return "text"


def type_failures(df: pd.DataFrame, table: str, file: str) -> list[Failure]:
    """Columns of ``table`` (:data:`TYPES`) holding another kind of value than expected, in plain
    words, with how many values and up to five of them."""
    out = []
    for column, expected in TYPES.get(table, {}).items():
        if column not in df.columns:
            continue
        found = _kind(df[column])
        if found == expected:
            continue
        values = df[column].dropna()
        if found == "mixed":
            wrong = values[values.map(_value_kind) != expected]
            what = f"{len(wrong)} of {len(values)} values are not {WANTED[expected]}"
        else:
            wrong = values
            what = f"all {len(values)} values are {HOLDS[found]}"
        detail = f"[type] holds {HOLDS[found]} where {WANTED[expected]} is expected: {what}"
        if column == "other_party":
            detail += " (numbers stored as numbers lose the leading 0 of landlines and international calls)"
        parts = sorted(df.loc[wrong.index[:1000], PARTITION].astype(str).unique()) if PARTITION in df else []
        examples = [str(v) for v in pd.unique(wrong.head(1000))[:MAX_EXAMPLES]]
        out.append(Failure(table, file, "column_type", column, detail, examples, partitions=parts))
    return out


def _vectorisable(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the dtypes GX's pandas engine compares vectorised: int64, float64, datetime64[ns].

    Any other (the microsecond timestamps ingestion and Spark write, int32 durations) takes its
    one-Python-call-per-value path: 10 s of a 1.5M-call export's 29 s of checks. A column that does
    not fit (a timestamp outside the nanosecond range, a missing integer) stays as it is."""
    out = None
    for c, dtype in df.dtypes.items():
        kind = getattr(dtype, "kind", "")
        if isinstance(dtype, pd.DatetimeTZDtype) or not kind or kind not in "iufM":
            continue
        target = {"i": "int64", "u": "int64", "f": "float64", "M": "datetime64[ns]"}[kind]
        if dtype == target:
            continue
        try:
            col = df[c].astype(target)
        except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
            continue
        if kind == "u" and (col < 0).any():  # wrapped round: leave the values as they are
            continue
        out = df.copy(deep=False) if out is None else out
        out[c] = col
    return df if out is None else out


def _gx_frame(df: pd.DataFrame, suite) -> pd.DataFrame:
    """The frame GX checks: the columns the suite names (all when an expectation names none), in
    the dtypes it compares vectorised, consolidated (one block per dtype).

    GX's pandas engine copies or filters the whole frame once per expectation: each copy of a frame
    built column by column (the partition, the normalised numbers, the orphan ids) merged its blocks
    again, and columns no expectation reads (the ``date`` partition) were copied and null-checked
    along: together half of a 10^7-call export's validation."""
    named = [
        {getattr(e, "column", None), *(getattr(e, "column_list", None) or [])} - {None}
        for e in suite.expectations
    ]
    used = set().union(*named) if named and all(named) else set(df.columns)
    return _arrow_text(_vectorisable(df[[c for c in df.columns if c in used]])).copy()


def _arrow_text(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its columns of text (and missing values) held by Arrow: GX null-checks every
    column of a column check, which on Python strings walks every value (a quarter of a 10^7-call
    export's validation); Arrow keeps a validity bitmap. Same values, same comparisons."""
    out = df.copy(deep=False)
    for c in df.columns:
        if df[c].dtype == object and pd.api.types.infer_dtype(df[c], skipna=True) in ("string", "empty"):
            out[c] = df[c].astype("string[pyarrow]")
    return out


def _uses(expectation, columns: set) -> bool:
    named = {getattr(expectation, "column", None), *(getattr(expectation, "column_list", None) or [])}
    return bool(named & columns)


def _run_checkpoint(ctx, df: pd.DataFrame, make_suite, table: str, skip: set | frozenset = frozenset()):
    """Register the suite under a name unique in ``ctx`` and run it on ``df`` (updating Data Docs),
    without the expectations on the columns ``skip``."""
    used = ctx.__dict__.setdefault("_churnwarn_names", set())
    name = table if table not in used else f"{table}_{next(_counter)}"
    used.add(name)
    bd = (
        ctx.data_sources.add_or_update_pandas("landing")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("all")
    )
    suite = make_suite()
    suite.name = name
    if skip:
        suite = gx.ExpectationSuite(
            name=name, expectations=[e for e in suite.expectations if not _uses(e, skip)]
        )
    frame = _gx_frame(df, suite)
    suite = ctx.suites.add(suite)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=bd, suite=suite))
    sites = list((ctx.get_config().data_docs_sites or {}).keys())
    actions = [UpdateDataDocsAction(name="docs", site_names=sites)] if sites else []
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name=name,
            validation_definitions=[vd],
            actions=actions,
            result_format={"result_format": "SUMMARY"},
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": frame})
    return next(iter(run.run_results.values()))


def _failure(r, df: pd.DataFrame, table: str, file: str) -> Failure | None:
    """One expectation's result as a Failure (None when it passed, or is a warning with no row off)."""
    cfg = r.expectation_config
    res = r.result or {}
    unexpected = res.get("unexpected_count")
    severity = "warning" if str(getattr(cfg, "severity", "critical")).lower().endswith("warning") else "error"
    if r.success and not (severity == "warning" and unexpected):
        return None
    kw = cfg.kwargs
    if unexpected is not None:
        detail = f"{unexpected} of {res.get('element_count')} rows unexpected"
        bounds = {
            k: _short(kw[k])
            for k in ("min_value", "max_value", "value_set", "regex", "mostly")
            if kw.get(k) is not None
        }
        if bounds:
            detail += f" (expected {bounds})"
    else:
        detail = str((r.exception_info or {}).get("exception_message") or "expectation failed")
    check = (cfg.meta or {}).get("check")
    if check:
        detail = f"[{check}] {detail}"
    examples = _examples(res.get("partial_unexpected_list") or [])
    partitions = []
    idx = res.get("partial_unexpected_index_list") or []
    if PARTITION in df.columns and idx and all(isinstance(i, (int,)) for i in idx):
        partitions = sorted({str(df[PARTITION].iloc[i]) for i in idx if i < len(df)})
    column = kw.get("column") or ",".join(kw.get("column_list") or []) or None
    return Failure(
        table,
        file,
        cfg.type,
        column,
        detail,
        examples,
        severity if not r.success or severity == "warning" else "error",
        partitions,
    )


def _example(value):
    """One example as a message shows it: a timestamp as text; a row (of a duplicate check) as its
    key values without phone numbers."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_example(v)}" for k, v in value.items() if k not in PRIVATE_COLUMNS)
    if not isinstance(value, (list, tuple)) and pd.isna(value):
        return None
    return str(value) if isinstance(value, (pd.Timestamp, dt.datetime)) else value


def _examples(values: list) -> list:
    """At most :data:`MAX_EXAMPLES` distinct examples, in the order GX found them."""
    out = []
    for v in map(_example, values):
        if v not in out:
            out.append(v)
        if len(out) == MAX_EXAMPLES:
            break
    return out


def cdr_batches(
    cdr_dir: Path,
    failures: list[Failure] | None = None,
    max_rows: int | None = None,
    days: Iterable[str] | None = None,
):
    """CDR day partitions as frames of whole days, about ``max_rows`` rows each (all in one if None).

    Each frame has the ``date`` partition column (categoricals as text). Each file's schema is
    checked on the way: a file missing a required column is named in ``failures`` (when given) and
    left out, and so is a file re-delivered (the same calls as a file read before, :class:`Delivered`)
    : one message naming both files, instead of every call reported as a duplicate. Whole days per
    batch keep the duplicate check exact: a call's day is its partition. ``days``: only these
    partitions (by value), the others not read.
    """
    frames, rows, delivered = [], 0, Delivered()
    wanted = None if days is None else set(days)
    for day in sorted(Path(cdr_dir).glob(f"{PARTITION}=*")):
        if wanted is not None and day.name.split("=", 1)[1] not in wanted:
            continue
        for f in sorted(day.glob("*.parquet")):
            part = pd.read_parquet(f)
            missing = [c for c in SCHEMAS["cdr"] if c not in part.columns]
            if missing:
                if failures is not None:
                    failures += [
                        Failure(
                            "cdr",
                            str(f),
                            "expect_table_columns_to_include",
                            c,
                            "required column is missing",
                            partitions=[day.name.split("=", 1)[1]],
                        )
                        for c in missing
                    ]
                continue
            first = delivered.earlier(f, part)
            if first is not None:
                if failures is not None:
                    failures.append(_redelivered(f, first, len(part), day.name.split("=", 1)[1]))
                continue
            part[PARTITION] = day.name.split("=", 1)[1]
            frames.append(part)
            rows += len(part)
        if frames and max_rows is not None and rows >= max_rows:
            yield _text_frame(frames)
            frames, rows = [], 0
    if frames:
        yield _text_frame(frames)


@dataclass
class Delivered:
    """The CDR files read so far, by an order-free signature of their calls (row count, sums of
    start times and durations), to recognise a file delivered twice: the same calls, in any order,
    under any name. Only a file whose signature matches is compared in full (the earlier one read
    again), so memory holds no file and a normal export costs two sums a file."""

    files: dict[tuple, Path] = field(default_factory=dict)

    def earlier(self, path: Path, calls: pd.DataFrame) -> Path | None:
        """The file read before that holds the same calls as ``calls``, if any (and remember it)."""
        key = _signature(calls)
        other = self.files.get(key)
        if other is not None and _same_rows(pd.read_parquet(other), calls):
            return other
        self.files.setdefault(key, path)
        return None


def _signature(calls: pd.DataFrame) -> tuple:
    try:
        start = pd.to_datetime(calls["start_time"]).astype("datetime64[ns]").astype("int64").sum()
        return len(calls), int(start), int(pd.to_numeric(calls["duration_s"]).sum())
    except (TypeError, ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        return len(calls), int(pd.util.hash_pandas_object(calls[SCHEMAS["cdr"]], index=False).sum())


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    cols = SCHEMAS["cdr"]
    hashes = [
        np.sort(pd.util.hash_pandas_object(x[cols].astype(str), index=False).to_numpy()) for x in (a, b)
    ]
    return bool(np.array_equal(*hashes))


def _redelivered(path: Path, first: Path, rows: int, day: str) -> Failure:
    detail = (
        f"[re-delivered file] the file holds the same {rows} calls as {first}: refused (keep one of the two)"
    )
    return Failure("cdr", str(path), "file_unique", None, detail, partitions=[day])


def _text_frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    df = pd.concat(frames, ignore_index=True)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(object)
    return df


def read_cdr(cdr_dir: Path, failures: list[Failure] | None = None) -> pd.DataFrame:
    """All CDR partitions as one frame (small exports and tests; validation reads :func:`cdr_batches`)."""
    frames = list(cdr_batches(cdr_dir, failures))
    return frames[0] if frames else pd.DataFrame(columns=[*SCHEMAS["cdr"], PARTITION])


def partition_failures(settings: Settings, cdr_dir: Path) -> list[Failure]:
    """Freshness and completeness: one CDR partition per day of the batch period, the latest included."""
    cfg = settings.data
    expected = [
        str(d.date()) for d in pd.date_range(cfg.start_date, cfg.end_date, freq="D", inclusive="left")
    ]
    present = {
        p.name.split("=", 1)[1] for p in Path(cdr_dir).glob(f"{PARTITION}=*") if any(p.glob("*.parquet"))
    }
    out = []
    if expected[-1] not in present:
        out.append(
            Failure(
                "cdr",
                str(cdr_dir),
                "partition_present",
                None,
                f"[freshness] latest partition {PARTITION}={expected[-1]} is missing",
                partitions=[expected[-1]],
            )
        )
    missing = [d for d in expected[:-1] if d not in present]
    if missing:
        out.append(
            Failure(
                "cdr",
                str(cdr_dir),
                "partition_present",
                None,
                f"{len(missing)} day partition(s) missing",
                missing[:10],
                partitions=missing,
            )
        )
    extra = sorted(present - set(expected))
    if extra:
        out.append(
            Failure(
                "cdr",
                str(cdr_dir),
                "partition_in_period",
                None,
                f"{len(extra)} partition(s) outside the batch period",
                extra[:10],
                partitions=extra,
            )
        )
    return out


@dataclass(frozen=True)
class TableCheck:
    """One landing table's validation in this run: its report entry and what it found."""

    summary: dict  # reports/validation.json's entry: file, rows, fingerprint, failures, units
    failures: list[Failure]
    checked: int  # units (CDR partitions, or the table file) read and checked by this run
    reused: int  # units unchanged since they passed: not read


def suite_key(table: str, settings: Settings, subscribers: str | None) -> str:
    """The version of ``table``'s checks apart from the batch period (see :data:`PERIOD_COLUMN`): this
    module's source, the validation settings, and the subscribers table (content hash) that the
    orphan check of every other table reads."""
    parts = {
        "table": table,
        "validate_py": sha256_files(Path(__file__)),
        "great_expectations": gx.__version__,
        "validation": settings.validation.model_dump(mode="json", exclude={"cdr_batch_rows"}),
        "callee_regex": callee_regex(settings),
        "subscribers": subscribers if table != "subscribers" else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _passed_units(settings: Settings) -> dict[str, dict]:
    """Per table, the units the last passing report recorded (nothing after a failed or no run)."""
    try:
        report = json.loads((settings.reports_dir / "validation.json").read_text())
    except (OSError, ValueError):
        return {}
    if not report.get("success"):
        return {}
    return {t: v.get("units") or {} for t, v in (report.get("tables") or {}).items()}


def _still_passes(record: dict | None, content: str, suite: str, table: str, period) -> bool:
    """A unit passed before with these bytes and checks, and its timestamps lie in this period."""
    if not record or record.get("hash") != content or record.get("suite") != suite:
        return False
    span = record.get("span")
    if table not in PERIOD_COLUMN or span is None:
        return True
    lo, hi = (pd.Timestamp(v) for v in span)
    inside_start = not PERIOD_COLUMN[table][1] or lo >= pd.Timestamp(period[0])
    return inside_start and hi <= pd.Timestamp(period[1])


def _records(df: pd.DataFrame, table: str, found: list[Failure], hashes: dict, suite: str) -> dict:
    """The units of a checked batch as the report records them (none when the batch has an error).

    A warning is kept with the partitions its examples name (the batch's first day when none), so a
    later run that reuses them reports it again."""
    if any(f.severity == "error" for f in found):
        return {}
    col = PERIOD_COLUMN.get(table, (None,))[0]
    groups = df.groupby(PARTITION, sort=True) if table == "cdr" else [(next(iter(hashes)), df)]
    out = {}
    for unit, part in groups:
        ts = None
        if col in part.columns and len(part):  # to_datetime on a datetime column still walks every value
            ts = part[col] if pd.api.types.is_datetime64_any_dtype(part[col]) else pd.to_datetime(part[col])
        out[unit] = {
            "hash": hashes[unit],
            "suite": suite,
            "rows": int(len(part)),
            "span": None if ts is None else [str(ts.min()), str(ts.max())],
            "warnings": [],
        }
    first = next(iter(out), None)
    for w in (f for f in found if f.severity == "warning"):
        for unit in [p for p in w.partitions if p in out] or [first]:
            out[unit]["warnings"].append(asdict(w))
    return out


def _check_table(settings: Settings, table: str, ctx, previous: dict, known: Callable) -> TableCheck:
    """Check the units of ``table`` that are new or changed; the rest keep their passing record."""
    path = settings.landing_dir / ("cdr" if table == "cdr" else f"{table}.parquet")
    if not path.exists():
        return TableCheck(
            {}, [Failure(table, str(path), "file_exists", None, "table not found in the export")], 0, 0
        )
    cache, period = hash_cache(settings), _period(settings)
    found = partition_failures(settings, path) if table == "cdr" else []
    hashes = (
        partition_hashes(path, cache) if table == "cdr" else {path.name: cached_content_hash(path, cache)}
    )
    subs = settings.landing_dir / "subscribers.parquet"
    suite = suite_key(table, settings, cached_content_hash(subs, cache) if subs.exists() else None)
    old = previous.get(table) or {}
    records = {u: old[u] for u, h in hashes.items() if _still_passes(old.get(u), h, suite, table, period)}
    todo = [u for u in hashes if u not in records]
    if todo:
        batches = (
            cdr_batches(path, found, settings.validation.cdr_batch_rows, days=todo)
            if table == "cdr"
            else [pd.read_parquet(path)]
        )
        for df in batches:  # bounded memory: one batch of whole days at a time
            batch = validate_table(df, table, str(path), settings, ctx, known_ids=known())
            found += batch
            records.update(_records(df, table, batch, hashes, suite))
    reused = [u for u in hashes if u not in todo]
    found += _dedupe([Failure(**w) for u in reused for w in records[u].get("warnings") or []])
    summary = {
        "file": str(path),
        "rows": sum(r["rows"] for r in records.values()),
        "fingerprint": fingerprint(path),
        "failures": [asdict(f) for f in found],
        "checked": len(todo),
        "reused": len(reused),
        "units": dict(sorted(records.items())),
    }
    return TableCheck(summary, found, len(todo), len(reused))


def _dedupe(failures: list[Failure]) -> list[Failure]:
    seen, out = set(), []
    for f in failures:
        key = json.dumps(asdict(f), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _known_ids(settings: Settings) -> Callable[[], list[str] | None]:
    """The subscriber ids for the orphan checks, read on first use (not at all when nothing is checked)."""
    path, loaded = settings.landing_dir / "subscribers.parquet", []

    def known() -> list[str] | None:
        if not loaded:
            ids = pd.read_parquet(path, columns=["subscriber_id"])["subscriber_id"] if path.exists() else None
            loaded.append(None if ids is None else ids.astype(str).tolist())
        return loaded[0]

    return known


def validate_landing(settings: Settings) -> dict:
    """Validate the landing tables, each unit only when new or changed since it passed (see the
    module docstring); raise :class:`ValidationFailed` on any error (warnings pass)."""
    shutil.rmtree(settings.reports_dir / "data_docs", ignore_errors=True)  # the docs show this run only
    ctx = _context(settings)
    previous, known = _passed_units(settings), _known_ids(settings)
    failures: list[Failure] = []
    summary = {}
    for table in SCHEMAS:
        check = _check_table(settings, table, ctx, previous, known)
        if check.summary:
            summary[table] = check.summary
        failures += check.failures
        errors = [f for f in check.failures if f.severity == "error"]
        log.info(
            "validated %-12s %9d rows (%d unit(s) checked, %d unchanged since they passed): %s",
            table,
            check.summary.get("rows", 0),
            check.checked,
            check.reused,
            "ok"
            if not check.failures
            else f"{len(errors)} error(s), {len(check.failures) - len(errors)} warning(s)",
        )
    if not any(t.get("checked") for t in summary.values()):
        ctx.build_data_docs()  # nothing ran: an index saying so
    for w in (f for f in failures if f.severity == "warning"):
        log.warning("%s", w)
    errors = [f for f in failures if f.severity == "error"]
    report = {
        "success": not errors,
        "data_docs": str(settings.reports_dir / "data_docs" / "index.html"),
        "tables": summary,
    }
    (settings.reports_dir / "validation_failed.json").unlink(missing_ok=True)
    write_json_atomic(
        report, settings.reports_dir / ("validation.json" if not errors else "validation_failed.json")
    )
    if errors:
        raise ValidationFailed(errors)
    return report


# kept for callers of the first version's name
validate_raw = validate_landing


def ensure_validated(settings: Settings) -> None:
    """Re-validate unless the last passing report covers exactly the landing files on disk now."""
    report_path = settings.reports_dir / "validation.json"
    if report_path.exists():
        report = json.loads(report_path.read_text())
        tables = report.get("tables", {})
        current = {t: settings.landing_dir / ("cdr" if t == "cdr" else f"{t}.parquet") for t in SCHEMAS}
        if report.get("success") and all(
            p.exists() and tables.get(t, {}).get("fingerprint") == fingerprint(p) for t, p in current.items()
        ):
            return
    validate_landing(settings)


def validate_features(df: pd.DataFrame, settings: Settings, file: str) -> None:
    """The feature-table suite: no nulls, values in range, one row per subscriber and snapshot."""
    failures = [f for f in validate_table(df, FEATURE_TABLE, file, settings) if f.severity == "error"]
    if failures:
        raise ValidationFailed(failures)
