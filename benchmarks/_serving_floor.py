"""The floor `serving_http.py` measures churnwarn against: bare BentoML doing only the model's work.

    bentoml serve benchmarks._serving_floor:ModelFloor    (started by benchmarks/serving_http.py)

Same BentoML, same ``serving.workers``, BentoML's defaults otherwise (its access log line per
request, its metrics and tracing middleware). The champion of ``$CHURNWARN_CONFIG``'s registry is
loaded once; the newest snapshot's feature rows are held in memory, so a request costs what
churnwarn cannot avoid: HTTP, JSON, LightGBM's ``predict`` and ``pred_contrib`` of its rows.
No online store, reasons, validation of ids, auth or metrics of its own.
"""

from __future__ import annotations

import bentoml
import numpy as np
import pandas as pd

from core.config import load_settings


@bentoml.service(name="churnwarn-floor", workers=load_settings().serving.workers)
class ModelFloor:
    def __init__(self) -> None:
        from models.registry import load_registered

        settings = load_settings()
        model = load_registered(settings).model
        self.booster = model.estimator.booster_
        t = pd.read_parquet(settings.feature_table)
        t = t.loc[t["event_timestamp"] == t["event_timestamp"].max()]
        x = t[model.features].to_numpy(dtype="float64")
        self.rows = dict(zip(t["subscriber_id"], x, strict=True))

    def _score(self, ids: list[str]) -> list[dict]:
        x = np.array([self.rows[i] for i in ids])
        proba = self.booster.predict(x, num_threads=1)
        contrib = self.booster.predict(x, num_threads=1, pred_contrib=True)
        return [
            {"subscriber_id": i, "churn_probability": float(p), "contributions": c[:-1].tolist()}
            for i, p, c in zip(ids, proba, contrib, strict=True)
        ]

    # async: on the event loop, no thread hop per request (what churnwarn does with a few rows)
    @bentoml.api(route="/predict")
    async def predict(self, subscriber_id: str) -> dict:
        """One row: predict + pred_contrib."""
        return self._score([subscriber_id])[0]

    @bentoml.api(route="/predict_many")
    async def predict_many(self, subscriber_ids: list[str]) -> dict:
        """Many rows in one model call (a dict: BentoML 1.4 rebuilds a list output's schema per answer)."""
        return {"warnings": self._score(subscriber_ids)}
