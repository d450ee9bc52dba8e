"""Generate an operator-scale data set and report throughput and peak memory.

    uv run python benchmarks/generate_scale.py [--subscribers 1000000] [--days 90] [--keep DIR]

Default: 1 million subscribers x 90 days (about 10^8 calls), written in day partitions to a
temporary folder (removed afterwards unless --keep). Writes docs/benchmarks/generate_scale.md
(see benchmarks/_report.py) and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from _report import md_table, write_report

from core.config import DEFAULT_CONFIG, load_settings
from pipelines.generate import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--chunk", type=int, default=50_000, help="subscribers per chunk")
    ap.add_argument("--keep", type=Path, help="keep the data in this folder")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="churnwarn-scale-"))
    start = dt.date(2026, 3, 1)
    end = start + dt.timedelta(days=args.days)
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["workdir"] = str(work)
    raw["data"].update(
        n_subscribers=args.subscribers, start_date=str(start), end_date=str(end), chunk_subscribers=args.chunk
    )
    raw["features"]["snapshots"] = [str(end - dt.timedelta(days=30)), str(end)]
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    settings = load_settings(cfg)
    t0 = time.perf_counter()
    summary = generate(settings)
    wall = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    size_gib = sum(f.stat().st_size for f in settings.landing_dir.rglob("*") if f.is_file()) / 2**30
    files = sum(1 for _ in (settings.landing_dir / "cdr").rglob("*.parquet"))
    rows = [
        ("subscribers x days", f"{args.subscribers:,} x {args.days} (chunks of {args.chunk:,})"),
        ("calls (CDR rows)", f"{summary.calls:,}"),
        ("calls per subscriber a day", f"{summary.calls / args.subscribers / args.days:.2f}"),
        ("churn events", f"{summary.churn_events:,}"),
        ("wall time", f"{wall:,.1f} s"),
        ("throughput", f"{summary.calls / wall:,.0f} rows/s"),
        ("peak memory (RSS)", f"{peak_gib:.2f} GiB"),
        ("landing size on disk", f"{size_gib:.2f} GiB in {files:,} CDR files"),
    ]
    write_report(__file__, "Simulator at scale", [md_table(["measure", "value"], rows)])
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
