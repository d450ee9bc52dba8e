"""BentoML service: churn warnings with reasons for subscriber ids, from the Feast online store.

Start it with ``churn serve`` (or ``bentoml serve serving.service:ChurnWarningService``); the config
file comes from ``$CHURNWARN_CONFIG``. The model is the Bento's when served from one (``churn deploy``),
else the MLflow registry's ``champion`` unless ``$CHURNWARN_MODEL_VERSION`` names a version
(serving/model_source.py).
"""

from __future__ import annotations

import logging
import os
from typing import Literal

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument
from pydantic import Field

from serving.schemas import ChurnWarning, ModelInfo

log = logging.getLogger("churnwarn.serving")


@bentoml.service(name="churnwarn", workers=1, traffic={"timeout": 60})
class ChurnWarningService:
    def __init__(self) -> None:
        from features.store import get_store
        from pipelines.config import load_settings
        from serving.model_source import load_serving_model

        self.settings = load_settings()
        self.loaded = load_serving_model(self.settings, ChurnWarningService)
        self.store = get_store(self.settings)
        self.model_info = ModelInfo(
            name=self.loaded.name, version=self.loaded.version, alias=self.loaded.alias,
            kind=self.loaded.model.kind, run_id=self.loaded.run_id, bento=self.loaded.bento,
        )
        log.info("loaded %s v%s (%s) from %s", self.loaded.name, self.loaded.version, self.loaded.model.kind,
                 self.settings.tracking_uri)

    @bentoml.api(route="/warn")
    def warn(
        self,
        subscriber_ids: list[str] = Field(..., description="subscriber ids to score", min_length=1),
        lang: Literal["en", "zh"] = "en",
    ) -> list[ChurnWarning]:
        """Churn probability, model version and top reasons per subscriber id (order kept).

        An id with no features in the online store gets a per-item ``error`` and no score.
        """
        from features.store import online_features
        from models.scoring import score_with_reasons

        if len(subscriber_ids) > self.settings.serving.max_batch:
            raise InvalidArgument(
                f"too many subscriber_ids: {len(subscriber_ids)} > max_batch {self.settings.serving.max_batch}"
            )
        blank = [i for i, s in enumerate(subscriber_ids) if not s.strip()]
        if blank:
            raise InvalidArgument(f"subscriber_ids must be non-empty strings (blank at positions {blank})")
        rows = online_features(self.store, subscriber_ids).drop(columns="subscriber_id")
        known = ~np.isnan(rows.to_numpy()).any(axis=1)
        scored = iter(score_with_reasons(self.loaded.model, rows if known.all() else rows[known], self.settings, lang))
        out = []
        for sid, ok in zip(subscriber_ids, known):
            if ok:
                out.append(ChurnWarning(subscriber_id=sid, model=self.model_info, **next(scored)))
            else:
                out.append(ChurnWarning(subscriber_id=sid, model=self.model_info,
                                   error=f"unknown subscriber {sid!r}: no features in the online store"))
        return out

    @bentoml.api(route="/model")
    def model(self) -> ModelInfo:
        """Which registered model version this server scores with."""
        return self.model_info


# BentoML 1.4 works out a list output's media type by generating its JSON schema on every response
# (_bentoml_sdk.io_models.IOMixin.mime_type): ~15 ms of a ~20 ms single-subscriber request here
# (py-spy). The type is known to be JSON: say so once, and the schema is no longer rebuilt.
for _api in ChurnWarningService.apis.values():
    if _api.output_spec.media_type is None:
        _api.output_spec.media_type = "application/json"
