"""``churn monitor --date D``: is the model that scored D still fit to serve?

1. The scores ``churn warn`` kept for D (``models/score_store.py``) and the model version that made them.
2. That version's training reference: the feature-table rows of the snapshots it was fitted,
   calibrated and chosen on (the ``train_snapshots``, ``valid_snapshot`` and ``test_snapshot``
   parameters of its MLflow run), a sample of ``monitoring.reference_rows``, scored by the model. Rebuilt from the feature table rather than logged by ``churn train`` so that
   every version already registered can be monitored and training writes nothing more; on first use
   it is logged as an artifact of the version's run (``monitoring/reference.parquet``), so later
   rebuilds of the feature table do not move it.
3. Drift per feature and for the score (``models/drift.py``).
4. Performance of every kept date up to D whose label window has closed (``models/monitoring.py``),
   labels from the same feature query the training labels come from.
5. The retraining rule, a report (``monitoring/reports/<D>/report.json`` and ``report.html``) and an
   MLflow run tagged with the model version, holding the metrics and figures.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from core.config import Settings
from features import engine
from features.catalogue import BY_NAME, FEATURE_NAMES, window_spans
from models.drift import ColumnDrift, column_drift, expect_holiday, expect_score, holiday_share, natural_psi
from models.monitoring import Advice, Figures, MaturedPerformance, matured_performance, retraining_advice
from models.registry import LoadedModel, load_registered, use_tracking
from models.score_store import read_scores, scored_dates
from pipelines.errors import WarnError
from pipelines.monitor_report import log_run, write_report
from pipelines.warn import ingested_days

log = logging.getLogger(__name__)

REFERENCE_ARTIFACT = "monitoring/reference.parquet"
SCORE = "churn_probability"
# the snapshots a version was fitted, calibrated and chosen on: the world it knows
SNAPSHOT_PARAMS = ("train_snapshots", "valid_snapshot", "test_snapshot")


@dataclass(frozen=True)
class MonitorResult:
    """What ``churn monitor`` found for one date."""

    date: dt.date
    model_name: str
    model_version: str
    reference_rows: int
    scored_rows: int
    features: tuple[ColumnDrift, ...] = field(repr=False)
    score: ColumnDrift = field(repr=False)
    top_features: tuple[str, ...]
    training: Figures
    matured: tuple[MaturedPerformance, ...]
    advice: Advice
    folder: Path | None = None
    mlflow_run_id: str | None = None

    @property
    def drifted(self) -> list[str]:
        """The columns that crossed a threshold (the score as ``churn_probability``)."""
        return [d.name for d in (*self.features, self.score) if d.drifted]

    @property
    def alarm(self) -> bool:
        return bool(self.drifted)  # the advice is printed and reported, not an exit status

    def headline(self) -> str:
        lines = [
            f"monitor {self.date}: model {self.model_name} v{self.model_version}, "
            f"{self.scored_rows:,} scores vs {self.reference_rows:,} training reference rows"
        ]
        for d in (*self.features, self.score):
            if d.drifted:
                lines.append(f"  DRIFT {d.name}: {'; '.join(d.reasons)}")
            elif d.expected:
                lines.append(f"  expected shift {d.name}: {'; '.join(d.expected)}")
        if not self.drifted:
            lines.append(f"  no drift (largest PSI {max(d.psi for d in self.features):.3f})")
        t = self.training
        for m in self.matured:
            f = m.figures
            lines.append(
                f"  matured {m.date}: ROC-AUC {f.roc_auc:.3f} (training {t.roc_auc:.3f}), PR-AUC "
                f"{f.pr_auc:.3f} ({t.pr_auc:.3f}), lift@10% {f.top_decile_lift:.2f}, ECE {f.ece:.3f}, "
                f"list precision {'-' if m.list_precision is None else f'{m.list_precision:.2f}'}"
            )
        lines.append(f"  {self.advice.text()}")
        if self.folder:
            lines.append(f"  report: {self.folder / 'report.html'}")
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {
            "date": str(self.date),
            "model": {"name": self.model_name, "version": self.model_version},
            "reference_rows": self.reference_rows,
            "scored_rows": self.scored_rows,
            "alarm": self.alarm,
            "drifted": self.drifted,
            "features": [d.as_json() for d in self.features],
            "score": self.score.as_json(),
            "top_features": list(self.top_features),
            "training": vars(self.training),
            "matured": [m.as_json() for m in self.matured],
            "advice": {"retrain": self.advice.retrain, "reasons": list(self.advice.reasons)},
            "mlflow_run_id": self.mlflow_run_id,
        }


def monitor(settings: Settings, date: dt.date | str, log_to_mlflow: bool = True) -> MonitorResult:
    """Drift, matured performance and advice for the scores kept for ``date``; writes the report."""
    date = date if isinstance(date, dt.date) else _parse(date)
    scores = read_scores(settings, date)
    if scores is None:
        raise WarnError(f"no scores kept for {date}: run `churn warn --date {date}` first")
    missing = [f for f in FEATURE_NAMES if f not in scores.columns]
    if missing:
        raise WarnError(f"the scores of {date} were kept without features (monitoring.store_features)")
    loaded = _load(settings, str(scores["model_version"].iloc[0]))
    reference = training_reference(settings, loaded)
    feats, score = drift(settings, reference, scores, date)
    cfg = settings.monitoring
    training = training_figures(settings, loaded)
    matured = tuple(matured_dates(settings, date))
    top = top_features(loaded, reference)
    advice = retraining_advice(cfg.retrain, training, list(matured), [*feats, score], top)
    result = MonitorResult(
        date,
        loaded.name,
        loaded.version,
        len(reference),
        len(scores),
        feats,
        score,
        tuple(top),
        training,
        matured,
        advice,
    )
    run_id = log_run(settings, result, loaded) if log_to_mlflow else None
    result = MonitorResult(**{**vars(result), "mlflow_run_id": run_id})
    folder = write_report(settings, result)
    return MonitorResult(**{**vars(result), "folder": folder})


def drift(
    settings: Settings, reference: pd.DataFrame, scores: pd.DataFrame, date: dt.date
) -> tuple[tuple[ColumnDrift, ...], ColumnDrift]:
    """Each feature's and the score's shift from the reference; a holiday's expected shifts muted."""
    cfg = settings.monitoring
    snap = reference["event_timestamp"].to_numpy()
    fc = settings.features
    feats = tuple(
        expect_holiday(
            column_drift(
                f,
                reference[f],
                scores[f],
                cfg,
                BY_NAME[f].lo,
                BY_NAME[f].hi,
                natural_psi(reference[f], snap, cfg.psi_bins),
            ),
            holiday_share(window_spans(BY_NAME[f], fc.recent_days, fc.baseline_days), date, cfg.holidays),
            cfg,
        )
        for f in FEATURE_NAMES
    )
    score = column_drift(
        SCORE,
        reference[SCORE],
        scores[SCORE],
        cfg,
        0.0,
        1.0,
        natural_psi(reference[SCORE], snap, cfg.psi_bins),
    )
    score = expect_score(score, feats)
    return feats, score


def _parse(date: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(date).strip())
    except ValueError:
        raise WarnError(f"--date {date!r} is not a date (YYYY-MM-DD)") from None


def _load(settings: Settings, version: str) -> LoadedModel:
    try:
        return load_registered(settings, version=version)
    except Exception as exc:  # mlflow raises its own types for a missing registry or version
        raise WarnError(f"cannot load {settings.mlflow.registered_model} v{version}: {exc}") from exc


def training_reference(settings: Settings, loaded: LoadedModel) -> pd.DataFrame:
    """The version's training rows (a sample) with the model's scores: from its run's artifact, else
    rebuilt from the feature table at the run's ``train_snapshots`` and logged there."""
    client = use_tracking(settings)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=loaded.run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=tmp
            )
            return pd.read_parquet(path)
        except Exception:  # not logged yet (MlflowException, or OSError from a local store)
            pass
        params = client.get_run(loaded.run_id).data.params
        snaps = ",".join(params.get(k, "") for k in SNAPSHOT_PARAMS).strip(",")
        if not params.get("train_snapshots"):
            raise WarnError(f"run {loaded.run_id} of v{loaded.version} names no train_snapshots")
        table = pd.read_parquet(settings.feature_table)
        days = table["event_timestamp"].dt.date.astype(str)
        ref = table[days.isin(snaps.split(","))].reset_index(drop=True)
        if ref.empty:
            raise WarnError(f"the feature table has no rows of the training snapshots {snaps}")
        n = settings.monitoring.reference_rows
        ref = ref.sample(n=n, random_state=0) if len(ref) > n else ref
        ref = ref.reset_index(drop=True).assign(**{SCORE: loaded.model.predict_proba(ref)})
        path = Path(tmp) / "reference.parquet"
        ref.to_parquet(path, index=False)
        client.log_artifact(loaded.run_id, str(path), "monitoring")
        log.info("monitor: training reference of v%s (%d rows of %s) logged", loaded.version, len(ref), snaps)
        return ref


def training_figures(settings: Settings, loaded: LoadedModel) -> Figures:
    """The held-out figures the version's training run logged (with its AUC's standard error, from
    the run's ``n_test`` rows and ``base_rate``)."""
    run = use_tracking(settings).get_run(loaded.run_id)
    rows = run.data.params.get("n_test", "")
    return Figures.of(run.data.metrics, int(rows) if rows.isdigit() else None)


def top_features(loaded: LoadedModel, reference: pd.DataFrame, rows: int = 500) -> list[str]:
    """The model's features by mean |SHAP| on a sample of its reference, most important first."""
    sample = reference.sample(n=min(rows, len(reference)), random_state=0)
    e = loaded.model.explain(sample)
    imp = np.abs(e.contributions).mean(axis=0)
    return [e.features[i] for i in np.argsort(-imp, kind="stable")]


def matured_dates(settings: Settings, up_to: dt.date) -> list[MaturedPerformance]:
    """Performance of every kept date up to ``up_to`` whose label window closed by the last ingested day."""
    _, last = ingested_days(settings)
    horizon = dt.timedelta(days=settings.features.label_horizon_days)
    dates = [d for d in scored_dates(settings) if d <= up_to and d + horizon <= last + dt.timedelta(days=1)]
    if not dates:
        return []
    _, labels = engine.compute_features(settings.raw_dir, dates, settings)
    labels = labels.assign(day=labels["event_timestamp"].dt.date)
    return [matured_performance(read_scores(settings, d), labels[labels["day"] == d], d) for d in dates]
