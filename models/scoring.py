"""Score feature rows and explain them: the single path used by the service and batch jobs.

Rows are the model's input columns as delivered (a customer table's categoricals as text): the
model prepares them itself, and each reason reports the row's own value, numeric or text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.config import Settings
from models import stakes
from models.churn_model import ChurnModel, Explanation
from models.reasons import Lang, suggested_action, top_reasons, top_reasons_matrix


def score_with_reasons(
    model: ChurnModel,
    X: pd.DataFrame,
    settings: Settings,
    lang: Lang = "en",
    proba: np.ndarray | None = None,
    explanation: Explanation | None = None,
) -> list[dict]:
    """Per row: churn probability, risk tier, value at stake, expected loss, VIP tier, the top reasons
    and the suggested retention action.

    ``X`` holds the model's raw input columns (numbers, or text for categorical columns; a customer
    table's derived columns are computed here, as the model computes them), plus the value column
    (``warnings.value_feature``) when it is not a model input. ``proba``: the rows'
    calibrated probabilities when the caller has already predicted them (the nightly list scores
    everyone first, then explains only the warned rows). ``explanation``: the rows' SHAP explanation
    when the caller already has it (the service's batched model step computes both at once).
    """
    if X.empty:
        return []
    X = model.complete(X)  # a customer table's derived columns, from the mapped ones the caller sent
    proba = model.predict_proba(X) if proba is None else np.asarray(proba, dtype=float)
    reasons = top_reasons(model.explain(X) if explanation is None else explanation, X, settings, lang=lang)
    value = stakes.value_at_stake(X, settings.warnings)
    return _answers(proba, value, reasons, settings, lang)


def score_matrix(
    x: np.ndarray,
    value: np.ndarray,
    settings: Settings,
    lang: Lang,
    proba: np.ndarray,
    explanation: Explanation,
) -> list[dict]:
    """:func:`score_with_reasons` of all-numeric rows already predicted and explained (the service's
    path): ``x`` in the model's feature order, ``value`` the rows' ``warnings.value_feature`` (NaN
    when absent). The same answers, without a frame around each request's rows."""
    reasons = top_reasons_matrix(explanation, x, settings, lang=lang)
    return _answers(np.asarray(proba, dtype=float), np.asarray(value, dtype=float), reasons, settings, lang)


def _answers(
    proba: np.ndarray, value: np.ndarray, reasons: list, settings: Settings, lang: Lang
) -> list[dict]:
    tiers, vip = stakes.risk_tier(proba, settings.warnings), stakes.vip_tier(value, settings.warnings)
    return [
        {
            "churn_probability": float(p),
            "risk_tier": str(t),
            "value_at_stake": None if np.isnan(v) else float(v),
            "expected_loss": None if np.isnan(v) else float(p * v),
            "vip_tier": str(g),
            "reasons": [r.as_dict() for r in rs],
            "action": suggested_action(rs, lang),
        }
        for p, t, v, g, rs in zip(proba, tiers, value, vip, reasons, strict=False)
    ]
