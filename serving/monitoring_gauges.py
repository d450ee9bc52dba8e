"""Prometheus gauges of the latest ``churn monitor`` report, on the server's ``/metrics``, so an
existing Grafana / Alertmanager set-up can alert on drift and on the matured AUC.

The report (``<workdir>/monitoring/reports/<D>/report.json``) is written by a batch job, not by the
server, so each worker reads the newest one when it starts and again every ``REFRESH_S`` seconds in
a daemon thread. Gauges in BentoML's multiprocess mode keep the most recent value any worker set
(``multiprocess_mode="mostrecent"``); no report yet: no samples.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import threading
from pathlib import Path

from core.config import Settings

log = logging.getLogger("churnwarn.serving")

REFRESH_S = 60.0


@functools.cache
def gauges():
    """The monitoring gauges (created once per worker, after the multiprocess directory is set)."""
    import prometheus_client as pc  # imported here: it picks single- or multi-process mode on import

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()):
        return pc.Gauge(name, doc, list(labels), multiprocess_mode="mostrecent")

    return {
        "psi": gauge(
            "churnwarn_drift_psi", "PSI against the training reference, latest monitor report", ("feature",)
        ),
        "alarm": gauge("churnwarn_drift_alarm", "1 if the column crossed a drift threshold", ("feature",)),
        "auc": gauge("churnwarn_matured_roc_auc", "ROC-AUC of the latest matured scored date"),
        "training_auc": gauge("churnwarn_training_roc_auc", "held-out ROC-AUC of the monitored version"),
        "retrain": gauge("churnwarn_retrain_recommended", "1 if churn monitor recommends churn train"),
        "date": gauge("churnwarn_monitor_date_seconds", "feature date of the latest report (unix time)"),
    }


def latest_report(settings: Settings) -> Path | None:
    """The newest ``report.json`` by feature date (folder name), or None."""
    reports = sorted((settings.workdir / "monitoring" / "reports").glob("*/report.json"))
    return reports[-1] if reports else None


def publish(settings: Settings) -> str | None:
    """Set the gauges from the newest report; its date, or None when there is none."""
    path = latest_report(settings)
    if path is None:
        return None
    report = json.loads(path.read_text())
    g = gauges()
    for col in [*report["features"], report["score"]]:
        g["psi"].labels(col["name"]).set(col["psi"])
        g["alarm"].labels(col["name"]).set(1.0 if col["drifted"] else 0.0)
    if report["matured"]:
        g["auc"].set(report["matured"][-1]["figures"]["roc_auc"])
    g["training_auc"].set(report["training"]["roc_auc"])
    g["retrain"].set(1.0 if report["advice"]["retrain"] else 0.0)
    day = dt.date.fromisoformat(report["date"])
    g["date"].set(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
    return report["date"]


def start(settings: Settings, interval: float = REFRESH_S) -> threading.Thread:
    """Publish now, then every ``interval`` seconds in a daemon thread; a bad report is logged, not fatal."""

    def loop() -> None:
        while True:
            try:
                publish(settings)
            except Exception as exc:  # a half-migrated or hand-edited report must not stop the server
                log.warning("monitoring gauges not updated: %s", exc)
            stop.wait(interval)

    stop = threading.Event()
    thread = threading.Thread(target=loop, name="monitoring-gauges", daemon=True)
    thread.start()
    return thread
