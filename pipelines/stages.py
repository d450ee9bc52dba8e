"""The pipeline stages as plain functions: the CLI, DVC and notebooks all call these."""

from __future__ import annotations

import logging

from pipelines.config import Settings
from pipelines.io import write_json_atomic, write_parquet_atomic

log = logging.getLogger(__name__)


def generate_data(settings: Settings) -> dict:
    """Simulate the operator's export into ``data/landing`` (ground truth into ``data/truth``)."""
    from dataclasses import asdict

    from pipelines.generate import generate

    summary = generate(settings)
    return asdict(summary) | {"rows_per_second": summary.rows_per_second}


def validate_data(settings: Settings) -> dict:
    """Run the Great Expectations suites on the landing export; raises ValidationFailed on bad input."""
    if settings.source is not None:  # a customer table (docs/real-data.md)
        from pipelines.customer_table import validate_stage
        return validate_stage(settings)
    from pipelines.validate import validate_landing

    return validate_landing(settings)


def ingest_data(settings: Settings) -> dict:
    """Validated landing export -> pseudonymised ``data/raw`` (no third-party numbers past here)."""
    from pipelines.ingest import ingest

    return ingest(settings)


def build_features(settings: Settings) -> dict:
    """Ingested tables -> point-in-time feature table -> Feast (apply + materialise).

    Nothing is written unless the export passes validation (re-checked if it changed since) and the
    new feature table passes its own suite; the table and labels are then replaced atomically.
    """
    from features.compute import compute_features
    from features.store import apply_and_materialize
    from pipelines.ingest import ensure_ingested
    from pipelines.validate import validate_features

    ensure_ingested(settings)
    feats, labels = compute_features(settings.raw_dir, settings.features.snapshots, settings)
    validate_features(feats, settings, file=f"{settings.feature_table} (new, not yet written)")
    write_parquet_atomic(labels, settings.label_table)
    write_parquet_atomic(feats, settings.feature_table)
    apply_and_materialize(settings)
    summary = {"rows": len(feats), "snapshots": [str(s) for s in settings.features.snapshots],
               "churn_rate": float(labels["churned"].mean())}
    write_json_atomic(summary, settings.reports_dir / "features.json")
    return summary


def train_models(settings: Settings) -> dict:
    """Train and compare the candidates; register the winner as ``champion`` (see models.train)."""
    if settings.source is not None:  # a customer table (docs/real-data.md)
        from pipelines.customer_table import train_stage
        return train_stage(settings)
    from models.train import train

    decision = train(settings)
    write_json_atomic(
        {k: v for k, v in decision.items() if k != "candidates"}
        | {f"{k}_{m}": v[m] for k, v in decision["candidates"].items() for m in ("roc_auc", "pr_auc", "top_decile_lift")},
        settings.reports_dir / "train.json",
    )
    return decision


def run_all(settings: Settings) -> dict:
    """Every stage in order, in this process (what ``dvc repro`` does stage by stage):
    generate, validate, ingest, features, train."""
    if settings.source is not None:  # a customer table: validate + train (docs/real-data.md)
        from pipelines.customer_table import run_stage
        return run_stage(settings)
    generate_data(settings)
    validate_data(settings)
    ingest_data(settings)
    build_features(settings)
    return train_models(settings)
