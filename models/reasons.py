"""Turn SHAP contributions into reasons staff can act on: code, sentence and suggested action.

Templates live in ``configs/reasons.yaml``; this module only picks the top contributions and fills
the templates with the subscriber's own values. A column with no template of its own (a customer
table's ``contract`` or ``tenure``, say) gets the ``generic`` sentence, e.g. "contract =
Month-to-month raises the risk"; its value stays text when the column is categorical.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml

from core.config import REPO_ROOT, Settings
from features.catalogue import BY_NAME
from models.churn_model import Explanation, in_order

REASONS_FILE = REPO_ROOT / "configs" / "reasons.yaml"
Lang = Literal["en", "zh"]


@dataclass
class Reason:
    code: str
    feature: str
    value: float | str  # text for a categorical column
    contribution: float  # SHAP value in log-odds; > 0 raises the risk
    sentence: str
    action: str

    def as_dict(self) -> dict:
        """Its fields as a dict (``dataclasses.asdict`` deep-copies: 2/3 of scoring 100 rows)."""
        return {f: getattr(self, f) for f in _REASON_FIELDS}


_REASON_FIELDS = tuple(f.name for f in fields(Reason))


@lru_cache(maxsize=4)
def load_templates(path: Path = REASONS_FILE) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _value_text(value: float | str) -> str:
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "missing"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def _generic(
    feature: str, value: float | str, contribution: float, lang: Lang, tpl: dict
) -> tuple[str, str, str]:
    spec = tpl["generic"]
    fields = {
        "column": feature,
        "value_text": _value_text(value),
        "column_code": re.sub(r"[^0-9A-Za-z]+", "_", feature).strip("_").upper(),
    }
    which = spec["raises"] if contribution > 0 else spec["lowers"]
    return (
        spec["code"].format(**fields),
        which[lang].format(**fields),
        spec["action"] if contribution > 0 else "none",
    )


def _sentence(
    feature: str, value: float | str, contribution: float, lang: Lang, settings: Settings, tpl: dict
) -> tuple[str, str, str]:
    spec = tpl["reasons"].get(feature)
    meta = BY_NAME.get(feature)
    if spec is None or meta is None or isinstance(value, str) or settings.features is None:
        return _generic(feature, value, contribution, lang, tpl)
    fields = {
        "value": value,
        "abs_value": abs(value),
        "recent": settings.features.recent_days,
        "baseline": settings.features.baseline_days,
        "top_k": settings.features.graph_top_contacts,
        "meaning": meta.meaning,
        "unit": meta.unit,
        "plan_en": "Postpaid" if value >= 0.5 else "Prepaid",
        "plan_zh": "后付费" if value >= 0.5 else "预付费",
    }
    if "at_zero" in spec and value == 0:
        spec = spec["at_zero"]  # e.g. "ends in 0 days" for a contract that has already ended
    elif "at_cap" in spec and meta.hi is not None and value >= meta.hi:
        spec = spec["at_cap"]  # the cap is also the value of "no such thing" (prepaid: no contract)
    elif "below_zero" in spec and value < 0:
        spec = spec["below_zero"]  # a change that is a fall, e.g. a bill down rather than up
    beyond = spec.get("beyond_renewal_window")
    if beyond is not None and value > settings.features.renewal_window_days:
        spec = beyond  # e.g. a contract 200 days from its end is not "expiring"
        fields["window"] = settings.features.renewal_window_days
    if contribution > 0:
        return spec["code"], spec[lang].format(**fields), spec["action"]
    return spec["code"], tpl["lowers"][lang].format(**fields), "none"


def top_reasons(
    explanation: Explanation, X: pd.DataFrame, settings: Settings, k: int | None = None, lang: Lang = "en"
) -> list[list[Reason]]:
    """The ``k`` largest contributions per row (risk-raising first), one per reason code, as :class:`Reason`.

    Features that say the same thing share a code (minutes and calls down are both USAGE_DROP; the
    7/30/90-day hotline counts are all COMPETITOR_HOTLINE): only the strongest of them is listed, so
    the ``k`` reasons a retention agent reads are ``k`` different reasons.
    """
    values = in_order(X, explanation.features)
    dtypes = values.dtypes  # per column, without materialising each column as a Series
    numeric = [
        pd.api.types.is_numeric_dtype(dtypes[f]) or pd.api.types.is_bool_dtype(dtypes[f])
        for f in explanation.features
    ]
    return _pick(explanation, values.to_numpy(dtype=object), numeric, settings, k, lang)


def top_reasons_matrix(
    explanation: Explanation, x: np.ndarray, settings: Settings, k: int | None = None, lang: Lang = "en"
) -> list[list[Reason]]:
    """:func:`top_reasons` of all-numeric rows given as one float matrix in ``explanation.features``
    order (the service's rows): the same reasons, without a frame."""
    return _pick(explanation, x, [True] * len(explanation.features), settings, k, lang)


def _pick(
    explanation: Explanation, values: np.ndarray, numeric: list[bool], settings: Settings, k, lang: Lang
) -> list[list[Reason]]:
    tpl = load_templates()
    k = k or settings.serving.top_reasons
    contrib = explanation.contributions
    order = np.argsort(-contrib, axis=1, kind="stable")
    out = []
    for i, idx in enumerate(order):
        row, codes = [], set()
        for j in idx:
            f = explanation.features[j]
            v = values[i, j]
            value = float(v) if numeric[j] else (float("nan") if pd.isna(v) else str(v))
            code, sentence, action = _sentence(f, value, contrib[i, j], lang, settings, tpl)
            if code in codes:
                continue
            codes.add(code)
            row.append(Reason(code, f, value, float(contrib[i, j]), sentence, action))
            if len(row) == k:
                break
        out.append(row)
    return out


def suggested_action(reasons: list[Reason], lang: Lang = "en") -> dict:
    """The action of the strongest risk-raising reason that has one."""
    tpl = load_templates()
    key = next((r.action for r in reasons if r.contribution > 0 and r.action != "none"), "none")
    return {"code": key, "text": tpl["actions"][key][lang]}
