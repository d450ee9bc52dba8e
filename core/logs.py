"""Logging set-up for the command line: one format, third-party loggers at WARNING."""

from __future__ import annotations

import logging
import os
import warnings

NOISY = (
    "feast",
    "great_expectations",
    "alembic",
    "mlflow",
    "urllib3",
    "httpx",
    "bentoml",
    "numba",
    "matplotlib",
)


def setup_logging(verbose: bool = False) -> None:
    """INFO (DEBUG with ``verbose``) for churnwarn; libraries speak only when something is wrong."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # log_model reloads each model
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
