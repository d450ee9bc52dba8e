"""The model code MLflow logs with every churnwarn model (models from code): the pyfunc whose
``load_context`` reads the fitted ChurnModel from the run's artifact (``models/registry.py``)."""

from mlflow.models import set_model

from models.registry import ChurnPyfunc

set_model(ChurnPyfunc())
