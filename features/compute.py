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

from features.catalogue import FEATURE_NAMES
from pipelines.config import Settings

log = logging.getLogger(__name__)

_SQL = """
WITH snaps AS (SELECT CAST(unnest($snapshots) AS DATE) AS snapshot_date),
churned AS (SELECT subscriber_id, min(CAST(event_date AS DATE)) AS churn_date FROM churn_events GROUP BY 1),
active AS (
    SELECT s.subscriber_id, n.snapshot_date, s.activation_date, s.plan, s.contract_end_date, c.churn_date
    FROM subscribers s CROSS JOIN snaps n LEFT JOIN churned c USING (subscriber_id)
    WHERE CAST(s.activation_date AS DATE) < n.snapshot_date
      AND (c.churn_date IS NULL OR c.churn_date >= n.snapshot_date)
),
daily AS (
    SELECT c.subscriber_id, n.snapshot_date, CAST(c.start_time AS DATE) AS day,
           count(*) AS calls, sum(c.duration_s) / 60.0 AS minutes,
           count(*) FILTER (WHERE c.direction = 'out' AND c.callee_class = 'competitor_hotline') AS comp_calls,
           count(*) FILTER (WHERE c.direction = 'out' AND c.callee_class = 'own_service') AS own_calls
    FROM cdr c JOIN snaps n
      ON c.start_time < CAST(n.snapshot_date AS TIMESTAMP)
     AND c.start_time >= CAST(n.snapshot_date - to_days(CAST($lookback AS INTEGER)) AS TIMESTAMP)
    GROUP BY 1, 2, 3
),
usage AS (
    SELECT subscriber_id, snapshot_date,
        sum(minutes) FILTER (WHERE day >= snapshot_date - to_days(CAST($recent AS INTEGER))) / $recent AS minutes_recent_per_day,
        sum(minutes) FILTER (WHERE day < snapshot_date - to_days(CAST($recent AS INTEGER))) / $baseline AS minutes_baseline_per_day,
        sum(calls) FILTER (WHERE day >= snapshot_date - to_days(CAST($recent AS INTEGER))) / $recent AS calls_recent_per_day,
        sum(calls) FILTER (WHERE day < snapshot_date - to_days(CAST($recent AS INTEGER))) / $baseline AS calls_baseline_per_day,
        count(*) FILTER (WHERE day >= snapshot_date - to_days(30)) AS call_days_30d,
        sum(comp_calls) FILTER (WHERE day >= snapshot_date - to_days(30)) AS competitor_hotline_calls_30d,
        sum(own_calls) FILTER (WHERE day >= snapshot_date - to_days(30)) AS own_hotline_calls_30d,
        date_diff('day', max(day), snapshot_date) AS days_since_last_call
    FROM daily GROUP BY 1, 2
),
gaps AS (  -- zero-call runs inside the last 30 days, including the ones at either edge
    SELECT subscriber_id, snapshot_date,
           date_diff('day', coalesce(lag(day) OVER w, CAST(snapshot_date - to_days(31) AS DATE)), day) - 1 AS gap
    FROM daily WHERE day >= snapshot_date - to_days(30)
    WINDOW w AS (PARTITION BY subscriber_id, snapshot_date ORDER BY day)
    UNION ALL
    SELECT subscriber_id, snapshot_date, date_diff('day', max(day), snapshot_date) - 1
    FROM daily WHERE day >= snapshot_date - to_days(30) GROUP BY 1, 2
),
streaks AS (SELECT subscriber_id, snapshot_date, max(gap) AS longest_zero_streak_30d FROM gaps GROUP BY 1, 2),
compl AS (
    SELECT c.subscriber_id, n.snapshot_date, count(*) AS complaints_90d
    FROM complaints c JOIN snaps n
      ON c.complaint_time < CAST(n.snapshot_date AS TIMESTAMP)
     AND c.complaint_time >= CAST(n.snapshot_date - to_days(90) AS TIMESTAMP)
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
           avg(charge) FILTER (WHERE k BETWEEN 2 AND 4) AS prev_charge
    FROM bills WHERE k <= 4 GROUP BY 1, 2
)
SELECT
    a.subscriber_id,
    CAST(a.snapshot_date AS TIMESTAMPTZ) AS event_timestamp,
    coalesce(u.minutes_recent_per_day, 0) AS minutes_recent_per_day,
    coalesce(u.minutes_baseline_per_day, 0) AS minutes_baseline_per_day,
    100 * (coalesce(u.minutes_recent_per_day, 0) - coalesce(u.minutes_baseline_per_day, 0))
        / greatest(coalesce(u.minutes_baseline_per_day, 0), 1.0) AS minutes_change_pct,
    100 * (coalesce(u.calls_recent_per_day, 0) - coalesce(u.calls_baseline_per_day, 0))
        / greatest(coalesce(u.calls_baseline_per_day, 0), 0.1) AS calls_change_pct,
    30 - coalesce(u.call_days_30d, 0) AS zero_call_days_30d,
    coalesce(s.longest_zero_streak_30d, 30) AS longest_zero_streak_30d,
    coalesce(u.days_since_last_call, $lookback) AS days_since_last_call,
    coalesce(u.competitor_hotline_calls_30d, 0) AS competitor_hotline_calls_30d,
    coalesce(u.own_hotline_calls_30d, 0) AS own_hotline_calls_30d,
    coalesce(cp.complaints_90d, 0) AS complaints_90d,
    CASE WHEN a.plan = 'postpaid' AND a.contract_end_date IS NOT NULL
         THEN least(greatest(date_diff('day', a.snapshot_date, CAST(a.contract_end_date AS DATE)), 0), 365)
         ELSE 365 END AS days_to_contract_end,
    date_diff('day', CAST(a.activation_date AS DATE), a.snapshot_date) AS tenure_days,
    CASE WHEN a.plan = 'postpaid' THEN 1 ELSE 0 END AS is_postpaid,
    coalesce(bf.monthly_charge, 0) AS monthly_charge,
    coalesce(100 * (bf.monthly_charge - bf.prev_charge) / greatest(bf.prev_charge, 1.0), 0) AS bill_change_pct,
    coalesce(bf.arrears, 0) AS arrears,
    CAST(a.churn_date IS NOT NULL AND a.churn_date < a.snapshot_date + to_days(CAST($horizon AS INTEGER)) AS INTEGER)
        AS churned_within_horizon
FROM active a
LEFT JOIN usage u USING (subscriber_id, snapshot_date)
LEFT JOIN streaks s USING (subscriber_id, snapshot_date)
LEFT JOIN compl cp USING (subscriber_id, snapshot_date)
LEFT JOIN bill_feats bf USING (subscriber_id, snapshot_date)
ORDER BY event_timestamp, subscriber_id
"""

RAW_TABLES = ("subscribers", "cdr", "billing", "complaints", "churn_events")


def compute_features(
    raw_dir: Path, snapshots: list[dt.date], settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (features, labels) for every subscriber active at each snapshot.

    ``features`` has ``subscriber_id``, ``event_timestamp`` (the snapshot, UTC) and the catalogue
    columns; ``labels`` has ``subscriber_id``, ``event_timestamp`` and ``churned`` (1 if a churn
    event falls in the ``label_horizon_days`` from the snapshot on). Labels are kept apart: they
    look ahead by design and must never reach the online store.
    """
    fc = settings.features
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for t in RAW_TABLES:
            src = f"{Path(raw_dir) / 'cdr'}/*/*.parquet" if t == "cdr" else Path(raw_dir) / f"{t}.parquet"
            con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{src}', hive_partitioning = {t == 'cdr'})")
        df = con.execute(
            _SQL,
            {
                "snapshots": [d.isoformat() for d in snapshots],
                "recent": fc.recent_days,
                "baseline": fc.baseline_days,
                "lookback": fc.recent_days + fc.baseline_days,
                "horizon": fc.label_horizon_days,
            },
        ).df()
    finally:
        con.close()
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    df[FEATURE_NAMES] = df[FEATURE_NAMES].astype("float64")
    labels = df[["subscriber_id", "event_timestamp", "churned_within_horizon"]].rename(
        columns={"churned_within_horizon": "churned"}
    )
    log.info("features: %d rows over %d snapshots, churn rate %.3f", len(df), len(snapshots), labels["churned"].mean())
    return df[["subscriber_id", "event_timestamp", *FEATURE_NAMES]], labels
