"""Score feature rows and explain them: the single path used by the service and batch jobs.

Rows are the model's input columns as delivered (a customer table's categoricals as text): the
model prepares them itself, and each reason reports the row's own value, numeric or text.
"""

from __future__ import annotations

import pandas as pd

from models.churn_model import ChurnModel
from models.reasons import Lang, suggested_action, top_reasons
from pipelines.config import Settings


def score_with_reasons(model: ChurnModel, X: pd.DataFrame, settings: Settings, lang: Lang = "en") -> list[dict]:
    """Per row: churn probability, the top reasons and the suggested retention action.

    ``X`` holds the model's raw input columns (numbers, or text for categorical columns).
    """
    if X.empty:
        return []
    proba = model.predict_proba(X)
    reasons = top_reasons(model.explain(X), X, settings, lang=lang)
    return [
        {
            "churn_probability": float(p),
            "reasons": [r.as_dict() for r in rs],
            "action": suggested_action(rs, lang),
        }
        for p, rs in zip(proba, reasons)
    ]
