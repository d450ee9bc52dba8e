"""Train the candidates on earlier snapshots, compare them on the held-out last one, promote the best.

Every candidate is an MLflow run nested under one parent run per invocation. The training set comes
from Feast's point-in-time join. A training snapshot is used only if its label window closes before
the held-out snapshot, so no training label peeks into the test period. The ``champion`` alias
moves only at the very end, after the winner is logged and registered; a failure before that
leaves the current champion as it was.
"""

from __future__ import annotations

import hashlib
import logging
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


def build_candidates(settings: Settings) -> dict[str, object]:
    from lightgbm import LGBMClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    tc = settings.training
    return {
        "rules": RuleBaseline(),
        "logistic": Pipeline(
            [("scale", StandardScaler()), ("lr", LogisticRegression(C=tc.logistic.C, max_iter=2000))]
        ),
        "lightgbm": LGBMClassifier(
            n_estimators=tc.lightgbm.n_estimators,
            learning_rate=tc.lightgbm.learning_rate,
            num_leaves=tc.lightgbm.num_leaves,
            min_child_samples=tc.lightgbm.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            monotone_constraints=MONOTONE,  # keeps every reason pointing the way staff read it
            random_state=tc.seed,
            n_jobs=2,
            verbose=-1,
        ),
    }


def _params(kind: str, est) -> dict:
    if kind == "lightgbm":
        keys = ("n_estimators", "learning_rate", "num_leaves", "min_child_samples", "subsample", "colsample_bytree")
        return {k: est.get_params()[k] for k in keys}
    if kind == "logistic":
        return {"C": est.named_steps["lr"].C}
    return {"rules": "checklist count + Platt"}


def train(settings: Settings) -> dict:
    """Fit, track, register and (if better) promote. Returns a summary of the decision."""
    import mlflow
    from mlflow.models import infer_signature

    from features.store import historical_features
    from models.registry import CHAMPION, ChurnPyfunc, use_tracking

    client = use_tracking(settings)
    exp = client.get_experiment_by_name(settings.mlflow.experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        settings.mlflow.experiment, artifact_location=settings.artifact_root.resolve().as_uri()
    )
    labels = pd.read_parquet(settings.label_table)
    frame = historical_features(settings, labels)
    train_df, test_df = split_out_of_time(frame, settings)
    X_tr, y_tr = train_df[FEATURE_NAMES], train_df["churned"].to_numpy()
    X_te, y_te = test_df[FEATURE_NAMES], test_df["churned"].to_numpy()
    version = data_version(settings.feature_table, settings.label_table)
    common = {
        "train_snapshots": ",".join(sorted({str(t.date()) for t in train_df["event_timestamp"]})),
        "test_snapshot": str(test_df["event_timestamp"].max().date()),
        "n_train": len(train_df),
        "n_test": len(test_df),
        "n_features": len(FEATURE_NAMES),
        "data_version": version,
    }
    log.info("training on %d rows (%s), testing on %d rows (%s)", len(train_df), common["train_snapshots"],
             len(test_df), common["test_snapshot"])
    background = X_tr.sample(min(200, len(X_tr)), random_state=settings.training.seed).reset_index(drop=True)
    metric = settings.mlflow.selection_metric
    results: dict[str, dict] = {}
    test_scores: dict[str, np.ndarray] = {}

    with mlflow.start_run(experiment_id=exp_id, run_name="train") as parent:
        mlflow.set_tags({"data_version": version, "stage": "train"})
        mlflow.log_params(common)
        mlflow.log_dict({"features": FEATURE_NAMES}, "feature_list.json")
        for kind, est in tqdm(build_candidates(settings).items(), desc="candidates", disable=None):
            est.fit(X_tr, y_tr)
            model = ChurnModel(kind, list(FEATURE_NAMES), est, background, _params(kind, est))
            test_scores[kind] = model.predict_proba(X_te)
            scores = evaluate(y_te, test_scores[kind])
            with mlflow.start_run(experiment_id=exp_id, run_name=kind, nested=True) as run:
                mlflow.set_tags({"data_version": version, "candidate": kind, "parent_run_id": parent.info.run_id})
                mlflow.log_params({**common, "model_kind": kind, **model.params})
                mlflow.log_metrics(scores)
                mlflow.log_dict({"features": FEATURE_NAMES}, "feature_list.json")
                example = X_te.head(5)
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

        fig = candidate_curves(y_te, test_scores, f"held-out snapshot {common['test_snapshot']} "
                               f"({len(y_te)} subscribers, {int(y_te.sum())} churners)")
        mlflow.log_figure(fig, "candidates_roc_pr.png")
        plt.close(fig)

        best = max((k for k in results if k != "rules"), key=lambda k: results[k][metric])
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
            "rules_baseline_score": results["rules"][metric],
            "candidates": results,
            "parent_run_id": parent.info.run_id,
        }
        client.set_registered_model_alias(name, CHAMPION, mv.version)
        mlflow.set_tags({"winner": best, "registered_version": str(mv.version)})
        log.info("registered %s version %s (%s %s=%.3f vs rules %.3f) as @%s", name, mv.version, best, metric,
                 results[best][metric], results["rules"][metric], CHAMPION)
    return decision
