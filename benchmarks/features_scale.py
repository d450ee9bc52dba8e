"""Feature engine and online store speed: one snapshot's features at scale, and online reads.

    uv run python benchmarks/features_scale.py [--subscribers 1000000] [--days 90] [--daily-calls 1.0]
                                               [--data DIR] [--pandas-sample 0.01]
    uv run python benchmarks/features_scale.py --online-only      # online latency on the demo store

Generates and ingests a data set (default: 1 million subscribers x 90 days at a median of one call
a subscriber a day, about 10^8 CDR rows; ``--data DIR`` keeps it there and reuses it next time),
then times, on this machine, each in a fresh process so its peak memory is its own:
- the DuckDB scan-only floor (read every CDR row once, group by subscriber, no features),
- ``features.compute.compute_features`` for the last day as snapshot (the real code path, every
  catalogue feature),
- a plain pandas implementation of the usage features on a sample (what users would write),
and the Feast online read of one subscriber's features from the demo's store (p50/p99; skipped when
this checkout has no demo workdir). Writes docs/benchmarks/features_scale.md (see
benchmarks/_report.py) and prints it.
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
from _report import md_table, write_report

from core.config import DEFAULT_CONFIG, load_settings
from features.catalogue import FEATURE_NAMES


def _settings(work: Path, n: int, days: int, daily_calls: float):
    start = dt.date(2026, 1, 1)
    end = start + dt.timedelta(days=days)
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["workdir"] = str(work)
    raw["data"].update(
        n_subscribers=n, start_date=str(start), end_date=str(end), median_daily_calls=daily_calls
    )
    raw["features"]["snapshots"] = [str(end - dt.timedelta(days=31)), str(end - dt.timedelta(days=1))]
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(raw))
    return load_settings(work / "config.yaml")


def pandas_usage_features(
    cdr: pd.DataFrame, snapshot: pd.Timestamp, recent: int, baseline: int
) -> pd.DataFrame:
    """The peer: the usage-drop and zero-call features in plain pandas (no streak, bills or contract)."""
    t0 = snapshot - pd.Timedelta(days=recent + baseline)
    c = cdr[(cdr["start_time"] < snapshot) & (cdr["start_time"] >= t0)].copy()
    c["day"] = c["start_time"].dt.normalize()
    daily = c.groupby(["subscriber_id", "day"]).agg(
        calls=("duration_s", "size"), minutes=("duration_s", "sum")
    )
    daily["minutes"] /= 60
    daily = daily.reset_index()
    rec = daily["day"] >= snapshot - pd.Timedelta(days=recent)
    out = pd.DataFrame(
        {
            "minutes_recent_per_day": daily[rec].groupby("subscriber_id")["minutes"].sum() / recent,
            "minutes_baseline_per_day": daily[~rec].groupby("subscriber_id")["minutes"].sum() / baseline,
            "call_days_30d": daily[daily["day"] >= snapshot - pd.Timedelta(days=30)]
            .groupby("subscriber_id")
            .size(),
            "competitor_hotline_calls_30d": c[
                (c["callee_class"] == "competitor_hotline")
                & (c["direction"] == "out")
                & (c["start_time"] >= snapshot - pd.Timedelta(days=30))
            ]
            .groupby("subscriber_id")
            .size(),
        }
    ).fillna(0)
    out["minutes_change_pct"] = (
        100
        * (out["minutes_recent_per_day"] - out["minutes_baseline_per_day"])
        / out["minutes_baseline_per_day"].clip(lower=1)
    )
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


def _timed(kind: str, config: str, queue) -> None:
    """Run one measured step in this (fresh) process; report (seconds, result, peak RSS GiB)."""
    import duckdb

    from features.compute import compute_features

    s = load_settings(Path(config))
    glob = f"{s.raw_dir / 'cdr'}/*/*.parquet"
    t0 = time.perf_counter()
    if kind == "floor":
        out = duckdb.sql(
            f"SELECT subscriber_id, sum(duration_s), count(*) FROM read_parquet('{glob}') GROUP BY 1"
        ).fetchall()
        result = len(out)
    else:
        feats, _ = compute_features(s.raw_dir, [s.features.snapshots[-1]], s)
        result = len(feats)
    queue.put((time.perf_counter() - t0, result, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20))


def _in_child(kind: str, config: Path) -> tuple[float, int, float]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_timed, args=(kind, str(config), q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--daily-calls", type=float, default=1.0, help="median calls per subscriber a day")
    ap.add_argument("--data", type=Path, help="keep the generated data here and reuse it if present")
    ap.add_argument(
        "--pandas-sample", type=float, default=0.01, help="share of subscribers for the pandas peer"
    )
    ap.add_argument(
        "--validate", action="store_true", help="run the Great Expectations suites before ingesting"
    )
    ap.add_argument("--online-only", action="store_true", help="only the online read, on the demo store")
    args = ap.parse_args()
    rows = []
    if not args.online_only:
        import duckdb

        from pipelines.generate import generate
        from pipelines.ingest import ingest

        work = args.data or Path(tempfile.mkdtemp(prefix="churnwarn-features-"))
        try:
            if (work / "config.yaml").exists() and (work / "data" / "raw" / "cdr").exists():
                s = load_settings(work / "config.yaml")
                print(f"reusing the ingested data in {work}")
            else:
                s = _settings(work, args.subscribers, args.days, args.daily_calls)
                generate(s)
                ingest(
                    s, skip_validation=not args.validate
                )  # GX on 10^8 rows takes minutes; not measured here
                shutil.rmtree(s.landing_dir)  # only the ingested tables are needed now
            glob = f"{s.raw_dir / 'cdr'}/*/*.parquet"
            n_rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()[0][0]
            n_subs = duckdb.sql(
                f"SELECT count(*) FROM read_parquet('{s.raw_dir / 'subscribers.parquet'}')"
            ).fetchall()[0][0]
            floor, _, floor_peak = _in_child("floor", work / "config.yaml")
            engine, n_out, engine_peak = _in_child("features", work / "config.yaml")
            snap = s.features.snapshots[-1]
            ids = pd.read_parquet(s.raw_dir / "subscribers.parquet", columns=["subscriber_id"])[
                "subscriber_id"
            ]
            sample = set(ids.sample(frac=args.pandas_sample, random_state=0))
            cdr = pd.read_parquet(
                s.raw_dir / "cdr",
                filters=[("subscriber_id", "in", list(sample))],
                columns=["subscriber_id", "callee_class", "start_time", "duration_s", "direction"],
            )
            t0 = time.perf_counter()
            pandas_usage_features(cdr, pd.Timestamp(snap), s.features.recent_days, s.features.baseline_days)
            pd_time = time.perf_counter() - t0
            pd_rate = len(cdr) / pd_time
            rows += [
                (
                    "data",
                    f"{n_subs:,} subscribers, {n_rows:,} CDR rows ({s.data.start_date} .. {s.data.end_date})",
                ),
                (
                    "DuckDB scan-only floor (group by subscriber)",
                    f"{floor:.1f} s ({n_rows / floor:,.0f} rows/s), peak {floor_peak:.2f} GiB",
                ),
                (
                    f"compute_features, one snapshot, all {len(FEATURE_NAMES)} features",
                    f"{engine:.1f} s ({n_rows / engine:,.0f} rows/s), peak {engine_peak:.2f} GiB",
                ),
                ("compute_features per 10^8 CDR rows", f"{engine * 1e8 / n_rows:.1f} s"),
                (
                    f"pandas peer, usage features only, {args.pandas_sample:.0%} sample",
                    f"{pd_time:.1f} s for {len(cdr):,} rows ({pd_rate:,.0f} rows/s)",
                ),
                ("feature rows out", f"{n_out:,}"),
            ]
        finally:
            if not args.data:
                shutil.rmtree(work, ignore_errors=True)
    demo = load_settings()
    if demo.feature_table.exists():
        p50, p99 = online_latency(demo)
        rows.append(
            (
                f"Feast online read, 1 subscriber, all features, {demo.feast.online_store.type} (demo store)",
                f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
            )
        )
    else:
        rows.append(("Feast online read", "skipped: no demo workdir in this checkout (run `churn demo`)"))
    notes = [
        md_table(["measure", "value"], rows),
        "Targets: 10^8 CDR rows in under 60 s and 8 GiB; an online read in under 5 ms at p99. The "
        "pandas peer computes only the usage features on a sample, in one process: the code users "
        "would otherwise write, not the same workload.",
    ]
    write_report(__file__, "Feature engine and online store", notes)


if __name__ == "__main__":
    main()
