"""Where DuckDB's feature query spends its time at scale, and what the callee hash's type costs it.

    uv run python benchmarks/duckdb_feature_query.py --config <data>/s1000000/config.yaml [--rounds 2]

On the ingested data of ``--config`` (``features_engines.py`` makes the 10^8-call set as
``<data>/s1000000``), for its last snapshot, in this process (DuckDB on all cores), in rounds so the
shared machine's drift falls on every variant alike:
- the feature step as the pipeline runs it (``compute_features``), hashes as ingestion writes them:
  60-bit integers;
- the same step on a copy of the tables whose callee and number hashes are 24-digit hex strings, as
  ingestion wrote them before (a digest of each integer: the same contacts, a string key);
- the query's three aggregations with a bare ``count(*)`` and no feature: usage by subscriber over
  the lookback, distinct contacts by (subscriber, contact) over 2 x recent days, and the call graph's
  on-net ties by (subscriber, contact) over the baseline window. What they take is the part of the
  feature step no choice of features removes.
Writes docs/benchmarks/duckdb_feature_query.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import duckdb
from _report import md_table, write_report

from core.config import Settings, load_settings
from features.compute import RAW_TABLES, compute_features, feature_params

STRING_COPY = "raw_string_hashes"  # beside data/raw
DIGITS = 24  # the old hash's hex digits


def string_copy(s: Settings) -> Path:
    """``data/raw`` with the hashes as 24-digit hex strings (made once, then reused)."""
    dst = s.raw_dir.with_name(STRING_COPY)
    if (dst / "cdr").exists():
        return dst
    tmp = dst.with_name(STRING_COPY + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # an interrupted earlier copy: PARTITION_BY wants it empty
    tmp.mkdir(parents=True)
    as_text = "substr(md5(CAST({c} AS VARCHAR)), 1, " + str(DIGITS) + ") AS {c}"
    con = duckdb.connect()
    cdr = f"read_parquet('{s.raw_dir}/cdr/*/*.parquet', hive_partitioning = true)"
    con.execute(
        f"COPY (SELECT * REPLACE ({as_text.format(c='callee_hash')}) FROM {cdr} ORDER BY ALL) "
        f"TO '{tmp / 'cdr'}' (FORMAT parquet, PARTITION_BY (date))"
    )
    for t in RAW_TABLES:
        if t == "cdr":
            continue
        src = s.raw_dir / f"{t}.parquet"
        swap = f" REPLACE ({as_text.format(c='number_hash')})" if t == "subscribers" else ""
        con.execute(
            f"COPY (SELECT *{swap} FROM read_parquet('{src}')) TO '{tmp / src.name}' (FORMAT parquet)"
        )
    con.close()
    tmp.rename(dst)
    return dst


def skeleton_sql(s: Settings) -> dict[str, str]:
    """The three aggregations of the feature query, counting rows only ($snap is the snapshot)."""
    p = feature_params(s, [])
    day = "CAST($snap AS TIMESTAMP) - INTERVAL {} DAY"
    calls = f"read_parquet('{s.raw_dir}/cdr/*/*.parquet')"
    return {
        "usage by subscriber": f"SELECT subscriber_id, count(*) FROM {calls} "
        f"WHERE start_time >= {day.format(p['lookback'])} AND start_time < CAST($snap AS TIMESTAMP) GROUP BY 1",
        "distinct contacts": "SELECT subscriber_id, count(*) FROM (SELECT subscriber_id, callee_hash "
        f"FROM {calls} WHERE start_time >= {day.format(2 * p['recent'])} "
        "AND start_time < CAST($snap AS TIMESTAMP) GROUP BY 1, 2) GROUP BY 1",
        "call-graph ties": f"SELECT subscriber_id, callee_hash, count(*) FROM {calls} "
        f"WHERE callee_class = 'on_net' AND start_time >= {day.format(p['recent'] + p['baseline'])} "
        f"AND start_time < {day.format(p['recent'])} GROUP BY 1, 2",
    }


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def bare_count(sql: str, snap) -> None:
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TEMP TABLE t AS {sql}", {"snap": str(snap)})
    finally:
        con.close()


def measure(s: Settings, rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]], int]:
    """Seconds per round: the feature step on each hash type, and each bare aggregation."""
    snap, strings = s.features.snapshots[-1], string_copy(s)
    steps: dict[str, list[float]] = {"60-bit integer hashes": [], f"{DIGITS}-digit string hashes": []}
    queries = skeleton_sql(s)
    bare: dict[str, list[float]] = {name: [] for name in queries}
    for _ in range(rounds):
        steps["60-bit integer hashes"].append(timed(compute_features, s.raw_dir, [snap], s))
        steps[f"{DIGITS}-digit string hashes"].append(timed(compute_features, strings, [snap], s))
        for name, sql in queries.items():
            bare[name].append(timed(bare_count, sql, snap))
    con = duckdb.connect()
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{s.raw_dir}/cdr/*/*.parquet')").fetchone()[0]
    con.close()
    return steps, bare, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True, help="an ingested workdir's config")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of every variant, alternating")
    args = ap.parse_args()
    s = load_settings(args.config)
    steps, bare, rows = measure(s, args.rounds)
    med = {k: statistics.median(v) for k, v in {**steps, **bare}.items()}
    fmt = lambda v: " / ".join(f"{x:.1f}" for x in v)  # noqa: E731
    step_rows = [(k, fmt(v), f"{med[k]:.1f}", f"{med[k] * 1e8 / rows:.1f}") for k, v in steps.items()]
    bare_rows = [(k, fmt(v), f"{med[k]:.1f}") for k, v in bare.items()]
    floor = sum(med[k] for k in bare)
    ints, strs = (med[k] for k in steps)
    write_report(
        __file__,
        "DuckDB's feature query: the hash type, and the aggregations under the features",
        [
            f"{rows:,} CDR rows, snapshot {s.features.snapshots[-1]}, {args.rounds} rounds (seconds of each round).",
            md_table(["feature step", "seconds", "median", "per 10^8 rows"], step_rows, "lrrr"),
            f"Integer hashes take {ints / strs:.2f}x the time of string ones.",
            md_table(["bare aggregation (count only)", "seconds", "median"], bare_rows, "lrr"),
            f"Together {floor:.1f} s: {floor / ints:.0%} of the feature step with integer hashes; the "
            "features over them take the rest.",
        ],
    )


if __name__ == "__main__":
    main()
