"""The pipeline stages as plain functions: the CLI, DVC and notebooks all call these."""

from __future__ import annotations

import logging

from pipelines.config import Settings
from pipelines.io import write_json_atomic, write_parquet_atomic

log = logging.getLogger(__name__)


def generate_data(settings: Settings) -> dict[str, str]:
    """Write a seeded operator data set to ``data/raw`` (and its ground truth to ``data/truth``)."""
    from pipelines.generate import generate, write_raw

    return write_raw(generate(settings), settings)


def validate_data(settings: Settings) -> dict:
    """Run the Great Expectations suites on the raw tables; raises ValidationFailed on bad input."""
    from pipelines.validate import validate_raw

    return validate_raw(settings)


def build_features(settings: Settings) -> dict:
    """Validated raw tables -> point-in-time feature table -> Feast (apply + materialise).

    Nothing is written unless the raw tables pass validation and the new feature table passes its
    own suite; the table and labels are then replaced atomically.
    """
    from features.compute import compute_features
    from features.store import apply_and_materialize
    from pipelines.validate import ensure_validated, validate_features

    ensure_validated(settings)
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
    from models.train import train

    decision = train(settings)
    write_json_atomic(
        {k: v for k, v in decision.items() if k != "candidates"}
        | {f"{k}_{m}": v[m] for k, v in decision["candidates"].items() for m in ("roc_auc", "pr_auc", "top_decile_lift")},
        settings.reports_dir / "train.json",
    )
    return decision


def run_all(settings: Settings) -> dict:
    """Every stage in order, in this process (what ``dvc repro`` does stage by stage)."""
    generate_data(settings)
    validate_data(settings)
    build_features(settings)
    return train_models(settings)
