"""``features.engine``: the feature query on DuckDB (embedded default) or Spark (operator scale).

Callers ask here, never an engine directly, so the engine is one setting. Spark is imported only when
chosen: the default install and the README's commands never load PySpark or start a JVM.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from core.config import Settings
from features import compute


def compute_features(
    raw_dir: Path, snapshots: list[dt.date], settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, labels) as ``features.compute.compute_features`` returns them, on the configured engine."""
    if settings.features.engine == "spark":
        from features import spark_engine  # the optional `spark` extra

        return spark_engine.compute_features(raw_dir, snapshots, settings)
    return compute.compute_features(raw_dir, snapshots, settings)
