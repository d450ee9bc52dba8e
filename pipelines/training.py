"""The ``train`` stage on operator records: train and register, write the report, and on simulated
data log the simulator's ceilings and reason fidelity next to the run (``pipelines/truth.py``)."""

from __future__ import annotations

from core.config import Settings
from core.io import write_json_atomic
from models.train import TrainResult, train
from pipelines.truth import log_simulator_metrics


def train_records(settings: Settings) -> TrainResult:
    result = train(settings)
    write_json_atomic(result.report(), settings.reports_dir / "train.json")
    log_simulator_metrics(settings, result)
    return result
