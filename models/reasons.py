"""Turn SHAP contributions into reasons staff can act on: code, sentence and suggested action.

Templates live in ``configs/reasons.yaml``; this module only picks the top contributions and fills
the templates with the subscriber's own values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml

from features.catalogue import BY_NAME
from models.churn_model import Explanation
from pipelines.config import REPO_ROOT, Settings

REASONS_FILE = REPO_ROOT / "configs" / "reasons.yaml"
Lang = Literal["en", "zh"]


@dataclass
class Reason:
    code: str
    feature: str
    value: float
    contribution: float  # SHAP value in log-odds; > 0 raises the risk
    sentence: str
    action: str

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=4)
def load_templates(path: Path = REASONS_FILE) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _sentence(feature: str, value: float, contribution: float, lang: Lang, settings: Settings, tpl: dict) -> tuple[str, str, str]:
    spec = tpl["reasons"][feature]
    meta = BY_NAME[feature]
    fields = {
        "value": value,
        "abs_value": abs(value),
        "recent": settings.features.recent_days,
        "baseline": settings.features.baseline_days,
        "meaning": meta.meaning,
        "unit": meta.unit,
        "plan_en": "Postpaid" if value >= 0.5 else "Prepaid",
        "plan_zh": "后付费" if value >= 0.5 else "预付费",
    }
    if contribution > 0:
        return spec["code"], spec[lang].format(**fields), spec["action"]
    return spec["code"], tpl["lowers"][lang].format(**fields), "none"


def top_reasons(
    explanation: Explanation, X: pd.DataFrame, settings: Settings, k: int | None = None, lang: Lang = "en"
) -> list[list[Reason]]:
    """The ``k`` largest contributions per row (risk-raising first), each as a :class:`Reason`."""
    tpl = load_templates()
    k = k or settings.serving.top_reasons
    contrib = explanation.contributions
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :k]
    values = X[explanation.features].to_numpy(dtype=float)
    out = []
    for i, idx in enumerate(order):
        row = []
        for j in idx:
            f = explanation.features[j]
            code, sentence, action = _sentence(f, values[i, j], contrib[i, j], lang, settings, tpl)
            row.append(Reason(code, f, float(values[i, j]), float(contrib[i, j]), sentence, action))
        out.append(row)
    return out


def suggested_action(reasons: list[Reason], lang: Lang = "en") -> dict:
    """The action of the strongest risk-raising reason that has one."""
    tpl = load_templates()
    key = next((r.action for r in reasons if r.contribution > 0 and r.action != "none"), "none")
    return {"code": key, "text": tpl["actions"][key][lang]}
