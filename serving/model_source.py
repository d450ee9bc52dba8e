"""Which model a server scores with: the Bento's own model, else the MLflow registry.

A Bento built by ``churn deploy`` lists its model under the alias :data:`BENTO_MODEL_ALIAS`
(BentoML's bentofile ``models: [{tag, alias}]``), and that model carries the registry facts as
labels. The same service code therefore serves any deployed version: what to load comes from the
Bento, never from an edit. Outside a Bento: ``$CHURNWARN_MODEL_VERSION``, else ``@champion``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import bentoml

from core.config import Settings
from models.registry import LoadedModel, load_registered
from serving.bentoml_internals import served_bento

log = logging.getLogger("churnwarn.serving")

BENTO_MODEL_ALIAS = (
    "churn-model"  # how a churnwarn Bento names its model (not a tag: never found in a store by itself)
)
MODEL_VERSION_ENV = "CHURNWARN_MODEL_VERSION"


def load_bento_model(tag: str, bento: str | None = None, alias: str | None = None) -> LoadedModel:
    """A model from the BentoML model store, described by the labels ``churn deploy`` gave it."""
    stored = bentoml.models.get(tag)
    labels = stored.info.labels
    model = bentoml.mlflow.load_model(stored).unwrap_python_model().model
    return LoadedModel(
        model, labels["registered_model"], labels["model_version"], alias, labels["run_id"], bento=bento
    )


def load_serving_model(settings: Settings, service: Any = None) -> LoadedModel:
    """The model to serve: the Bento's (when ``service`` was loaded from one) > ``$CHURNWARN_MODEL_VERSION`` >
    the registry's ``champion``."""
    bento = served_bento(service)
    if bento is not None:
        spec = next((m for m in bento.info.all_models if m.alias == BENTO_MODEL_ALIAS), None)
        if spec is None:
            raise RuntimeError(
                f"Bento {bento.tag} lists no model as {BENTO_MODEL_ALIAS!r}; build it with `churn deploy`"
            )
        log.info("serving Bento %s: model %s", bento.tag, spec.tag)
        alias = bento.info.labels.get("deployed_alias") or None  # the alias it was deployed by, if any
        return load_bento_model(str(spec.tag), bento=str(bento.tag), alias=alias)
    version = os.environ.get(MODEL_VERSION_ENV)
    return load_registered(settings, version=version) if version else load_registered(settings)
