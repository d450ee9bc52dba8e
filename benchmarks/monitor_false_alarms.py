"""How often does ``churn monitor`` alarm without a shift, and does it see one? Measured, not assumed.

On a workdir where ``churn run`` has trained a champion (unshifted data), every date of ``--dates``
is scored (``churn warn``, if it was not yet) and monitored; then, with ``--campaign START``, a copy
of the workdir gets the simulator's competitor campaign (``data.campaign``), is regenerated and
ingested (the champion stays the one trained before the shift), and the dates from START on are
scored and monitored too::

    uv run python benchmarks/monitor_false_alarms.py --config CONFIG \\
        [--dates 2026-05-08,2026-05-15,...] [--campaign 2026-05-10 --reach 0.4]

Writes docs/benchmarks/monitor_false_alarms.md (see benchmarks/_report.py): per date, the columns
that alarmed, the largest PSI, the latest matured ROC-AUC and the advice; then the false-alarm rate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
from pathlib import Path

import yaml
from _report import md_table, write_report

from core.config import load_settings
from models.score_store import read_scores
from pipelines.monitor import monitor
from pipelines.stages import RECORD_STAGES, run_stage
from pipelines.warn import nightly_list

DATES = "2026-05-08,2026-05-15,2026-05-22,2026-05-29,2026-06-05,2026-06-12,2026-06-19,2026-07-01"


def rows(settings, dates: list[dt.date], label: str) -> list[tuple]:
    """Score (if needed) and monitor each date; one table row each."""
    out = []
    for day in dates:
        if read_scores(settings, day) is None:
            nightly_list(settings, day)
        r = monitor(settings, day, log_to_mlflow=False)
        auc = f"{r.matured[-1].figures.roc_auc:.3f} ({r.matured[-1].date})" if r.matured else "-"
        top = max(r.features, key=lambda d: d.psi)
        out.append(
            (label, day, ", ".join(r.drifted) or "none", f"{top.psi:.2f} {top.name}", auc, r.advice.text())
        )
    return out


def shifted_copy(config: Path, start: str, reach: float, dst: Path):
    """A copy of the workdir with the campaign, regenerated and ingested; the champion kept."""
    base = load_settings(config)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(base.workdir, dst, ignore=shutil.ignore_patterns("monitoring"))
    raw = yaml.safe_load(Path(config).read_text())
    raw["workdir"] = str(dst)
    raw.setdefault("data", {})["campaign"] = {"start": start, "reach": reach}
    path = dst / "campaign.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    settings = load_settings(path)
    for name in ("generate", "validate", "ingest"):
        run_stage(next(s for s in RECORD_STAGES if s.name == name), settings)
    return settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--dates", default=DATES)
    ap.add_argument("--campaign", default=None, help="start date of a competitor campaign to detect")
    ap.add_argument("--reach", type=float, default=0.4)
    args = ap.parse_args()
    dates = [dt.date.fromisoformat(d) for d in args.dates.split(",")]
    table = rows(load_settings(args.config), dates, "unshifted")
    false = sum(r[2] != "none" for r in table)
    advised = sum(r[5].startswith("recommend") for r in table)
    if args.campaign:
        start = dt.date.fromisoformat(args.campaign)
        dst = load_settings(args.config).workdir.parent / "monitor-campaign"
        shifted = shifted_copy(args.config, args.campaign, args.reach, dst)
        table += rows(
            shifted, [d for d in dates if d > start], f"campaign from {start}, reach {args.reach:g}"
        )
    headers = ["data", "feature date", "drift alarms", "largest PSI", "matured ROC-AUC", "advice"]
    note = (
        f"False-alarm rate on unshifted data: {false} of {len(dates)} dates "
        f"({false / len(dates):.0%}); retraining advised on {advised} of them. Thresholds: "
        "configs/default.yaml `monitoring:` (docs/monitoring.md)."
    )
    write_report(__file__, "Drift alarms with and without a shift", [md_table(headers, table), note])


if __name__ == "__main__":
    main()
