"""The ``train`` stage on operator records: the training set from Feast's point-in-time join, split
out of time; train and register (``models.train``), write the report, and on simulated data log the
simulator's ceilings and reason fidelity next to the run (``pipelines/truth.py``)."""

from __future__ import annotations

import logging

import pandas as pd

from core.config import Settings
from core.io import write_json_atomic
from features.catalogue import FEATURE_NAMES
from features.store import historical_features
from models.candidates import build_candidates
from models.train import TrainResult, train_and_register
from models.training_data import TrainingSet, data_version, split_out_of_time
from pipelines.truth import log_simulator_metrics

log = logging.getLogger(__name__)


def train_records(settings: Settings) -> TrainResult:
    result = train(settings)
    write_json_atomic(result.report(), settings.reports_dir / "train.json")
    log_simulator_metrics(settings, result)
    return result


def train(settings: Settings) -> TrainResult:
    """Feast features, out-of-time split, rules / logistic / LightGBM; registers the winner."""
    sample = None
    if settings.features.engine == "spark":
        from pipelines.training_spark import spark_rows  # the optional `spark` extra

        train_df, valid_df, test_df, sample = spark_rows(settings)
    else:
        frame = historical_features(settings, pd.read_parquet(settings.label_table))
        train_df, valid_df, test_df = split_out_of_time(frame, settings)
    params = {
        "split": "out-of-time: train / validation / test snapshots",
        "train_snapshots": ",".join(sorted({str(t.date()) for t in train_df["event_timestamp"]})),
        "valid_snapshot": str(valid_df["event_timestamp"].max().date()),
        "test_snapshot": str(test_df["event_timestamp"].max().date()),
        "label_horizon_days": settings.features.label_horizon_days,
        "n_train": len(train_df),
        "n_valid": len(valid_df),
        "n_test": len(test_df),
        "n_features": len(FEATURE_NAMES),
        **(sample.held_out_params if sample is not None else {}),
    }
    log.info(
        "training on %d rows (%s), validating on %d (%s), testing on %d rows (%s)",
        len(train_df),
        params["train_snapshots"],
        len(valid_df),
        params["valid_snapshot"],
        len(test_df),
        params["test_snapshot"],
    )
    data = TrainingSet(
        X_train=train_df[FEATURE_NAMES],
        y_train=train_df["churned"].to_numpy(),
        X_valid=valid_df[FEATURE_NAMES],
        y_valid=valid_df["churned"].to_numpy(),
        X_test=test_df[FEATURE_NAMES],
        y_test=test_df["churned"].to_numpy(),
        features=list(FEATURE_NAMES),
        data_version=data_version(settings.feature_table, settings.label_table),
        params=params,
        held_out=f"held-out snapshot {params['test_snapshot']}",
        split=f"out of time: train {params['train_snapshots']}, validation {params['valid_snapshot']}, "
        f"test {params['test_snapshot']}",
        value_test=test_df["arpu_3m"].to_numpy(dtype=float) if "arpu_3m" in test_df else None,
        ids_test=test_df["subscriber_id"].to_numpy() if "subscriber_id" in test_df else None,
        # the snapshot stratifies training.sample_rows' sample; the keys name the rows on the MLflow run
        keys_train=train_df[["subscriber_id", "event_timestamp"]],
        sample=None if sample is None else sample.train,
    )
    return train_and_register(settings, data, build_candidates(settings), baseline="rules")
