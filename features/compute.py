"""Point-in-time feature computation with DuckDB, straight from the ingested parquet tables.

Input is ``data/raw`` as ingestion writes it: calls carry the class of the number called
(``callee_class``), never the number.

Every value at snapshot T uses only events strictly before T (``start_time < T``), so a feature
never sees the future. The SQL is plain and engine-neutral. The same table feeds Feast's offline
store (training) and, after ``materialize``, its online store (serving): one code path, no skew.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import duckdb
import pandas as pd

from core.config import Settings
from features import call_graph
from features.catalogue import FEATURE_NAMES

log = logging.getLogger(__name__)

_SQL = """
WITH snaps AS (SELECT CAST(unnest($snapshots) AS DATE) AS snapshot_date),
churned AS (SELECT subscriber_id, min(CAST(event_date AS DATE)) AS churn_date FROM churn_events GROUP BY 1),
active AS (
    SELECT s.subscriber_id, n.snapshot_date, s.activation_date, s.plan, s.contract_end_date, s.monthly_fee,
           c.churn_date
    FROM subscribers s CROSS JOIN snaps n LEFT JOIN churned c USING (subscriber_id)
    WHERE CAST(s.activation_date AS DATE) < n.snapshot_date
      AND (c.churn_date IS NULL OR c.churn_date >= n.snapshot_date)
),
calls AS (  -- every call in the lookback before each snapshot, never one at or after it
    SELECT c.subscriber_id, n.snapshot_date,
           date_diff('day', CAST(c.start_time AS DATE), n.snapshot_date) AS ago,  -- 1 = the day before T
           CAST(c.duration_s AS DOUBLE) AS duration_s, c.direction, c.callee_class
    FROM cdr c JOIN snaps n
      ON c.start_time < CAST(n.snapshot_date AS TIMESTAMP)
     AND c.start_time >= CAST(n.snapshot_date - CAST($lookback AS INTEGER) AS TIMESTAMP)
),
usage AS (  -- one pass, one row per subscriber and snapshot; "last N days" is ago <= N (T-N .. T-1)
    -- count(CASE .. THEN 1 END), not sum(CASE .. THEN 1 ELSE 0 END), and seconds summed as DOUBLE: DuckDB
    -- updates a count or a DOUBLE sum for about half what a HUGEINT sum costs (the integer sum's type).
    -- Whole seconds add exactly in a DOUBLE up to 2^53, so the sums are the same in whatever order an
    -- engine adds; a window without calls sums to NULL, which the final select's coalesce makes 0
    SELECT subscriber_id, snapshot_date,
        sum(CASE WHEN ago <= $recent THEN duration_s END) / 60.0 AS minutes_r,
        sum(CASE WHEN ago > $recent AND ago <= $recent + $baseline THEN duration_s END) / 60.0 AS minutes_b,
        sum(CASE WHEN ago <= $recent AND direction = 'out' THEN duration_s END) / 60.0 AS out_r,
        sum(CASE WHEN ago > $recent AND ago <= $recent + $baseline AND direction = 'out' THEN duration_s END) / 60.0 AS out_b,
        sum(CASE WHEN ago <= $recent AND direction = 'in' THEN duration_s END) / 60.0 AS in_r,
        sum(CASE WHEN ago > $recent AND ago <= $recent + $baseline AND direction = 'in' THEN duration_s END) / 60.0 AS in_b,
        count(CASE WHEN ago <= $recent THEN 1 END) AS calls_r,
        count(CASE WHEN ago > $recent AND ago <= $recent + $baseline THEN 1 END) AS calls_b,
        count(CASE WHEN ago <= 7 THEN 1 END) AS calls_7d,
        count(CASE WHEN ago <= $recent AND callee_class = 'on_net' THEN 1 END) AS on_r,
        count(CASE WHEN ago <= $recent AND callee_class = 'off_net' THEN 1 END) AS off_r,
        count(CASE WHEN ago > $recent AND ago <= $recent + $baseline AND callee_class = 'on_net' THEN 1 END) AS on_b,
        count(CASE WHEN ago > $recent AND ago <= $recent + $baseline AND callee_class = 'off_net' THEN 1 END) AS off_b,
        -- weekly minutes over 8 weeks, week w = 0 (oldest) .. 7 (last): slope from the sums
        sum(CASE WHEN ago <= 56 THEN duration_s * CAST(7 - floor((ago - 1) / 7.0) AS INTEGER) END) / 60.0 AS trend_sxy,
        sum(CASE WHEN ago <= 56 THEN duration_s END) / 60.0 AS trend_sy,
        -- the days with a call in the last 30 days as bits (bit k-1 = day T-k): day counts and streaks
        bit_or(CASE WHEN ago <= 30 THEN CAST(1 AS BIGINT) << CAST(ago - 1 AS INTEGER) ELSE 0 END) AS call_day_bits,
        count(CASE WHEN ago <= 7 AND direction = 'out' AND callee_class = 'competitor_hotline' THEN 1 END)
            AS competitor_hotline_calls_7d,
        count(CASE WHEN ago <= 30 AND direction = 'out' AND callee_class = 'competitor_hotline' THEN 1 END)
            AS competitor_hotline_calls_30d,
        count(CASE WHEN ago <= 90 AND direction = 'out' AND callee_class = 'competitor_hotline' THEN 1 END)
            AS competitor_hotline_calls_90d,
        min(CASE WHEN direction = 'out' AND callee_class = 'competitor_hotline' THEN ago END) AS days_since_competitor_hotline,
        count(CASE WHEN ago <= 7 AND direction = 'out' AND callee_class = 'own_service' THEN 1 END) AS own_hotline_calls_7d,
        count(CASE WHEN ago <= 30 AND direction = 'out' AND callee_class = 'own_service' THEN 1 END) AS own_hotline_calls_30d,
        count(CASE WHEN ago <= 90 AND direction = 'out' AND callee_class = 'own_service' THEN 1 END) AS own_hotline_calls_90d,
        min(CASE WHEN direction = 'out' AND callee_class = 'own_service' THEN ago END) AS days_since_own_hotline,
        min(ago) AS days_since_last_call
    FROM calls GROUP BY 1, 2
),
contacts AS (  -- distinct other parties (salted hashes) in the recent window and the one as long before it
    SELECT subscriber_id, snapshot_date,
           count(*) FILTER (WHERE in_recent = 1) AS contacts_r,
           count(*) FILTER (WHERE in_before = 1) AS contacts_p
    FROM (
        SELECT subscriber_id, snapshot_date, callee_hash,
               max(CASE WHEN ago <= $recent THEN 1 ELSE 0 END) AS in_recent,
               max(CASE WHEN ago > $recent THEN 1 ELSE 0 END) AS in_before
        FROM (  -- its own narrow scan of the last 2 x recent days: cheaper than keeping every call's hash
            SELECT c.subscriber_id, n.snapshot_date, c.callee_hash,
                   date_diff('day', CAST(c.start_time AS DATE), n.snapshot_date) AS ago
            FROM cdr c JOIN snaps n
              ON c.start_time < CAST(n.snapshot_date AS TIMESTAMP)
             AND c.start_time >= CAST(n.snapshot_date - CAST(2 * $recent AS INTEGER) AS TIMESTAMP)
        ) r GROUP BY 1, 2, 3
    ) h GROUP BY 1, 2
),
streaks AS (  -- usage's rows and the longest run of zero-call days of the last 30 (2^30 - 1 minus the
    -- call-day bits): added to usage's rows, not a second reader of usage joined back (Spark would aggregate twice)
    {zero_runs}
),
compl AS (
    SELECT c.subscriber_id, n.snapshot_date,
           count(*) FILTER (WHERE c.complaint_time >= CAST(n.snapshot_date - 7 AS TIMESTAMP)) AS complaints_7d,
           count(*) FILTER (WHERE c.complaint_time >= CAST(n.snapshot_date - 30 AS TIMESTAMP)) AS complaints_30d,
           count(*) AS complaints_90d
    FROM complaints c JOIN snaps n
      ON c.complaint_time < CAST(n.snapshot_date AS TIMESTAMP)
     AND c.complaint_time >= CAST(n.snapshot_date - 90 AS TIMESTAMP)
    GROUP BY 1, 2
),
bills AS (
    SELECT b.subscriber_id, n.snapshot_date, b.charge, b.arrears,
           row_number() OVER (PARTITION BY b.subscriber_id, n.snapshot_date ORDER BY b.bill_date DESC) AS k
    FROM billing b JOIN snaps n ON CAST(b.bill_date AS DATE) < n.snapshot_date
),
bill_feats AS (
    SELECT subscriber_id, snapshot_date,
           max(charge) FILTER (WHERE k = 1) AS monthly_charge,
           max(arrears) FILTER (WHERE k = 1) AS arrears,
           avg(charge) FILTER (WHERE k <= 3) AS arpu_3m,
           avg(charge) FILTER (WHERE k BETWEEN 2 AND 4) AS prev_charge
    FROM bills WHERE k <= 4 GROUP BY 1, 2
),
{graph_ctes}
topups AS (
    SELECT r.subscriber_id, n.snapshot_date,
           min(date_diff('day', CAST(r.recharge_time AS DATE), n.snapshot_date)) AS days_since_recharge
    FROM recharges r JOIN snaps n
      ON r.recharge_time < CAST(n.snapshot_date AS TIMESTAMP)
     AND r.recharge_time >= CAST(n.snapshot_date - 90 AS TIMESTAMP)
    GROUP BY 1, 2
)
SELECT
    a.subscriber_id,
    CAST(a.snapshot_date AS TIMESTAMPTZ) AS event_timestamp,
    -- changes are relative to max(baseline, a floor) so a zero baseline gives no infinite ratio;
    -- greatest(.., -100) only absorbs floating-point rounding below the true minimum of -100%
    coalesce(u.minutes_r, 0) / $recent AS minutes_recent_per_day,
    coalesce(u.minutes_b, 0) / $baseline AS minutes_baseline_per_day,
    greatest(100 * (coalesce(u.minutes_r, 0) / $recent - coalesce(u.minutes_b, 0) / $baseline)
        / greatest(coalesce(u.minutes_b, 0) / $baseline, 1.0), -100) AS minutes_change_pct,
    coalesce(u.minutes_r, 0) / $recent - coalesce(u.minutes_b, 0) / $baseline AS minutes_diff_per_day,
    greatest(100 * (coalesce(u.out_r, 0) / $recent - coalesce(u.out_b, 0) / $baseline)
        / greatest(coalesce(u.out_b, 0) / $baseline, 1.0), -100) AS out_minutes_change_pct,
    greatest(100 * (coalesce(u.in_r, 0) / $recent - coalesce(u.in_b, 0) / $baseline)
        / greatest(coalesce(u.in_b, 0) / $baseline, 1.0), -100) AS in_minutes_change_pct,
    greatest(100 * (coalesce(u.calls_r, 0) / $recent - coalesce(u.calls_b, 0) / $baseline)
        / greatest(coalesce(u.calls_b, 0) / $baseline, 0.1), -100) AS calls_change_pct,
    greatest(100 * (coalesce(u.calls_7d, 0) / 7.0 - coalesce(u.calls_b, 0) / $baseline)
        / greatest(coalesce(u.calls_b, 0) / $baseline, 0.1), -100) AS calls_change_pct_7d,
    -- least squares over x = 0..7: slope = (8 sum(xy) - 28 sum(y)) / 336, as % of the weekly mean
    100 * ((8 * coalesce(u.trend_sxy, 0) - 28 * coalesce(u.trend_sy, 0)) / 336.0)
        / greatest(coalesce(u.trend_sy, 0) / 8, 1.0) AS minutes_trend_pct_8w,
    coalesce(ct.contacts_r, 0) AS contacts_recent,
    100 * (coalesce(ct.contacts_r, 0) - coalesce(ct.contacts_p, 0)) / greatest(coalesce(ct.contacts_p, 0), 1)
        AS contacts_change_pct,
    7 - bit_count(coalesce(u.call_day_bits, 0) & 127) AS zero_call_days_7d,
    30 - bit_count(coalesce(u.call_day_bits, 0)) AS zero_call_days_30d,
    coalesce(u.longest_run, 30) AS longest_zero_streak_30d,
    coalesce(u.days_since_last_call, $lookback) AS days_since_last_call,
    coalesce(u.competitor_hotline_calls_7d, 0) AS competitor_hotline_calls_7d,
    coalesce(u.competitor_hotline_calls_30d, 0) AS competitor_hotline_calls_30d,
    coalesce(u.competitor_hotline_calls_90d, 0) AS competitor_hotline_calls_90d,
    least(coalesce(u.days_since_competitor_hotline, 90), 90) AS days_since_competitor_hotline,
    coalesce(u.own_hotline_calls_7d, 0) AS own_hotline_calls_7d,
    coalesce(u.own_hotline_calls_30d, 0) AS own_hotline_calls_30d,
    coalesce(u.own_hotline_calls_90d, 0) AS own_hotline_calls_90d,
    least(coalesce(u.days_since_own_hotline, 90), 90) AS days_since_own_hotline,
    coalesce(cp.complaints_7d, 0) AS complaints_7d,
    coalesce(cp.complaints_30d, 0) AS complaints_30d,
    coalesce(cp.complaints_90d, 0) AS complaints_90d,
    CASE WHEN a.plan = 'postpaid' AND a.contract_end_date IS NOT NULL
         THEN least(greatest(date_diff('day', a.snapshot_date, CAST(a.contract_end_date AS DATE)), 0), 365)
         ELSE 365 END AS days_to_contract_end,
    CASE WHEN a.plan = 'postpaid' AND a.contract_end_date IS NOT NULL
              AND CAST(a.contract_end_date AS DATE) <= a.snapshot_date
         THEN least(date_diff('day', CAST(a.contract_end_date AS DATE), a.snapshot_date), 365)
         ELSE 365 END AS days_since_contract_end,
    CASE WHEN a.plan = 'postpaid' AND a.contract_end_date IS NOT NULL
              AND date_diff('day', a.snapshot_date, CAST(a.contract_end_date AS DATE)) <= $renewal
         THEN 1 ELSE 0 END AS in_renewal_window,
    date_diff('day', CAST(a.activation_date AS DATE), a.snapshot_date) AS tenure_days,
    CASE WHEN a.plan = 'postpaid' THEN 1 ELSE 0 END AS is_postpaid,
    coalesce(a.monthly_fee, 0) AS tariff_fee,
    coalesce(bf.monthly_charge, 0) AS monthly_charge,
    coalesce(bf.arpu_3m, 0) AS arpu_3m,
    {arpu_tier} AS arpu_tier,
    coalesce(100 * (bf.monthly_charge - bf.prev_charge) / greatest(bf.prev_charge, 1.0), 0) AS bill_change_pct,
    coalesce(bf.arrears, 0) AS arrears,
    CASE WHEN a.plan = 'prepaid' THEN least(coalesce(tu.days_since_recharge, 90), 90) ELSE 0 END
        AS days_since_recharge,
    CASE WHEN coalesce(u.on_r, 0) + coalesce(u.off_r, 0) > 0
         THEN 100.0 * u.off_r / (u.on_r + u.off_r) ELSE 0 END AS offnet_share_recent,
    CASE WHEN coalesce(u.on_r, 0) + coalesce(u.off_r, 0) > 0 AND coalesce(u.on_b, 0) + coalesce(u.off_b, 0) > 0
         THEN 100.0 * u.off_r / (u.on_r + u.off_r) - 100.0 * u.off_b / (u.on_b + u.off_b) ELSE 0 END
        AS offnet_share_change,{graph_columns}
    CAST(a.churn_date IS NOT NULL AND a.churn_date < a.snapshot_date + CAST($horizon AS INTEGER) AS INTEGER)
        AS churned_within_horizon
FROM active a
LEFT JOIN streaks u USING (subscriber_id, snapshot_date)
LEFT JOIN contacts ct USING (subscriber_id, snapshot_date)
LEFT JOIN compl cp USING (subscriber_id, snapshot_date)
LEFT JOIN bill_feats bf USING (subscriber_id, snapshot_date)
LEFT JOIN topups tu USING (subscriber_id, snapshot_date)
{graph_join}
ORDER BY event_timestamp, subscriber_id
"""


def longest_run_sql(source: str, bits: str, width: int) -> str:
    """Plain SQL: ``source``'s rows and ``longest_run``, the longest run of 1-bits in ``bits`` (``width`` bits).

    Binary lifting, so the nesting is log2(width) selects, not one a bit: ``a_s`` (an AND of ``s``
    shifts) marks where a run of at least ``s`` ones starts; ``c`` marks where one of the ``l`` found so
    far starts, and ``c & (a_s >> l)`` where one of ``l + s`` does. Trying s = 16, 8, 4, 2, 1 in turn
    and keeping each that still finds a run gives the longest. Bit operators and ``CASE`` only: any SQL
    engine runs it, and each level is one cheap projection of ``source``'s rows (no join, no sort).
    """
    steps = [1 << j for j in range(width.bit_length() - 1, -1, -1)]  # 16, 8, 4, 2, 1 for 30 bits
    marks = ", ".join(" & ".join(f"(run_z >> {j})" for j in range(s)) + f" AS run_a{s}" for s in steps)
    q = f"SELECT *, {(1 << width) - 1} AS run_c0, 0 AS run_l0, {marks} FROM (SELECT *, {bits} AS run_z FROM {source}) r"
    for i, s in enumerate(steps):
        hit = f"run_c{i} & (run_a{s} >> run_l{i})"
        q = (
            f"SELECT *, CASE WHEN ({hit}) <> 0 THEN run_l{i} + {s} ELSE run_l{i} END AS run_l{i + 1}, "
            f"CASE WHEN ({hit}) <> 0 THEN {hit} ELSE run_c{i} END AS run_c{i + 1} FROM ({q}) l{s}"
        )
    return f"SELECT *, run_l{len(steps)} AS longest_run FROM ({q}) runs"


def feature_sql(settings: Settings) -> str:
    """The feature query for these settings (ARPU tier thresholds are written into it as numbers)."""
    tiers = (
        " + ".join(
            f"CASE WHEN coalesce(bf.arpu_3m, 0) >= {float(t)!r} THEN 1 ELSE 0 END"
            for t in settings.features.arpu_tiers
        )
        or "0"
    )
    return (
        _SQL.replace("{arpu_tier}", f"({tiers})")
        .replace("{zero_runs}", longest_run_sql("usage", "1073741823 - coalesce(call_day_bits, 0)", 30))
        # the call graph's CTEs, columns and join: features/call_graph.py
        .replace("{graph_ctes}", call_graph.CTES)
        .replace("{graph_columns}", call_graph.COLUMNS)
        .replace("{graph_join}", call_graph.JOIN)
    )


def lookback_days(settings: Settings) -> int:
    """How far back a snapshot's features read calls: the widest window in the catalogue."""
    fc = settings.features
    return max(fc.recent_days + fc.baseline_days, 90, 56, 2 * fc.recent_days)


RAW_TABLES = ("subscribers", "cdr", "billing", "complaints", "churn_events", "recharges")


def feature_params(settings: Settings, snapshots: list[dt.date]) -> dict:
    """The query's named parameters (``$name`` in DuckDB, ``:name`` in Spark): the same on both engines."""
    fc = settings.features
    return {
        "snapshots": [d.isoformat() for d in snapshots],
        "recent": fc.recent_days,
        "baseline": fc.baseline_days,
        "lookback": lookback_days(settings),
        "horizon": fc.label_horizon_days,
        "renewal": fc.renewal_window_days,
        "top": fc.graph_top_contacts,
    }


def compute_features(
    raw_dir: Path, snapshots: list[dt.date], settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (features, labels) for every subscriber active at each snapshot, on DuckDB.

    ``features`` has ``subscriber_id``, ``event_timestamp`` (the snapshot, UTC) and the catalogue
    columns; ``labels`` has ``subscriber_id``, ``event_timestamp`` and ``churned`` (1 if a churn
    event falls in the ``label_horizon_days`` from the snapshot on). Labels are kept apart: they
    look ahead by design and must never reach the online store. ``features.engine`` picks this or
    the same query on Spark (``features/engine.py``).
    """
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = false")  # the result is ordered explicitly
        con.execute(f"SET temp_directory = '{settings.workdir / 'data' / 'duckdb_tmp'}'")  # where it spills
        if settings.features.duckdb_memory_limit:
            con.execute(f"SET memory_limit = '{settings.features.duckdb_memory_limit}'")
        for t in RAW_TABLES:
            src = f"{Path(raw_dir) / 'cdr'}/*/*.parquet" if t == "cdr" else Path(raw_dir) / f"{t}.parquet"
            con.execute(
                f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{src}', hive_partitioning = {t == 'cdr'})"
            )
        if call_graph.NUMBER_HASH not in con.table("subscribers").columns:
            log.warning(call_graph.NO_HASH_WARNING, raw_dir)
            con.execute(
                f"CREATE OR REPLACE VIEW subscribers AS SELECT *, CAST(NULL AS VARCHAR) AS {call_graph.NUMBER_HASH} "
                f"FROM read_parquet('{Path(raw_dir) / 'subscribers.parquet'}')"
            )
        df = con.execute(feature_sql(settings), feature_params(settings, snapshots)).df()
    finally:
        con.close()
    return split_labels(df, len(snapshots))


def split_labels(df: pd.DataFrame, n_snapshots: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The query's rows as (features, labels), in the catalogue's order and dtypes (either engine)."""
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True).astype("datetime64[us, UTC]")
    df[FEATURE_NAMES] = df[FEATURE_NAMES].astype("float64")
    labels = df[["subscriber_id", "event_timestamp", "churned_within_horizon"]].rename(
        columns={"churned_within_horizon": "churned"}
    )
    labels["churned"] = labels["churned"].astype("int32")
    log.info(
        "features: %d rows over %d snapshots, churn rate %.3f", len(df), n_snapshots, labels["churned"].mean()
    )
    return df[["subscriber_id", "event_timestamp", *FEATURE_NAMES]], labels
