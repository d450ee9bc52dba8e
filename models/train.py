"""Train the candidates, compare them on held-out rows, register the best and promote it to ``champion``.

Two inputs share one core (:func:`fit_track_register`): fit every candidate, evaluate it on the
held-out rows, log it as an MLflow run nested under one parent run per invocation (params, metrics
roc_auc / pr_auc / top_decile_lift, the data version, the model), register the winner and move the
``champion`` alias. The alias moves only at the very end, after the winner is logged and
registered; a failure before that leaves the current champion as it was.

- The CDR path (:func:`train`): the training set comes from Feast's point-in-time join; the
  held-out rows are the last snapshot, and a training snapshot is used only if its label window
  closes before it, so no training label peeks into the test period. Candidates: the operator's
  rules baseline (scored, never promoted), logistic regression, LightGBM.
- The customer-table path (:func:`train_customer_table`): one row per customer from a table
  described by the config's ``source:`` mapping (``pipelines/customer_table.py``), held out by a
  stratified random split (such a table has no time dimension). Candidates: logistic regression
  (one-hot encoding + scaling) and LightGBM (native categorical splits); the rules baseline reads
  CDR features and does not apply.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features.catalogue import FEATURE_NAMES, MONOTONE
from models.churn_model import ChurnModel
from models.metrics import evaluate
from models.plots import candidate_curves, plt
from models.rules import RuleBaseline
from pipelines.config import Settings

log = logging.getLogger(__name__)


def data_version(*paths: Path) -> str:
    """Content hash of the training inputs, logged with every run."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def split_out_of_time(frame: pd.DataFrame, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test = the last snapshot; train = snapshots whose label window ends by the test snapshot."""
    if settings.features is None:
        raise ValueError("the CDR path needs a features: section in the config")
    ts = frame["event_timestamp"]
    test_t = ts.max()
    horizon = pd.Timedelta(days=settings.features.label_horizon_days)
    train = frame[ts + horizon <= test_t]
    if train.empty:
        raise ValueError(
            f"no training snapshot ends its {horizon.days}-day label window before the held-out {test_t.date()}: "
            "add earlier features.snapshots"
        )
    return train.reset_index(drop=True), frame[ts == test_t].reset_index(drop=True)


def _lightgbm(settings: Settings, **extra):
    from lightgbm import LGBMClassifier

    tc = settings.training
    return LGBMClassifier(
        n_estimators=tc.lightgbm.n_estimators,
        learning_rate=tc.lightgbm.learning_rate,
        num_leaves=tc.lightgbm.num_leaves,
        min_child_samples=tc.lightgbm.min_child_samples,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        random_state=tc.seed,
        n_jobs=2,
        verbose=-1,
        **extra,
    )


def build_candidates(settings: Settings) -> dict[str, object]:
    """The CDR path's candidates, on the catalogue's numeric features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "rules": RuleBaseline(),
        "logistic": Pipeline(
            [("scale", StandardScaler()), ("lr", LogisticRegression(C=settings.training.logistic.C, max_iter=2000))]
        ),
        # monotone constraints keep every reason pointing the way staff read it
        "lightgbm": _lightgbm(settings, monotone_constraints=MONOTONE),
    }


def build_table_candidates(settings: Settings, numeric: list[str], categorical: list[str]) -> dict[str, object]:
    """The customer-table path's candidates: logistic regression on scaled numbers (median-imputed)
    and one-hot categoricals; LightGBM splitting on the categoricals natively (pandas category dtype)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    prep = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ]
    )
    return {
        "logistic": Pipeline(
            [("prep", prep), ("lr", LogisticRegression(C=settings.training.logistic.C, max_iter=2000))]
        ),
        "lightgbm": _lightgbm(settings),
    }


def _params(kind: str, est) -> dict:
    if kind == "lightgbm":
        keys = ("n_estimators", "learning_rate", "num_leaves", "min_child_samples", "subsample", "colsample_bytree")
        return {k: est.get_params()[k] for k in keys}
    if kind == "logistic":
        return {"C": est[-1].C}
    return {"rules": "checklist count + Platt"}


@dataclass
class TrainingSet:
    """What the core needs from either path: the split, the columns and how to describe them."""

    X_train: pd.DataFrame
    y_train: np.ndarray
    X_test: pd.DataFrame
    y_test: np.ndarray
    features: list[str]
    data_version: str
    params: dict  # logged on the parent and every child run (data_version is added)
    held_out: str  # how the test rows were chosen, for the figure's title
    population: str = "subscribers"
    categories: dict[str, list[str]] = field(default_factory=dict)
    tags: dict = field(default_factory=dict)


def fit_track_register(settings: Settings, data: TrainingSet, candidates: dict[str, object],
                       baseline: str | None = None) -> dict:
    """The shared core: fit, evaluate, log under one parent run, register the winner, set ``champion``.

    ``baseline`` names a candidate that is scored and logged but never promoted. Returns the decision
    (winner, registered version, scores of every candidate, parent run id).
    """
    import mlflow
    from mlflow.models import infer_signature

    from models.registry import CHAMPION, ChurnPyfunc, use_tracking

    client = use_tracking(settings)
    exp = client.get_experiment_by_name(settings.mlflow.experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        settings.mlflow.experiment, artifact_location=settings.artifact_root.resolve().as_uri()
    )
    version = data.data_version
    common = {**data.params, "data_version": version}
    feature_list = {"features": data.features} | ({"categorical": data.categories} if data.categories else {})
    X_tr, y_tr, X_te, y_te = data.X_train, data.y_train, data.X_test, data.y_test
    background = X_tr.sample(min(200, len(X_tr)), random_state=settings.training.seed).reset_index(drop=True)
    metric = settings.mlflow.selection_metric
    results: dict[str, dict] = {}
    test_scores: dict[str, np.ndarray] = {}

    with mlflow.start_run(experiment_id=exp_id, run_name="train") as parent:
        mlflow.set_tags({"data_version": version, "stage": "train", **data.tags})
        mlflow.log_params(common)
        mlflow.log_dict(feature_list, "feature_list.json")
        for kind, est in tqdm(candidates.items(), desc="candidates", disable=None):
            model = ChurnModel(kind, list(data.features), est, background, categories=dict(data.categories))
            model.fit(X_tr, y_tr)
            model.params = _params(kind, est)
            test_scores[kind] = model.predict_proba(X_te)
            scores = evaluate(y_te, test_scores[kind])
            with mlflow.start_run(experiment_id=exp_id, run_name=kind, nested=True) as run:
                mlflow.set_tags({"data_version": version, "candidate": kind, "parent_run_id": parent.info.run_id,
                                 **data.tags})
                mlflow.log_params({**common, "model_kind": kind, **model.params})
                mlflow.log_metrics(scores)
                mlflow.log_dict(feature_list, "feature_list.json")
                example = X_te[data.features].head(5)
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=ChurnPyfunc(model),
                    signature=infer_signature(example, pd.DataFrame({"churn_probability": model.predict_proba(example)})),
                    input_example=example,
                    pip_requirements=["churnwarn", "mlflow", "lightgbm", "scikit-learn", "shap", "pandas"],
                )
                results[kind] = {"run_id": run.info.run_id, "model_uri": info.model_uri, **scores}
            mlflow.log_metrics({f"{kind}_{k}": v for k, v in scores.items()})
            log.info("%-9s roc_auc=%.3f pr_auc=%.3f lift@10%%=%.2f", kind, scores["roc_auc"], scores["pr_auc"],
                     scores["top_decile_lift"])

        fig = candidate_curves(y_te, test_scores, f"{data.held_out} "
                               f"({len(y_te)} {data.population}, {int(y_te.sum())} churners)")
        mlflow.log_figure(fig, "candidates_roc_pr.png")
        plt.close(fig)

        best = max((k for k in results if k != baseline), key=lambda k: results[k][metric])
        baseline_score = results[baseline][metric] if baseline else float("nan")
        name = settings.mlflow.registered_model
        mv = mlflow.register_model(results[best]["model_uri"], name)
        client.set_model_version_tag(name, mv.version, "candidate", best)
        client.set_model_version_tag(name, mv.version, metric, f"{results[best][metric]:.4f}")
        client.set_model_version_tag(name, mv.version, "data_version", version)
        decision = {
            "winner": best,
            "version": str(mv.version),
            "selection_metric": metric,
            "winner_score": results[best][metric],
            "rules_baseline_score": baseline_score,  # nan when the path has no rules baseline
            "candidates": results,
            "parent_run_id": parent.info.run_id,
        }
        client.set_registered_model_alias(name, CHAMPION, mv.version)
        mlflow.set_tags({"winner": best, "registered_version": str(mv.version)})
        log.info("registered %s version %s (%s %s=%.3f%s) as @%s", name, mv.version, best, metric,
                 results[best][metric], f" vs {baseline} {baseline_score:.3f}" if baseline else "", CHAMPION)
    return decision


def train(settings: Settings) -> dict:
    """The CDR path: Feast features, out-of-time split, rules / logistic / LightGBM. Returns the decision."""
    from features.store import historical_features

    labels = pd.read_parquet(settings.label_table)
    frame = historical_features(settings, labels)
    train_df, test_df = split_out_of_time(frame, settings)
    params = {
        "train_snapshots": ",".join(sorted({str(t.date()) for t in train_df["event_timestamp"]})),
        "test_snapshot": str(test_df["event_timestamp"].max().date()),
        "n_train": len(train_df),
        "n_test": len(test_df),
        "n_features": len(FEATURE_NAMES),
    }
    log.info("training on %d rows (%s), testing on %d rows (%s)", len(train_df), params["train_snapshots"],
             len(test_df), params["test_snapshot"])
    data = TrainingSet(
        X_train=train_df[FEATURE_NAMES], y_train=train_df["churned"].to_numpy(),
        X_test=test_df[FEATURE_NAMES], y_test=test_df["churned"].to_numpy(),
        features=list(FEATURE_NAMES), data_version=data_version(settings.feature_table, settings.label_table),
        params=params, held_out=f"held-out snapshot {params['test_snapshot']}",
    )
    return fit_track_register(settings, data, build_candidates(settings), baseline="rules")


def train_customer_table(settings: Settings, df: pd.DataFrame) -> dict:
    """The customer-table path on a validated table ``df`` (see ``pipelines.customer_table``).

    Returns the decision plus ``registered_model``, ``n_train``/``n_test`` and the split.
    """
    from pipelines import customer_table as ct

    cfg = settings.source
    if cfg is None:
        raise ValueError("the config has no source: section (no customer table to train on)")
    train_df, test_df = ct.split(df, cfg)
    params = {
        "source": cfg.name,
        "source_file": str(cfg.path),
        "split": "stratified random",
        "test_fraction": cfg.test_fraction,
        "split_seed": cfg.seed,
        "n_train": len(train_df),
        "n_test": len(test_df),
        "n_features": len(cfg.features),
        "n_categorical": len(cfg.categorical_columns),
    }
    log.info("%s: training on %d customers, testing on %d (stratified random %.0f%% split, seed %d)", cfg.name,
             len(train_df), len(test_df), 100 * cfg.test_fraction, cfg.seed)
    # the columns keep the table's own dtypes, so the logged signature accepts rows as read_table gives them
    data = TrainingSet(
        X_train=train_df[cfg.features], y_train=ct.labels(train_df, cfg),
        X_test=test_df[cfg.features], y_test=ct.labels(test_df, cfg),
        features=list(cfg.features), data_version=ct.fingerprint(cfg), params=params,
        held_out=f"{cfg.name}: held-out {100 * cfg.test_fraction:.0f}% stratified random split, seed {cfg.seed}",
        population="customers", categories=ct.categories(df, cfg), tags={"source": cfg.name},
    )
    candidates = build_table_candidates(settings, cfg.numeric_columns, cfg.categorical_columns)
    decision = fit_track_register(settings, data, candidates, baseline=None)
    return decision | {"registered_model": settings.mlflow.registered_model, "source": cfg.name,
                       "n_train": len(train_df), "n_test": len(test_df),
                       "split": f"stratified random, test_fraction {cfg.test_fraction}, seed {cfg.seed}"}
