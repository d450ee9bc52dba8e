"""The one step of training that writes to MLflow: runs, figures, the registered version, the alias.

One parent run per invocation with a child run per candidate (all tagged
``churnwarn.invocation=<id>``; params, metrics, the data version, the feature list, figures, the
model with signature and input example). The winner is registered as a new version and the alias
moves last: a failure before that leaves the registry's champion as it was.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import platform
import socket
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from core.config import Settings
from core.io import process_running
from models.candidates import EARLY_STOPPING_ROUNDS, FittedCandidate
from models.champion import CHALLENGER, Decision, Incumbent
from models.churn_model import ChurnModel
from models.evaluation import CandidateEvaluation
from models.plots import calibration_plot, candidate_curves, gains_chart, plt, shap_summary
from models.registry import MODEL_ARTIFACT, PYFUNC_CODE, use_tracking
from models.training_data import TrainingSet
from models.uncertainty import Uncertainty

log = logging.getLogger(__name__)

REQUIREMENTS = ("mlflow", "lightgbm", "scikit-learn", "shap", "pandas")


@dataclass(frozen=True)
class CandidateRun:
    run_id: str
    model_uri: str
    metrics: dict[str, float]  # test metrics and calibration diagnostics, as logged
    calibration: str | None


@dataclass(frozen=True)
class TrainResult:
    """What a training invocation did: the registered winner, its alias, and every candidate's run."""

    winner: str
    version: str
    alias: str
    promoted: bool
    decision: str
    champion_version: str | None
    previous_champion_version: str | None
    previous_champion_score: float | None
    selection_metric: str
    winner_score: float
    rules_baseline_score: float | None
    calibration: str | None
    invocation: str
    parent_run_id: str
    registered_model: str
    candidates: dict[str, CandidateRun]
    n_train: int
    n_valid: int
    n_test: int
    split: str
    source: str | None = None
    uncertainty: Uncertainty | None = None  # a customer table's intervals, CV and decision noise

    def headline(self) -> str:
        """One line for the command line: the alias taken, and against what."""
        m = self.selection_metric
        versus = (
            f" (rules baseline {self.rules_baseline_score:.3f})"
            if self.rules_baseline_score is not None
            else ""
        )
        against = (
            f"; champion v{self.previous_champion_version} {m}={self.previous_champion_score:.3f} on the same rows"
            if self.previous_champion_score is not None
            else ""
        )
        head = f"{self.alias}: {self.winner} v{self.version} {m}={self.winner_score:.3f}"
        return f"{head}{versus}{against}{self._noise()}"

    def _noise(self) -> str:
        """The winner's interval and CV figure, and whether the decision is inside the noise."""
        u, m = self.uncertainty, self.selection_metric
        if u is None:
            return ""
        w = u.candidates[self.winner]
        inside = "; the decision is inside the noise" if u.decision_inside_noise else ""
        return (
            f" ({u.config.confidence:.0%} CI [{w.intervals[m].low:.3f}, {w.intervals[m].high:.3f}]; "
            f"{u.config.cv_folds}-fold x {u.config.cv_repeats} CV {w.cv[m].text()}{inside})"
        )

    def report(self) -> dict:
        """``reports/train.json``: the scalar fields, and each candidate's headline test metrics."""
        out = {
            k: v for k, v in vars(self).items() if k not in ("candidates", "uncertainty") and v is not None
        }
        if self.uncertainty is not None:
            out["uncertainty"] = self.uncertainty.report()
        return out | {
            f"{k}_{m}": run.metrics[m]
            for k, run in self.candidates.items()
            for m in ("roc_auc", "pr_auc", "top_decile_lift")
        }


def _conda_env() -> dict:
    """The model's environment spec, written out so MLflow need not look up pip (absent under uv)."""
    pins = [f"{p}=={installed_version(p)}" for p in REQUIREMENTS]
    return {
        "name": "churnwarn",
        "channels": ["conda-forge"],
        "dependencies": [f"python={platform.python_version()}", "pip", {"pip": ["churnwarn", *pins]}],
    }


def _schema(frame: pd.DataFrame) -> Schema:
    """The columns as the model takes them, declared from their dtypes rather than guessed from an
    example: the features keep their own types, so rows scored later need no conversion."""

    def kind(dtype) -> str:
        if pd.api.types.is_bool_dtype(dtype):
            return "boolean"
        if pd.api.types.is_integer_dtype(dtype):
            return "long"
        if pd.api.types.is_float_dtype(dtype):
            return "double"
        return "string"

    return Schema([ColSpec(kind(dtype), name) for name, dtype in frame.dtypes.items()])


def _log_model(model: ChurnModel, data: TrainingSet) -> str:
    """Log the model from code with the pickled ChurnModel as its artifact; returns the model URI."""
    example = data.X_test[model.inputs].head(5)  # derived columns are the model's to compute
    signature = ModelSignature(_schema(example), Schema([ColSpec("double", "churn_probability")]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "churn_model.pkl"
        path.write_bytes(pickle.dumps(model))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts={MODEL_ARTIFACT: str(path)},
            signature=signature,
            input_example=example,
            conda_env=_conda_env(),
        )
    return info.model_uri


@dataclass(frozen=True)
class _RunContext:
    """What every run of one invocation shares."""

    exp_id: str
    parent_id: str
    tags: dict
    params: dict
    feature_list: dict
    data: TrainingSet
    uncertainty: Uncertainty | None = None


def _log_candidate(ctx: _RunContext, fitted: FittedCandidate, ev: CandidateEvaluation) -> CandidateRun:
    """One nested run with the candidate's params, metrics, search table and model."""
    model, search = fitted.model, fitted.search
    with mlflow.start_run(experiment_id=ctx.exp_id, run_name=fitted.kind, nested=True) as run:
        mlflow.set_tags({**ctx.tags, "candidate": fitted.kind, "parent_run_id": ctx.parent_id})
        searched = (
            {
                "search_budget": len(search),
                "search_selected_by": "valid_pr_auc",
                "early_stopping_rounds": EARLY_STOPPING_ROUNDS,
            }
            if search is not None
            else {}
        )
        mlflow.log_params({**ctx.params, "model_kind": fitted.kind, **model.params} | searched)
        _log_training_rows(ctx.data)
        mlflow.log_metrics(ev.scores | ev.extra)
        if ctx.uncertainty is not None:
            mlflow.log_params(ctx.uncertainty.params())
            mlflow.log_metrics(ctx.uncertainty.metrics(fitted.kind))
        mlflow.log_dict(ctx.feature_list, "feature_list.json")
        if search is not None:
            mlflow.log_table(search, "lightgbm_search.json")
            mlflow.log_text(search.to_csv(index=False), "lightgbm_search.csv")
            mlflow.log_metric("valid_pr_auc_best", float(search["valid_pr_auc"].max()))
        model_uri = _log_model(model, ctx.data)
    mlflow.log_metrics({f"{fitted.kind}_{k}": v for k, v in ev.scores.items()})  # on the parent
    return CandidateRun(run.info.run_id, model_uri, ev.scores | ev.extra, fitted.calibration)


def _log_training_rows(data: TrainingSet) -> None:
    """The training rows the models were fitted on (the sample, if any) as the run's MLflow dataset
    input: their keys and labels, with a digest of every row (MLflow's own reads only the first 10,000)."""
    if data.keys_train is None:
        return
    keys = data.keys_train.assign(churned=data.y_train)
    digest = hashlib.sha256(pd.util.hash_pandas_object(keys, index=False).to_numpy().tobytes()).hexdigest()
    with warnings.catch_warnings():  # MLflow's hint that integer columns cannot hold missing values
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
        dataset = mlflow.data.from_pandas(keys, name="train_sample", targets="churned", digest=digest[:16])
        mlflow.log_input(dataset, context="training", tags={"data_version": data.data_version})


def _log_figures(data: TrainingSet, fitted: dict[str, FittedCandidate], evals: dict, winner: str) -> None:
    y, title = data.y_test, data.title
    probs = {k: e.test_proba for k, e in evals.items()}
    calibrated = {k: e for k, e in evals.items() if e.test_raw is not None}
    figures = {
        "candidates_roc_pr.png": lambda: candidate_curves(y, probs, title),
        "gains_lift.png": lambda: gains_chart(y, probs, title),
        "calibration.png": lambda: calibration_plot(
            y,
            {f"{k} (raw)": e.test_raw for k, e in calibrated.items()}
            | {f"{k} ({fitted[k].calibration})": e.test_proba for k, e in calibrated.items()},
            title,
        ),
        "shap_summary.png": lambda: shap_summary(fitted[winner].model, data.X_test, f"{winner}: {title}"),
    }
    for path, make in figures.items():
        try:
            fig = make()
        except Exception as exc:  # a figure must never stop the training
            log.warning("figure %s not drawn: %s", path, exc)
            continue
        mlflow.log_figure(fig, path)
        plt.close(fig)


PID_TAG, HOST_TAG = "churnwarn.pid", "churnwarn.host"  # which process a run belongs to


def end_abandoned_runs(client: mlflow.MlflowClient, exp_id: str) -> list[str]:
    """Mark FAILED the runs left RUNNING by a training process that died (kill -9, out of memory).

    MLflow never ends such a run itself: it would show as in progress forever. Only runs started on
    this machine whose process is gone are touched; a live run, or one from another host, is not."""
    host, ended = socket.gethostname(), []
    for run in client.search_runs([exp_id], "attributes.status = 'RUNNING'", max_results=1000):
        pid, tags = run.data.tags.get(PID_TAG, ""), run.data.tags
        if tags.get(HOST_TAG) != host or not pid.isdigit() or process_running(int(pid)):
            continue
        client.set_tag(
            run.info.run_id, "churnwarn.abandoned", f"process {pid} died; marked FAILED by a later run"
        )
        client.set_terminated(run.info.run_id, status="FAILED")
        ended.append(run.info.run_id)
    if ended:
        log.warning(
            "marked FAILED %d run(s) whose training process had died: %s", len(ended), ", ".join(ended)
        )
    return ended


def _experiment_id(client: mlflow.MlflowClient, settings: Settings) -> str:
    exp = client.get_experiment_by_name(settings.mlflow.experiment)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(
        settings.mlflow.experiment, artifact_location=settings.artifact_root.resolve().as_uri()
    )


def record(
    settings: Settings,
    data: TrainingSet,
    fitted: dict[str, FittedCandidate],
    evals: dict[str, CandidateEvaluation],
    decision: Decision,
    incumbent: Incumbent | None,
    baseline: str | None,
    uncertainty: Uncertainty | None = None,
) -> TrainResult:
    """Log the invocation (parent run, a child run per candidate, figures), register the winner and
    move the alias the decision names."""
    client = use_tracking(settings)
    exp_id = _experiment_id(client, settings)
    end_abandoned_runs(client, exp_id)
    invocation = uuid.uuid4().hex[:12]
    tags = {"data_version": data.data_version, "churnwarn.invocation": invocation, **data.tags}
    tags |= {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    params = {**data.params, "data_version": data.data_version} | (
        data.sample.params() if data.sample else {}
    )
    feature_list = (
        {"features": data.features}
        | ({"categorical": data.categories} if data.categories else {})
        | ({"derived": {d.name: d.sql for d in data.derived}} if data.derived else {})
    )
    with mlflow.start_run(experiment_id=exp_id, run_name="train") as parent:
        mlflow.set_tags({**tags, "stage": "train"})
        mlflow.log_params(params | {"features": ",".join(data.features)[:6000]})
        mlflow.log_dict(feature_list, "feature_list.json")
        _log_training_rows(data)
        ctx = _RunContext(exp_id, parent.info.run_id, tags, params, feature_list, data, uncertainty)
        runs = {kind: _log_candidate(ctx, fitted[kind], evals[kind]) for kind in fitted}
        _log_figures(data, fitted, evals, decision.winner)
        version = _register(settings, client, decision, runs[decision.winner], invocation, data)
        previous = incumbent.version if incumbent else None
        result = TrainResult(
            winner=decision.winner,
            version=version,
            alias=decision.alias,
            promoted=decision.promote,
            decision=decision.reason,
            champion_version=version if decision.promote else previous,
            previous_champion_version=previous,
            previous_champion_score=decision.previous_score,
            selection_metric=settings.mlflow.selection_metric,
            winner_score=decision.winner_score,
            rules_baseline_score=runs[baseline].metrics[settings.mlflow.selection_metric]
            if baseline
            else None,
            calibration=runs[decision.winner].calibration,
            invocation=invocation,
            parent_run_id=parent.info.run_id,
            registered_model=settings.mlflow.registered_model,
            candidates=runs,
            n_train=len(data.y_train),
            n_valid=len(data.y_valid),
            n_test=len(data.y_test),
            split=data.split,
            source=data.source,
            uncertainty=uncertainty,
        )
        _log_decision(result)
        _log_noise(uncertainty)
        _move_alias(client, result)  # last: a failure before this line leaves the champion as it was
    return result


def _register(
    settings: Settings, client, decision: Decision, run: CandidateRun, invocation: str, data: TrainingSet
) -> str:
    """Register the winner's model as a new version, tagged with how it was chosen."""
    name, metric = settings.mlflow.registered_model, settings.mlflow.selection_metric
    mv = mlflow.register_model(run.model_uri, name)
    for key, val in {
        "candidate": decision.winner,
        metric: f"{decision.winner_score:.4f}",
        "data_version": data.data_version,
        "calibration": run.calibration,
        "churnwarn.invocation": invocation,
        "decision": decision.reason,
    }.items():
        client.set_model_version_tag(name, mv.version, key, val)
    return str(mv.version)


def _log_decision(r: TrainResult) -> None:
    """The decision on the parent run, as params and tags (the previous score as a metric too)."""
    metric = r.selection_metric
    old = r.previous_champion_score
    decision_log = {
        "champion_decision": r.alias,
        "champion_decision_reason": r.decision,
        "registered_version": r.version,
        "champion_version": str(r.champion_version),
        "previous_champion_version": str(r.previous_champion_version),
        f"previous_champion_{metric}": f"{old if old is not None else math.nan:.4f}",
        f"winner_{metric}": f"{r.winner_score:.4f}",
        "winner_calibration": r.calibration,
    }
    mlflow.log_params(decision_log)
    mlflow.set_tags({"winner": r.winner, **decision_log})
    if old is not None:
        mlflow.log_metric(f"previous_champion_{metric}", old)


def _log_noise(u: Uncertainty | None) -> None:
    """On the parent run: how the intervals were made, each margin of the decision with its interval,
    and whether the decision is inside the noise (param and tag)."""
    if u is None:
        return
    mlflow.log_params(u.params() | {"decision_inside_noise": u.decision_inside_noise})
    mlflow.set_tag("decision_inside_noise", str(u.decision_inside_noise).lower())
    for m in u.margins:
        key = "margin_vs_champion" if m.other.startswith("champion") else f"margin_vs_{m.other}"
        d = m.difference
        mlflow.log_metrics({key: d.estimate, f"{key}_ci_low": d.low, f"{key}_ci_high": d.high})
    for kind in u.candidates:
        mlflow.log_metrics({f"{kind}_{k}": v for k, v in u.metrics(kind).items()})


def _move_alias(client: mlflow.MlflowClient, r: TrainResult) -> None:
    """Point the decided alias at the new version; a new champion also retires an older challenger."""
    client.set_registered_model_alias(r.registered_model, r.alias, r.version)
    if r.promoted:
        try:
            if str(client.get_model_version_by_alias(r.registered_model, CHALLENGER).version) != r.version:
                client.delete_registered_model_alias(r.registered_model, CHALLENGER)
        except mlflow.exceptions.MlflowException:  # no challenger
            pass
    baseline = f" vs rules {r.rules_baseline_score:.3f}" if r.rules_baseline_score is not None else ""
    against = (
        f" v{r.previous_champion_version} {r.selection_metric}={r.previous_champion_score:.3f}"
        if r.previous_champion_score is not None
        else ""
    )
    log.info(
        "registered %s version %s (%s %s=%.3f%s) as @%s: %s%s",
        r.registered_model,
        r.version,
        r.winner,
        r.selection_metric,
        r.winner_score,
        baseline,
        r.alias,
        r.decision,
        against,
    )
