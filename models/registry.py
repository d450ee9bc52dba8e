"""MLflow glue: the pyfunc wrapper a ChurnModel is logged as, loading a registered version, and
scoring the current champion on a training run's held-out rows."""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from core.config import Settings
from models.champion import CHALLENGER, CHAMPION, Incumbent
from models.churn_model import ChurnModel
from models.evaluation import metric_values
from models.training_data import TrainingSet
from models.uplift_model import UpliftModel

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "ChurnPyfunc",
    "LoadedModel",
    "LoadedUplift",
    "UpliftPyfunc",
    "load_registered",
    "load_uplift",
    "uplift_model_name",
    "use_tracking",
]

log = logging.getLogger(__name__)

# Models from code (MLflow's recommended way of logging a custom model): the logged code is this
# file, the fitted ChurnModel an artifact of the run.
PYFUNC_CODE = Path(__file__).with_name("pyfunc_entry.py")
MODEL_ARTIFACT = "churn_model"


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """Lets any MLflow tool score the model; churnwarn itself unwraps it to get reasons too.

    Logged from code (``pyfunc_entry.py``), it loads the ChurnModel from the run's artifact; versions
    logged before that were pickled with the model inside and load as they are."""

    def __init__(self, model: ChurnModel | None = None):
        self.model = model

    def load_context(self, context) -> None:
        if self.model is None:
            with open(context.artifacts[MODEL_ARTIFACT], "rb") as fh:
                self.model = pickle.load(fh)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return pd.DataFrame({"churn_probability": self.model.predict_proba(model_input)})


@dataclass
class LoadedModel:
    model: ChurnModel
    name: str
    version: str
    alias: str | None
    run_id: str
    bento: str | None = None  # the Bento it was deployed in (``churn deploy``); None: from the registry


def use_tracking(settings: Settings) -> mlflow.MlflowClient:
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return mlflow.MlflowClient(settings.tracking_uri)


def load_registered(
    settings: Settings, alias: str | None = CHAMPION, version: str | None = None
) -> LoadedModel:
    """Load a registered version by alias (default ``champion``) or number."""
    return LoadedModel(*_load_version(settings, settings.mlflow.registered_model, alias, version))


def score_incumbent(settings: Settings, data: TrainingSet) -> Incumbent | None:
    """The current ``champion`` scored on this run's test rows by the selection metric (None: no champion)."""
    client = use_tracking(settings)
    try:
        mv = client.get_model_version_by_alias(settings.mlflow.registered_model, CHAMPION)
    except MlflowException:
        return None
    try:
        loaded = load_registered(settings, version=str(mv.version))
        proba = loaded.model.predict_proba(data.X_test)
        scores = metric_values(data.y_test, proba, settings, data.value_test)
        metric = settings.mlflow.selection_metric
        return Incumbent(str(mv.version), loaded.model.kind, scores[metric], proba=proba)
    except Exception as exc:  # a champion that cannot score today's rows cannot stay champion
        log.warning(
            "current champion v%s cannot score the held-out rows (%s): the new winner replaces it",
            mv.version,
            exc,
        )
        return Incumbent(str(mv.version), error=str(exc))


# The uplift model (models/uplift_model.py): registered under its own name, with the same aliases ------
UPLIFT_ARTIFACT = "uplift_model"


class UpliftPyfunc(mlflow.pyfunc.PythonModel):
    """Lets any MLflow tool score the uplift model (estimated uplift per action); churnwarn unwraps it."""

    def __init__(self, model: UpliftModel | None = None):
        self.model = model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.model.uplift(model_input)


@dataclass
class LoadedUplift:
    model: UpliftModel
    name: str
    version: str
    alias: str | None
    run_id: str


def uplift_model_name(settings: Settings) -> str:
    """``retention.uplift.registered_model``, else ``<mlflow.registered_model>-uplift``."""
    return settings.retention.uplift.registered_model or f"{settings.mlflow.registered_model}-uplift"


def load_uplift(settings: Settings, alias: str | None = CHAMPION, version: str | None = None) -> LoadedUplift:
    """Load a registered uplift model by alias (default ``champion``) or number."""
    return LoadedUplift(*_load_version(settings, uplift_model_name(settings), alias, version))


def _load_version(settings: Settings, name: str, alias: str | None, version) -> tuple:
    """(python model, name, version, alias or None, run id) of registered model ``name`` by alias or number."""
    client = use_tracking(settings)
    mv = (
        client.get_model_version_by_alias(name, alias)
        if version is None
        else client.get_model_version(name, str(version))
    )
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}")
    return (
        pyfunc.unwrap_python_model().model,
        name,
        str(mv.version),
        alias if version is None else None,
        mv.run_id,
    )
