"""MLflow glue: the pyfunc wrapper a ChurnModel is logged as, and loading a registered version."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import pandas as pd

from core.config import Settings
from models.churn_model import ChurnModel

CHAMPION = "champion"
CHALLENGER = "challenger"  # a registered winner that did not beat the champion on the same held-out rows


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """Lets any MLflow tool score the model; churnwarn itself unwraps it to get reasons too."""

    def __init__(self, model: ChurnModel):
        self.model = model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return pd.DataFrame({"churn_probability": self.model.predict_proba(model_input)})


@dataclass
class LoadedModel:
    model: ChurnModel
    name: str
    version: str
    alias: str | None
    run_id: str
    bento: str | None = (
        None  # the Bento it was deployed in (``churn deploy``); None: loaded from the registry
    )


def use_tracking(settings: Settings) -> mlflow.MlflowClient:
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return mlflow.MlflowClient(settings.tracking_uri)


def load_registered(
    settings: Settings, alias: str | None = CHAMPION, version: str | None = None
) -> LoadedModel:
    """Load a registered version by alias (default ``champion``) or number."""
    client = use_tracking(settings)
    name = settings.mlflow.registered_model
    mv = (
        client.get_model_version_by_alias(name, alias)
        if version is None
        else client.get_model_version(name, str(version))
    )
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}")
    return LoadedModel(
        pyfunc.unwrap_python_model().model,
        name,
        str(mv.version),
        alias if version is None else None,
        mv.run_id,
    )
