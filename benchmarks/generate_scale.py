"""Generate an operator-scale data set and report throughput and peak memory.

    uv run python benchmarks/generate_scale.py [--subscribers 1000000] [--days 90] [--keep DIR]

Default: 1 million subscribers x 90 days (about 10^8 calls), written in day partitions to a
temporary folder (removed afterwards unless --keep). Each size is generated twice, each time in a
process of its own (its peak memory is its own): first without the call graph (``data.graph: null``,
anonymous contact pools: the floor), then with the configured graph and contagion; the ratio of the
two wall times is the graph's cost. Writes docs/benchmarks/generate_scale.md (see
benchmarks/_report.py) and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from _report import md_table, write_report

from core.config import DEFAULT_CONFIG, load_settings
from pipelines.generate import generate


def _generate(config: Path, out: mp.Queue) -> None:
    """In a process of its own: generate, then report the summary, wall time and this process's peak."""
    settings = load_settings(config)
    t0 = time.perf_counter()
    summary = generate(settings)
    wall = time.perf_counter() - t0
    out.put((summary, wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20))


def _run(raw: dict, work: Path, graph: bool):
    raw = {**raw, "data": {**raw["data"], **({} if graph else {"graph": None})}}
    raw["workdir"] = str(work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    q: mp.Queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_generate, args=(cfg, q))
    proc.start()
    summary, wall, peak = q.get()
    proc.join()
    settings = load_settings(cfg)
    size = sum(f.stat().st_size for f in settings.landing_dir.rglob("*") if f.is_file()) / 2**30
    files = sum(1 for _ in (settings.landing_dir / "cdr").rglob("*.parquet"))
    contagion = int(
        pd.read_parquet(settings.truth_dir / "intents.parquet", columns=["contagion"])["contagion"].sum()
    )
    return summary, wall, peak, size, files, contagion


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
    raw["data"].update(
        n_subscribers=args.subscribers, start_date=str(start), end_date=str(end), chunk_subscribers=args.chunk
    )
    raw["features"]["snapshots"] = [str(end - dt.timedelta(days=30)), str(end)]
    runs = {}
    for graph in (False, True):
        runs[graph] = _run(raw, work / ("graph" if graph else "pools"), graph)
        if not args.keep:
            shutil.rmtree(work / ("graph" if graph else "pools"), ignore_errors=True)
    rows = [("subscribers x days", f"{args.subscribers:,} x {args.days} (chunks of {args.chunk:,})", "")]
    measures = [
        ("calls (CDR rows)", lambda r: f"{r[0].calls:,}"),
        ("calls per subscriber a day", lambda r: f"{r[0].calls / args.subscribers / args.days:.2f}"),
        ("churn events", lambda r: f"{r[0].churn_events:,}"),
        ("intents set off by contagion", lambda r: f"{r[5]:,}"),
        ("wall time", lambda r: f"{r[1]:,.1f} s"),
        ("throughput", lambda r: f"{r[0].calls / r[1]:,.0f} rows/s"),
        ("peak memory (RSS)", lambda r: f"{r[2]:.2f} GiB"),
        ("landing size on disk", lambda r: f"{r[3]:.2f} GiB in {r[4]:,} CDR files"),
    ]
    rows += [(name, f(runs[False]), f(runs[True])) for name, f in measures]
    ratio = runs[True][1] / runs[False][1]
    write_report(
        __file__,
        "Simulator at scale",
        [
            md_table(
                ["measure", "anonymous pools (data.graph: null)", "call graph and contagion (default)"], rows
            ),
            f"The call graph costs {ratio:.2f}x the wall time of anonymous pools in this run.",
        ],
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
