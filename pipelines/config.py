"""Typed configuration, loaded once from ``configs/*.yaml`` and passed down to every stage."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
CONFIG_ENV = "CHURNWARN_CONFIG"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    seed: int = 7
    n_subscribers: int = Field(3000, gt=0)
    start_date: dt.date = dt.date(2025, 12, 1)
    end_date: dt.date = dt.date(2026, 7, 1)
    monthly_churn_rate: float = Field(0.045, gt=0, lt=1)
    competitor_hotlines: list[str] = ["10086", "10010"]
    own_hotline: str = "10000"

    @model_validator(mode="after")
    def _dates(self) -> "DataConfig":
        if self.end_date <= self.start_date:
            raise ValueError("data.end_date must be after data.start_date")
        return self


class FeatureConfig(_Strict):
    snapshots: list[dt.date]
    recent_days: int = Field(14, gt=0)
    baseline_days: int = Field(60, gt=0)
    label_horizon_days: int = Field(30, gt=0)
    ttl_days: int = Field(45, gt=0)

    @model_validator(mode="after")
    def _sorted(self) -> "FeatureConfig":
        if len(self.snapshots) < 2:
            raise ValueError("features.snapshots needs at least two dates (train, then held-out test)")
        if sorted(set(self.snapshots)) != self.snapshots:
            raise ValueError("features.snapshots must be strictly increasing")
        return self


class OnlineStoreConfig(_Strict):
    type: Literal["sqlite", "redis"] = "sqlite"
    redis_connection: str = "localhost:6379"


class FeastConfig(_Strict):
    project: str = "churnwarn"
    online_store: OnlineStoreConfig = OnlineStoreConfig()


class MlflowConfig(_Strict):
    tracking_uri: str | None = None
    experiment: str = "churnwarn"
    registered_model: str = "churnwarn"
    selection_metric: Literal["pr_auc", "roc_auc", "top_decile_lift"] = "pr_auc"


class LightGBMConfig(_Strict):
    n_estimators: int = 300
    learning_rate: float = 0.03
    num_leaves: int = 7
    min_child_samples: int = 50


class LogisticConfig(_Strict):
    C: float = 1.0


class TrainingConfig(_Strict):
    seed: int = 7
    lightgbm: LightGBMConfig = LightGBMConfig()
    logistic: LogisticConfig = LogisticConfig()


class ServingConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = 3000
    top_reasons: int = Field(3, gt=0)
    max_batch: int = Field(1000, gt=0)


class Settings(_Strict):
    """The whole configuration. Paths are derived from ``workdir`` so one setting moves every output."""

    workdir: Path = Path(".")
    data: DataConfig = DataConfig()
    features: FeatureConfig
    feast: FeastConfig = FeastConfig()
    mlflow: MlflowConfig = MlflowConfig()
    training: TrainingConfig = TrainingConfig()
    serving: ServingConfig = ServingConfig()
    config_path: Path | None = None

    # Derived locations -------------------------------------------------------------
    @property
    def raw_dir(self) -> Path:
        return self.workdir / "data" / "raw"

    @property
    def features_dir(self) -> Path:
        return self.workdir / "data" / "features"

    @property
    def feature_table(self) -> Path:
        return self.features_dir / "subscriber_features.parquet"

    @property
    def label_table(self) -> Path:
        return self.features_dir / "labels.parquet"

    @property
    def feast_dir(self) -> Path:
        return self.workdir / "data" / "feast"

    @property
    def reports_dir(self) -> Path:
        return self.workdir / "reports"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{(self.workdir / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        return self.workdir / "mlartifacts"


def load_settings(path: str | os.PathLike | None = None, **overrides) -> Settings:
    """Read a YAML config (default: $CHURNWARN_CONFIG or configs/default.yaml).

    A relative ``workdir`` is taken relative to the repository root, so the CLI, DVC and the
    BentoML server agree on where outputs live whatever their current directory.
    """
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).resolve()
    raw = yaml.safe_load(path.read_text()) or {}
    raw.update(overrides)
    settings = Settings.model_validate(raw)
    workdir = settings.workdir if settings.workdir.is_absolute() else (REPO_ROOT / settings.workdir)
    return settings.model_copy(update={"workdir": workdir.resolve(), "config_path": path})
