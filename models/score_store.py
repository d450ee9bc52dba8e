"""Every nightly score kept: what ``churn monitor`` compares with the training reference, and what it
scores against the labels once they mature.

``churn warn`` scores every active subscriber but lists only a few thousand; monitoring needs all
of them (drift is about the whole base, and precision alone says nothing about the churners the
list missed). One partition per feature date, ``<workdir>/monitoring/scores/date=YYYY-MM-DD/
scores.parquet``: subscriber, date, model name and version, calibrated probability, whether the
row made the list, and (``monitoring.store_features``) the feature values it was scored on, since
recomputing them later would need raw data that may no longer be kept. Written atomically
(``core.io``); partitions older than ``monitoring.retention_days`` before the newest are removed.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Settings
from core.io import PARTITION, write_parquet_atomic
from features.catalogue import FEATURE_NAMES

log = logging.getLogger(__name__)

FILE = "scores.parquet"
KEYS = ("subscriber_id", "feature_date", "model_name", "model_version", "churn_probability", "listed")


def scores_root(settings: Settings) -> Path:
    return settings.workdir / "monitoring" / "scores"


def partition(settings: Settings, date: dt.date) -> Path:
    return scores_root(settings) / f"{PARTITION}={date}" / FILE


@dataclass(frozen=True)
class StoredScores:
    """What one night's write kept, and which partitions the retention policy removed."""

    path: Path
    rows: int
    removed: tuple[dt.date, ...]


def keep_scores(
    settings: Settings,
    date: dt.date,
    model_name: str,
    model_version: str,
    feats: pd.DataFrame,
    proba: np.ndarray,
    listed: np.ndarray,
) -> StoredScores:
    """Store every scored row of ``date`` (``listed``: positions of ``feats`` that made the list)."""
    flag = np.zeros(len(feats), dtype=bool)
    flag[np.asarray(listed, dtype=int)] = True
    out = pd.DataFrame(
        {
            "subscriber_id": feats["subscriber_id"].to_numpy(),
            "feature_date": pd.Timestamp(date),
            "model_name": model_name,
            "model_version": str(model_version),
            "churn_probability": np.asarray(proba, dtype="float64"),
            "listed": flag,
        }
    )
    if settings.monitoring.store_features:
        out = pd.concat([out, feats[FEATURE_NAMES].reset_index(drop=True).astype("float64")], axis=1)
    path = write_parquet_atomic(out, partition(settings, date))
    removed = apply_retention(settings, date)
    log.info("monitoring: %d scores of %s kept in %s", len(out), date, path)
    return StoredScores(path, len(out), removed)


def scored_dates(settings: Settings) -> list[dt.date]:
    """The feature dates with stored scores, oldest first."""
    root = scores_root(settings)
    return sorted(
        dt.date.fromisoformat(p.parent.name.split("=", 1)[1]) for p in root.glob(f"{PARTITION}=*/{FILE}")
    )


def read_scores(settings: Settings, date: dt.date) -> pd.DataFrame | None:
    """The stored scores of ``date`` (None: never scored, or removed by the retention policy)."""
    path = partition(settings, date)
    return pd.read_parquet(path) if path.exists() else None


def apply_retention(settings: Settings, newest: dt.date) -> tuple[dt.date, ...]:
    """Remove partitions more than ``monitoring.retention_days`` before ``newest`` (the data's own
    clock, not the wall clock: a replayed or simulated history keeps what it should)."""
    cutoff = newest - dt.timedelta(days=settings.monitoring.retention_days)
    gone = tuple(d for d in scored_dates(settings) if d < cutoff)
    for d in gone:
        shutil.rmtree(partition(settings, d).parent, ignore_errors=True)
    if gone:
        log.info("monitoring: %d scored date(s) before %s removed (retention)", len(gone), cutoff)
    return gone
