"""A daily run against a full rebuild: one new CDR day folded into ingested data and features.

    uv run python benchmarks/daily_increment.py [--subscribers 20000] [--days 90] [--data DIR]

Generates ``--days`` of the simulated export (``--data DIR`` keeps it there), holds the last day's
CDR partition back, and ingests and builds the features without it. Then, timed in this process:
- **increment**: the day arrives; ``ingest`` takes only the new partition and the feature build
  recomputes only the snapshot whose window holds it (and reloads the online store);
- **full rebuild** (the floor to beat): the same data ingested and built from nothing.
Validation is left out of both (``ingest(skip_validation=True)``): it still checks the whole
export every time. Writes docs/benchmarks/daily_increment.md (see benchmarks/_report.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from _report import md_table, write_report

import pipelines.feature_build as feature_build
from core.config import DEFAULT_CONFIG, load_settings
from core.io import PARTITION
from pipelines.feature_build import build_features
from pipelines.generate import generate
from pipelines.ingest import ingest

TARGET = 0.10  # the increment should cost under a tenth of a full rebuild


def _settings(work: Path, n: int, days: int):
    start = dt.date(2026, 1, 1)
    end = start + dt.timedelta(days=days)
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["workdir"] = str(work)
    raw["data"].update(n_subscribers=n, start_date=str(start), end_date=str(end))
    # the last snapshot is the day after the data: its features read the new day
    raw["features"]["snapshots"] = [str(end - dt.timedelta(days=d)) for d in (60, 30, 0)]
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(raw))
    return load_settings(work / "config.yaml")


def _ingest_and_build(settings) -> tuple[float, float, str]:
    t0 = time.perf_counter()
    ingest(settings, skip_validation=True)
    t1 = time.perf_counter()
    result = build_features(settings)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, f"{result.build}: {result.computed} computed, {result.kept} kept"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--data", type=Path, help="keep the generated export here and reuse it")
    args = ap.parse_args()
    # the benchmark leaves validation out (see the docstring): the build must not re-validate either
    feature_build.ensure_ingested = lambda settings: None
    with tempfile.TemporaryDirectory() as tmp:
        work = args.data or Path(tmp) / "work"
        settings = _settings(work, args.subscribers, args.days)
        if not (settings.landing_dir / "cdr").exists():
            generate(settings)
        last = settings.data.end_date - dt.timedelta(days=1)
        day = settings.landing_dir / "cdr" / f"{PARTITION}={last}"
        held = Path(tmp) / "held" / day.name
        for d in (settings.raw_dir, settings.features_dir, settings.feast_dir):
            shutil.rmtree(d, ignore_errors=True)
        shutil.move(day, held)
        _ingest_and_build(settings)  # the state before the day arrives (not timed)
        shutil.move(held, day)
        rows = [("increment: one new day", *_ingest_and_build(settings))]
        for d in (settings.raw_dir, settings.features_dir, settings.feast_dir):
            shutil.rmtree(d)
        rows.append(("full rebuild (floor)", *_ingest_and_build(settings)))
    (name_i, ing_i, feat_i, how_i), (name_f, ing_f, feat_f, how_f) = rows
    ratio = (ing_i + feat_i) / (ing_f + feat_f)
    table = md_table(
        ["run", "ingest s", "features s", "total s", "what the build did"],
        [(n, f"{a:.1f}", f"{b:.1f}", f"{a + b:.1f}", how) for n, a, b, how in rows],
        "lrrrl",
    )
    write_report(
        __file__,
        "Daily increment against a full rebuild",
        [
            f"{args.subscribers:,} subscribers, {args.days} days of calls; the new day is {last}.",
            table,
            f"Increment / full rebuild: **{ratio:.2f}** (target under {TARGET:.2f}). Both include "
            "loading the Feast online store; neither includes validation.",
        ],
    )


if __name__ == "__main__":
    main()
