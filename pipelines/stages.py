"""The pipeline's stages, declared once: the CLI's stage commands, :func:`run_all` and ``dvc.yaml``
(``churn dvc-yaml``) all follow from :data:`RECORD_STAGES` and :data:`TABLE_STAGES`.

The data path is chosen once, from the config (:func:`stages_for`): operator records (generate,
validate, ingest, features, train, warn) or a customer table (``source:``; validate, train).
A stage's function is named as ``module:function`` and imported only when it runs, so ``churn --help``
stays fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from core.config import Settings
from core.io import workdir_lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Out:
    """A stage output as DVC sees it."""

    path: str
    cache: bool = True
    persist: bool = False  # kept between runs (the stage updates it incrementally)
    metric: bool = False  # a JSON report (``dvc metrics``)


@dataclass(frozen=True)
class Stage:
    name: str
    run: str  # "module:function", called with the settings
    help: str
    deps: tuple[str, ...] = ()  # data and non-code files it reads; code deps are derived from imports
    outs: tuple[Out, ...] = ()
    params: tuple[str, ...] = ()  # config sections whose values change its output

    def function(self) -> Callable[[Settings], object]:
        module, attr = self.run.split(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def module(self) -> str:
        return self.run.split(":")[0]


RECORD_STAGES: tuple[Stage, ...] = (
    Stage(
        "generate",
        "pipelines.generate:generate",
        "Simulate the operator's export into data/landing (subscribers, cdr partitions, billing, "
        "complaints, churn_events, recharges) and the ground truth into data/truth.",
        # never in the DVC cache: the export holds subscribers' own and dialled numbers, and the
        # cache's read-only copies would outlive the private folder they came from
        outs=(Out("data/landing", cache=False), Out("data/truth")),
        params=("data",),
    ),
    Stage(
        "validate",
        "pipelines.validate:validate_landing",
        "Check the landing export with Great Expectations; exit 2 naming each failure (Data Docs in reports/).",
        deps=("data/landing",),
        outs=(Out("reports/validation.json", cache=False),),
        params=("validation",),
    ),
    Stage(
        "ingest",
        "pipelines.ingest:ingest",
        "Pseudonymise the validated export into data/raw: call classes and salted hashes, no numbers; "
        "only new or changed CDR days are re-ingested.",
        deps=("data/landing", "reports/validation.json"),
        outs=(
            Out("data/raw", persist=True),  # kept between runs: only new or changed CDR days are ingested
            Out("reports/ingest.json", cache=False, metric=True),
        ),
        params=("privacy",),
    ),
    Stage(
        "features",
        "pipelines.feature_build:build_features",
        "Compute point-in-time features (new snapshots, and those whose window holds a changed CDR "
        "day; everything when definitions or other tables change), register them in Feast and "
        "materialise the online store.",
        deps=("data/raw",),
        outs=(
            Out("data/features", persist=True),
            Out("data/feast", cache=False, persist=True),
            Out("reports/features.json", cache=False, metric=True),
        ),
        params=("features", "feast"),
    ),
    Stage(
        "train",
        "pipelines.training:train_records",
        "Train rules / logistic / LightGBM on earlier snapshots, compare out of time; the best becomes "
        "champion if it beats the current one on the same held-out rows, else challenger.",
        deps=("data/features",),
        outs=(Out("reports/train.json", cache=False, metric=True),),
        params=("training", "mlflow", "evaluation"),
    ),
    Stage(
        "warn",
        "pipelines.warn:nightly_list",
        "The nightly work-order list as of warnings.list_date (default: the day after the last ingested "
        "day), scored with @champion, into warnings/<date>/.",
        deps=("data/raw", "reports/train.json", "configs/reasons.yaml"),
        outs=(Out("warnings", cache=False, persist=True),),
        params=("warnings", "retention"),
    ),
)

TABLE_STAGES: tuple[Stage, ...] = (
    Stage(
        "validate",
        "pipelines.customer_table:validate_stage",
        "Check the customer table (source: in the config) with Great Expectations.",
    ),
    Stage(
        "train",
        "pipelines.customer_table:train_stage",
        "Validate the customer table, train logistic / LightGBM on a stratified split, register the best.",
    ),
)


def stages_for(settings: Settings) -> tuple[Stage, ...]:
    """The stages of the config's data path: a customer table (``source:``) or operator records."""
    return TABLE_STAGES if settings.source is not None else RECORD_STAGES


def stage_named(settings: Settings, name: str) -> Stage | None:
    return next((s for s in stages_for(settings) if s.name == name), None)


@dataclass(frozen=True)
class StageRun:
    stage: str
    result: object
    seconds: float


@contextmanager
def stage_running(name: str, settings: Settings) -> Iterator[None]:
    """One run of stage ``name`` per workdir at a time (:func:`core.io.workdir_lock`), logged as it starts."""
    with workdir_lock(settings.workdir, name):
        log.info("%s started (pid %d)", name, os.getpid())
        yield


def run_stage(stage: Stage, settings: Settings) -> StageRun:
    t0 = time.monotonic()
    with stage_running(stage.name, settings):
        result = stage.function()(settings)
    seconds = time.monotonic() - t0
    log.info("%s done in %.1fs", stage.name, seconds)
    return StageRun(stage.name, result, seconds)


def run_all(settings: Settings) -> list[StageRun]:
    """Every stage of the config's data path in order, in this process (``dvc repro`` runs the same
    stages one command each, skipping those whose inputs did not change)."""
    return [run_stage(stage, settings) for stage in stages_for(settings)]
