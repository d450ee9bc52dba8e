"""Scoring a fitted candidate on the held-out rows: the metrics MLflow logs and the decision reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.config import Settings
from models.candidates import FittedCandidate
from models.metrics import brier, evaluate, expected_calibration_error
from models.training_data import TrainingSet


@dataclass(frozen=True)
class CandidateEvaluation:
    kind: str
    scores: dict[str, float]  # metric -> value on the test rows (served, calibrated probabilities)
    extra: dict[str, float]  # calibration diagnostics: cross-validated on validation, raw on test
    test_proba: np.ndarray  # the served probability of each test row
    test_raw: np.ndarray | None  # the uncalibrated score (None for the baseline)


def metric_values(y, score, settings: Settings, value=None) -> dict[str, float]:
    """``models.metrics.evaluate`` as plain floats (what MLflow logs)."""
    out = evaluate(y, score, value=value, settings=settings)
    return {k: float(v) for k, v in out.items() if v is not None and np.isscalar(v)}


def evaluate_candidate(settings: Settings, cand: FittedCandidate, data: TrainingSet) -> CandidateEvaluation:
    """The candidate's metrics on the test rows; calibrated ones also get the raw scores' Brier and ECE."""
    proba = cand.model.predict_proba(data.X_test)
    scores = metric_values(data.y_test, proba, settings, data.value_test)
    extra = dict(cand.calibration_cv)
    raw = None
    if cand.calibration is not None:
        raw = cand.model.predict_raw(data.X_test)
        extra |= {
            "test_brier_raw": brier(data.y_test, raw),
            "test_ece_raw": expected_calibration_error(data.y_test, raw),
        }
    return CandidateEvaluation(cand.kind, scores, extra, proba, raw)
