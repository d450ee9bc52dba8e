"""Call-graph features: whether a subscriber's closest contacts have left, from pseudonymised CDRs only.

Churn spreads along strong ties (Dasgupta et al., EDBT 2008; Verbeke et al., 2014; Ahmad, Jafar &
Aljoumaa, 2019: ROC-AUC 0.84 -> 0.93 on an operator's CDRs once the call graph was read), and the
operator's own lead is the same (DOMAIN.md: competitor marketing reaches circles of friends). No
number is needed to see it: ingestion hashes each subscriber's own number under the key it hashes
the other party of every call with (``pipelines/ingest.py``, ``number_hash``), so a call to one of
our subscribers carries that subscriber's ``number_hash`` as its ``callee_hash``, and the churn
events say whether and when that subscriber left.

Definitions, at snapshot T (``$top`` is ``features.graph_top_contacts``):

- a subscriber's **ties** are the on-net numbers (by salted hash) called or calling in the
  baseline window (days T - recent - baseline .. T - recent - 1), weighted by the number of calls;
  the **closest contacts** are the ``$top`` ties with the most calls (then minutes, then hash: one
  order on every engine). On-net only: only a number of our network can be one of our subscribers
  (the number plan classes numbers by prefix), and off-net numbers would add a third of the scan
  for no contact who can be seen leaving;
- a contact **left** in the last N days when one of our subscribers with that number has a churn
  event dated T - N .. T - 1 (any kind); it **moved to another network** when that event is a
  ``port_out``. Events dated T or later are never read.

The query is a set of CTEs spliced into the feature query (``features/compute.py``) and joined by
(subscriber, snapshot): one definition, the same on DuckDB and Spark (``features/spark_sql.py``).

What they add, measured on the simulator's call graph with contagion (``data.graph``, docs/data.md;
[graph_features.md](benchmarks/graph_features.md), ``benchmarks/graph_features.py``): a quarter of
the subscribers have a closest contact who left in the last 60 days, and they churn at 5.0% against
3.8%; 72% of the churners whose intent was contagion show it. Yet the champion's ROC-AUC does not
move: -0.0002 [-0.0016, +0.0013] (95% paired bootstrap) with - without them on 60,000 subscribers.
Contagion is 12% of the churn there, and those subscribers mostly already call a competitor's
hotline, which the behavioural features see (the report has the shares); the records ceiling of that
workdir, which reads the graph's records too (``benchmarks/records_ceiling.py``), is 0.889 (s.e.
0.005) against the champion's 0.885, so little is left for any feature to find. What
the graph does change is the reason: for contagion churners the top 3 reasons name the competitor
cause for 93% instead of 89%, and "contacts who left" (CONTACTS_LEFT) for 11%. The graph's CTEs
cost about 1.2x the feature query's time on 60,000 subscribers (DuckDB).
"""

from __future__ import annotations

DECAY_DAYS = 30  # the contact-churn score's decay: a departure 30 days ago weighs 1/e of one yesterday

# The CTEs, written in DuckDB's dialect like the rest of the feature query; they read ``cdr``,
# ``snaps``, ``subscribers`` and ``churn_events`` and end in ``graph`` (one row per subscriber and
# snapshot with ties).
CTES = f"""
graph_ties AS (  -- on-net contacts of the baseline window, by salted hash: calls and seconds per tie
    SELECT c.subscriber_id, n.snapshot_date, c.callee_hash,
           count(*) AS tie_calls, sum(c.duration_s) AS tie_seconds
    FROM cdr c JOIN snaps n
      ON c.start_time < CAST(n.snapshot_date - CAST($recent AS INTEGER) AS TIMESTAMP)
     AND c.start_time >= CAST(n.snapshot_date - CAST($recent + $baseline AS INTEGER) AS TIMESTAMP)
    WHERE c.callee_class = 'on_net' AND c.callee_hash IS NOT NULL
    GROUP BY 1, 2, 3
),
graph_left AS (  -- our subscribers who left, by the hash of their own number: when, and whether by porting out
    SELECT s.number_hash AS callee_hash, CAST(e.event_date AS DATE) AS left_date,
           CASE WHEN e.event_type = 'port_out' THEN 1 ELSE 0 END AS ported
    FROM churn_events e JOIN subscribers s ON s.subscriber_id = e.subscriber_id
    WHERE s.number_hash IS NOT NULL
),
graph_tie_left AS (  -- each tie, ranked, and whether its contact left in the 60 days before T (never on or after T)
    SELECT t.subscriber_id, t.snapshot_date, t.callee_hash, t.tie_calls,
           max(t.tie_rank) AS tie_rank,
           max(CASE WHEN l.left_date >= t.snapshot_date - 30 THEN 1 ELSE 0 END) AS left_30,
           max(CASE WHEN l.left_date IS NOT NULL THEN 1 ELSE 0 END) AS left_60,
           max(CASE WHEN l.ported = 1 THEN 1 ELSE 0 END) AS ported_60,
           max(CASE WHEN l.left_date IS NOT NULL
                    THEN exp(-date_diff('day', l.left_date, t.snapshot_date) / {float(DECAY_DAYS)!r})
                    ELSE 0 END) AS recency
    FROM (
        SELECT *, row_number() OVER (PARTITION BY subscriber_id, snapshot_date
                                     ORDER BY tie_calls DESC, tie_seconds DESC, callee_hash) AS tie_rank
        FROM graph_ties
    ) t LEFT JOIN graph_left l
      ON l.callee_hash = t.callee_hash
     AND l.left_date < t.snapshot_date AND l.left_date >= t.snapshot_date - 60
    GROUP BY 1, 2, 3, 4
),
graph AS (  -- per subscriber and snapshot: integer sums (the same in whatever order an engine adds)
    SELECT subscriber_id, snapshot_date,
           count(*) FILTER (WHERE tie_rank <= $top) AS top_n,
           sum(CASE WHEN tie_rank <= $top THEN left_30 ELSE 0 END) AS top_left_30,
           sum(CASE WHEN tie_rank <= $top THEN left_60 ELSE 0 END) AS top_left_60,
           sum(CASE WHEN tie_rank <= $top THEN ported_60 ELSE 0 END) AS top_ported_60,
           sum(CASE WHEN tie_rank <= $top THEN tie_calls ELSE 0 END) AS top_calls,
           sum(CASE WHEN tie_rank <= $top THEN left_60 * tie_calls ELSE 0 END) AS top_left_calls,
           sum(left_60 * tie_calls) AS calls_to_left,
           sum(tie_calls) AS tie_calls,
           sum(recency * tie_calls) AS recency_calls
    FROM graph_tie_left GROUP BY 1, 2
),"""

# The feature columns, as select-list expressions over ``graph`` joined as ``g``.
COLUMNS = """
    coalesce(g.top_left_30, 0) AS top_contacts_left_30d,
    coalesce(g.top_left_60, 0) AS top_contacts_left_60d,
    coalesce(g.top_ported_60, 0) AS top_contacts_ported_60d,
    CASE WHEN coalesce(g.top_n, 0) > 0 THEN 100.0 * g.top_left_60 / g.top_n ELSE 0 END
        AS top_contacts_left_share_60d,
    CASE WHEN coalesce(g.top_calls, 0) > 0 THEN 100.0 * g.top_left_calls / g.top_calls ELSE 0 END
        AS top_contacts_left_call_share_60d,
    coalesce(g.calls_to_left, 0) AS calls_to_left_contacts_60d,
    CASE WHEN coalesce(g.top_ported_60, 0) > 0 THEN 1 ELSE 0 END AS contacts_moved_off_net_60d,
    CASE WHEN coalesce(g.tie_calls, 0) > 0 THEN 100.0 * g.recency_calls / g.tie_calls ELSE 0 END
        AS contact_churn_score,"""

JOIN = "LEFT JOIN graph g USING (subscriber_id, snapshot_date)"

NUMBER_HASH = "number_hash"  # the ingested subscribers' column the graph matches callee hashes with
# data ingested before subscribers carried NUMBER_HASH: no contact is known to be ours, every graph feature 0
NO_HASH_WARNING = (
    "%s: subscribers carry no number_hash (ingested before the call-graph features): every contact "
    "counts as not ours and the graph features are 0; run `churn ingest` again"
)
