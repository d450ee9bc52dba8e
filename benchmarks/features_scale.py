"""Feature engine and online store speed: one snapshot's features at scale, and online reads.

    uv run python benchmarks/features_scale.py [--subscribers 330000] [--days 90] [--pandas-sample 0.01]
    uv run python benchmarks/features_scale.py --online-only      # online latency on the demo store

Generates and ingests a data set (about 3 calls per subscriber a day, so the default 330,000
subscribers x 90 days is about 10^8 CDR rows), then times, on this machine:
- the DuckDB scan-only floor (read every CDR row once, no features),
- ``features.compute.compute_features`` for the last day as snapshot (the real code path),
- a plain pandas implementation of the same usage features on a sample (what users would write),
and the Feast online read of one subscriber's features from the demo's SQLite store (p50/p99).
Prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipelines.config import DEFAULT_CONFIG, load_settings


def _settings(work: Path, n: int, days: int):
    start = dt.date(2026, 1, 1)
    end = start + dt.timedelta(days=days)
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["workdir"] = str(work)
    raw["data"].update(n_subscribers=n, start_date=str(start), end_date=str(end))
    raw["features"]["snapshots"] = [str(end - dt.timedelta(days=31)), str(end - dt.timedelta(days=1))]
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(raw))
    return load_settings(work / "config.yaml")


def pandas_usage_features(cdr: pd.DataFrame, snapshot: pd.Timestamp, recent: int, baseline: int) -> pd.DataFrame:
    """The peer: the usage-drop and zero-call features in plain pandas (no streak, bills or contract)."""
    t0 = snapshot - pd.Timedelta(days=recent + baseline)
    c = cdr[(cdr["start_time"] < snapshot) & (cdr["start_time"] >= t0)].copy()
    c["day"] = c["start_time"].dt.normalize()
    daily = c.groupby(["subscriber_id", "day"]).agg(calls=("duration_s", "size"), minutes=("duration_s", "sum"))
    daily["minutes"] /= 60
    daily = daily.reset_index()
    rec = daily["day"] >= snapshot - pd.Timedelta(days=recent)
    out = pd.DataFrame({
        "minutes_recent_per_day": daily[rec].groupby("subscriber_id")["minutes"].sum() / recent,
        "minutes_baseline_per_day": daily[~rec].groupby("subscriber_id")["minutes"].sum() / baseline,
        "call_days_30d": daily[daily["day"] >= snapshot - pd.Timedelta(days=30)].groupby("subscriber_id").size(),
        "competitor_hotline_calls_30d": c[(c["callee_class"] == "competitor_hotline") & (c["direction"] == "out")
                                          & (c["start_time"] >= snapshot - pd.Timedelta(days=30))]
        .groupby("subscriber_id").size(),
    }).fillna(0)
    out["minutes_change_pct"] = 100 * (out["minutes_recent_per_day"] - out["minutes_baseline_per_day"]) \
        / out["minutes_baseline_per_day"].clip(lower=1)
    return out


def online_latency(settings, n: int = 2000) -> tuple[float, float]:
    from features.store import get_store, online_features

    store = get_store(settings)
    ids = pd.read_parquet(settings.feature_table, columns=["subscriber_id"])["subscriber_id"].unique()
    online_features(store, [ids[0]])  # warm: registry load
    rng = np.random.default_rng(0)
    times = []
    for sid in rng.choice(ids, n):
        t0 = time.perf_counter()
        online_features(store, [sid])
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=330_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--pandas-sample", type=float, default=0.01, help="share of subscribers for the pandas peer")
    ap.add_argument("--online-only", action="store_true", help="only the online read, on the demo store")
    args = ap.parse_args()
    rows = []
    if not args.online_only:
        import duckdb

        from features.compute import compute_features
        from pipelines.generate import generate
        from pipelines.ingest import ingest

        work = Path(tempfile.mkdtemp(prefix="churnwarn-features-"))
        try:
            s = _settings(work, args.subscribers, args.days)
            generate(s)
            ingest(s)
            shutil.rmtree(s.landing_dir)  # only the ingested tables are needed now
            glob = f"{s.raw_dir / 'cdr'}/*/*.parquet"
            n_rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()[0][0]
            t0 = time.perf_counter()
            duckdb.sql(f"SELECT subscriber_id, sum(duration_s), count(*) FROM read_parquet('{glob}') GROUP BY 1").fetchall()
            floor = time.perf_counter() - t0
            snap = s.features.snapshots[-1]
            t0 = time.perf_counter()
            feats, _ = compute_features(s.raw_dir, [snap], s)
            engine = time.perf_counter() - t0
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            ids = pd.read_parquet(s.raw_dir / "subscribers.parquet", columns=["subscriber_id"])["subscriber_id"]
            sample = set(ids.sample(frac=args.pandas_sample, random_state=0))
            cdr = pd.read_parquet(s.raw_dir / "cdr", filters=[("subscriber_id", "in", list(sample))],
                                  columns=["subscriber_id", "callee_class", "start_time", "duration_s", "direction"])
            t0 = time.perf_counter()
            pandas_usage_features(cdr, pd.Timestamp(snap), s.features.recent_days, s.features.baseline_days)
            pd_time = time.perf_counter() - t0
            pd_rate = len(cdr) / pd_time
            rows += [
                ("CDR rows", f"{n_rows:,}"),
                ("DuckDB scan-only floor (group by subscriber)", f"{floor:.1f} s ({n_rows / floor:,.0f} rows/s)"),
                ("compute_features, one snapshot, all features", f"{engine:.1f} s ({n_rows / engine:,.0f} rows/s)"),
                ("peak memory of this process (RSS)", f"{peak:.2f} GiB"),
                (f"pandas peer, usage features only, {args.pandas_sample:.0%} sample",
                 f"{pd_time:.1f} s for {len(cdr):,} rows ({pd_rate:,.0f} rows/s)"),
                ("feature rows out", f"{len(feats):,}"),
            ]
        finally:
            shutil.rmtree(work, ignore_errors=True)
    demo = load_settings()
    if demo.feature_table.exists():
        p50, p99 = online_latency(demo)
        rows.append((f"Feast online read, 1 subscriber, {demo.feast.online_store.type} (demo store)",
                     f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"))
    print(f"\nfeatures benchmark ({args.subscribers:,} subscribers x {args.days} days)\n")
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
