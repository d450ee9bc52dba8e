"""Train the candidates, compare them on held-out rows, register the best as ``champion`` or ``challenger``.

Two inputs share one core (:func:`fit_track_register`): fit every candidate on the training rows
(LightGBM: a budgeted search early-stopped on the validation rows), calibrate it on the validation
rows (isotonic or Platt, ``models/calibration.py``), evaluate it on the held-out test rows, log it
as an MLflow run nested under one parent run per invocation (all tagged
``churnwarn.invocation=<id>``; params, metrics, the data version, the feature list, figures, the
model with signature and input example), register the winner and decide: ``champion`` if it beats
the current champion scored on the same test rows (or there is none), else ``challenger``. The
alias moves only at the very end, after the winner is logged and registered; a failure before
that leaves the current champion as it was.

- The CDR path (:func:`train`): the rows come from Feast's point-in-time join, split out of time
  (:func:`split_out_of_time`): test = last snapshot, validation = the one before, train = earlier
  snapshots, each row's label window closing before the next period starts. Candidates: the
  operator's rules baseline (scored, never registered), logistic regression, LightGBM.
- The customer-table path (:func:`train_customer_table`): one row per customer from a table
  described by the config's ``source:`` mapping (``pipelines/customer_table.py``), held out by a
  stratified random split, and a stratified validation share of the rest (such a table has no
  time dimension). Candidates: logistic regression (one-hot encoding + scaling) and LightGBM
  (native categorical splits); the rules baseline reads CDR features and does not apply.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from core.config import Settings
from features.catalogue import FEATURE_NAMES, MONOTONE
from models.churn_model import ChurnModel
from models.metrics import evaluate
from models.plots import candidate_curves, plt
from models.rules import RuleBaseline

log = logging.getLogger(__name__)


def data_version(*paths: Path) -> str:
    """Content hash of the training inputs, logged with every run."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def split_out_of_time(
    frame: pd.DataFrame, settings: Settings
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Out-of-time train / validation / test by snapshot.

    - test = the last snapshot;
    - validation = the snapshot before it, whose label window must close by the test snapshot;
    - train = the earlier snapshots whose label window closes by the validation snapshot.

    A row's label looks ``label_horizon_days`` ahead of its own snapshot, so a subscriber present
    in several snapshots has one label window per row; the rule is applied per row
    (``event_timestamp + horizon <= next period's snapshot``), so no training label covers a day of
    the validation or test period and no validation label a day of the test period. Features stay
    strictly before their own snapshot, so a validation row may look back over days that were a
    training row's label window: that is history, known at the validation snapshot.
    """
    if settings.features is None:
        raise ValueError("the CDR path needs a features: section in the config")
    ts = frame["event_timestamp"]
    snaps = sorted(ts.unique())
    horizon = pd.Timedelta(days=settings.features.label_horizon_days)
    if len(snaps) < 3:
        raise ValueError(
            f"out-of-time train / validation / test needs at least 3 snapshots, got {len(snaps)}: "
            "add earlier features.snapshots"
        )
    test_t, valid_t = snaps[-1], snaps[-2]
    if valid_t + horizon > test_t:
        raise ValueError(
            f"the validation snapshot {pd.Timestamp(valid_t).date()} does not close its {horizon.days}-day "
            f"label window before the held-out {pd.Timestamp(test_t).date()}"
        )
    train = frame[ts + horizon <= valid_t]
    if train.empty:
        raise ValueError(
            f"no training snapshot ends its {horizon.days}-day label window before the validation snapshot "
            f"{pd.Timestamp(valid_t).date()}: add earlier features.snapshots"
        )
    return (
        train.reset_index(drop=True),
        frame[ts == valid_t].reset_index(drop=True),
        frame[ts == test_t].reset_index(drop=True),
    )


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


# The budgeted search: the config's own LightGBM settings plus configurations sampled (with the
# training seed) from this grid, each early-stopped on the validation rows; best validation PR-AUC wins.
SEARCH_SPACE = {
    "num_leaves": [4, 7, 15, 31],
    "learning_rate": [0.02, 0.03, 0.05, 0.1],
    "min_child_samples": [20, 50, 100],
}
SEARCH_BUDGET = 8
EARLY_STOPPING_ROUNDS = 30


def search_configurations(settings: Settings, budget: int = SEARCH_BUDGET) -> list[dict]:
    """``budget`` distinct LightGBM configurations: the config's own first, the rest sampled with the seed."""
    import itertools

    lc = settings.training.lightgbm
    own = {
        "num_leaves": lc.num_leaves,
        "learning_rate": lc.learning_rate,
        "min_child_samples": lc.min_child_samples,
    }
    grid = [dict(zip(SEARCH_SPACE, v, strict=False)) for v in itertools.product(*SEARCH_SPACE.values())]
    grid = [g for g in grid if g != own]
    rng = np.random.default_rng(settings.training.seed)
    picks = rng.choice(len(grid), size=min(budget - 1, len(grid)), replace=False)
    return [own, *(grid[i] for i in picks)]


def tune_lightgbm(
    settings: Settings, model: ChurnModel, X_tr, y_tr, X_va, y_va
) -> tuple[ChurnModel, pd.DataFrame]:
    """Budgeted search with early stopping on the validation rows; refit the best at its best iteration.

    Class imbalance: ``scale_pos_weight`` = sqrt(negatives / positives) of the training rows, a
    tempered up-weighting of churners (on the demo data the full ratio, ~31, cost about 0.03
    validation PR-AUC against the square root); the probabilities are recalibrated on the validation
    rows afterwards, so the weighting does not bias the served probability. The refit has exactly the
    early-stopped number of trees, so SHAP (which reads every tree) explains what ``predict`` computes.
    Returns the refitted model and the search table (one row per configuration).
    """
    from lightgbm import early_stopping
    from sklearn.base import clone
    from sklearn.metrics import average_precision_score

    y_tr, y_va = np.asarray(y_tr), np.asarray(y_va)
    spw = float(np.sqrt((y_tr == 0).sum() / max(1, (y_tr == 1).sum())))
    rows = []
    for i, cfg in enumerate(search_configurations(settings)):
        est = clone(model.estimator).set_params(**cfg, scale_pos_weight=spw, metric="average_precision")
        trial = ChurnModel(model.kind, model.features, est, model.background, categories=model.categories)
        trial.fit(
            X_tr,
            y_tr,
            eval_X=(trial.prepare(X_va),),
            eval_y=(y_va,),
            callbacks=[early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)],
        )
        best_it = int(est.best_iteration_ or est.n_estimators)
        rows.append(
            {
                "trial": i,
                **cfg,
                "scale_pos_weight": round(spw, 3),
                "best_iteration": best_it,
                "valid_pr_auc": float(average_precision_score(y_va, trial.predict_raw(X_va))),
            }
        )
    table = pd.DataFrame(rows)
    best = table.loc[table["valid_pr_auc"].idxmax()]
    final = clone(model.estimator).set_params(
        num_leaves=int(best["num_leaves"]),
        learning_rate=float(best["learning_rate"]),
        min_child_samples=int(best["min_child_samples"]),
        n_estimators=max(1, int(best["best_iteration"])),
        scale_pos_weight=spw,
    )
    out = ChurnModel(model.kind, model.features, final, model.background, categories=model.categories)
    return out.fit(X_tr, y_tr), table


def build_candidates(settings: Settings) -> dict[str, object]:
    """The CDR path's candidates, on the catalogue's numeric features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "rules": RuleBaseline(),
        "logistic": Pipeline(
            [
                ("scale", StandardScaler()),
                ("lr", LogisticRegression(C=settings.training.logistic.C, max_iter=2000)),
            ]
        ),
        # monotone constraints keep every reason pointing the way staff read it
        "lightgbm": _lightgbm(settings, monotone_constraints=MONOTONE),
    }


def build_table_candidates(
    settings: Settings, numeric: list[str], categorical: list[str]
) -> dict[str, object]:
    """The customer-table path's candidates: logistic regression on scaled numbers (median-imputed)
    and one-hot categoricals; LightGBM splitting on the categoricals natively (pandas category dtype)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    prep = ColumnTransformer(
        [
            (
                "num",
                Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
                numeric,
            ),
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
        keys = (
            "n_estimators",
            "learning_rate",
            "num_leaves",
            "min_child_samples",
            "subsample",
            "colsample_bytree",
            "scale_pos_weight",
        )
        return {k: est.get_params().get(k) for k in keys}
    if kind == "logistic":
        return {"C": est[-1].C}
    return {"rules": "checklist count + Platt"}


@dataclass
class TrainingSet:
    """What the core needs from either path: the split, the columns and how to describe them.

    The validation rows early-stop and tune LightGBM and fit each candidate's calibrator; the test
    rows only score (candidates, the current champion) and decide.
    """

    X_train: pd.DataFrame
    y_train: np.ndarray
    X_valid: pd.DataFrame
    y_valid: np.ndarray
    X_test: pd.DataFrame
    y_test: np.ndarray
    features: list[str]
    data_version: str
    params: dict  # logged on the parent and every child run (data_version is added)
    held_out: str  # how the test rows were chosen, for the figure's title
    population: str = "subscribers"
    categories: dict[str, list[str]] = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    value_test: np.ndarray | None = None  # per test row: what losing it costs (monthly revenue), if known
    ids_test: np.ndarray | None = None  # subscriber ids of the test rows (reason fidelity), if known


def _evaluate(y, score, settings: Settings, value=None) -> dict[str, float]:
    """``models.metrics.evaluate`` as plain floats (what MLflow logs)."""
    out = evaluate(y, score, value=value, settings=settings)
    return {k: float(v) for k, v in out.items() if v is not None and np.isscalar(v)}


def _current_champion(settings: Settings, client, X_te: pd.DataFrame, y_te, value) -> dict | None:
    """The current ``champion`` scored on this invocation's test rows (None when there is none yet)."""
    from mlflow.exceptions import MlflowException

    from models.registry import CHAMPION, load_registered

    name = settings.mlflow.registered_model
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    try:
        loaded = load_registered(settings, version=str(mv.version))
        scores = _evaluate(y_te, loaded.model.predict_proba(X_te), settings, value)
        return {"version": str(mv.version), "kind": loaded.model.kind, "scores": scores}
    except Exception as exc:  # a champion that cannot score today's rows cannot stay champion
        log.warning(
            "current champion v%s cannot score the held-out rows (%s): the new winner replaces it",
            mv.version,
            exc,
        )
        return {"version": str(mv.version), "kind": None, "scores": None, "error": str(exc)}


def _reason_fidelity(settings: Settings, model: ChurnModel, data: TrainingSet) -> dict:
    """Reason fidelity of the winner on the test rows (generated data only: it needs the simulator's truth).

    Counted as ``churn truth`` counts it: the top 3 reasons that raise the risk.
    """
    from models.fidelity import reason_fidelity
    from models.reasons import top_reasons

    if data.ids_test is None:
        return {}
    reasons = top_reasons(model.explain(data.X_test), data.X_test, settings, k=3, lang="en")
    codes = [[r.code for r in rs if r.contribution > 0] for rs in reasons]
    out = reason_fidelity(settings, list(data.ids_test), codes, data.y_test)
    return {
        f"fidelity_{k}": float(v)
        for k, v in (out or {}).items()
        if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
    }


def _ceilings(settings: Settings, data: TrainingSet, winner: dict) -> dict:
    """The simulator's latent and reachable AUC ceilings on the test rows, and the winner's ROC-AUC gap
    to the reachable one (generated data only; see ``pipelines/truth.py``)."""
    from pipelines.truth import ceilings

    snapshot = data.params.get("test_snapshot")
    if data.ids_test is None or snapshot is None:
        return {}
    try:
        out = ceilings(settings, list(data.ids_test), data.y_test, snapshot)
    except ValueError as exc:  # ground truth from an older simulator, or not for these rows: no ceiling
        log.warning("no AUC ceilings logged: %s", exc)
        return {}
    if out:
        out["reachable_gap_roc_auc"] = out["ceiling_reachable_roc_auc"] - winner["roc_auc"]
    return out


def fit_track_register(
    settings: Settings, data: TrainingSet, candidates: dict[str, object], baseline: str | None = None
) -> dict:
    """The shared core: fit, calibrate, evaluate, log under one parent run, register the winner and
    decide champion or challenger.

    Every candidate is fitted on the training rows (LightGBM: a budgeted search early-stopped on the
    validation rows), calibrated on the validation rows (isotonic or Platt, whichever has the lower
    cross-validated Brier score there) and scored on the test rows. ``baseline`` names a candidate
    that is scored and logged but never registered (nor calibrated). The winner by
    ``mlflow.selection_metric`` is registered as a new version; it takes the ``champion`` alias only
    if it beats the current champion *scored on the same test rows* (or there is none, or it cannot
    score them), otherwise it is tagged ``challenger`` and the champion stays. Returns the decision.
    """
    import uuid

    import mlflow
    from mlflow.models import infer_signature

    from models.calibration import choose_calibrator
    from models.metrics import brier, expected_calibration_error
    from models.plots import calibration_plot, gains_chart, shap_summary
    from models.registry import CHALLENGER, CHAMPION, ChurnPyfunc, use_tracking

    client = use_tracking(settings)
    exp = client.get_experiment_by_name(settings.mlflow.experiment)
    exp_id = (
        exp.experiment_id
        if exp
        else client.create_experiment(
            settings.mlflow.experiment, artifact_location=settings.artifact_root.resolve().as_uri()
        )
    )
    version = data.data_version
    invocation = uuid.uuid4().hex[:12]
    common = {**data.params, "data_version": version}
    feature_list = {"features": data.features} | ({"categorical": data.categories} if data.categories else {})
    X_tr, y_tr, X_va, y_va, X_te, y_te = (
        data.X_train,
        data.y_train,
        data.X_valid,
        data.y_valid,
        data.X_test,
        data.y_test,
    )
    background = X_tr.sample(min(200, len(X_tr)), random_state=settings.training.seed).reset_index(drop=True)
    metric = settings.mlflow.selection_metric
    seed = settings.training.seed
    shared_tags = {"data_version": version, "churnwarn.invocation": invocation, **data.tags}
    results: dict[str, dict] = {}
    models: dict[str, ChurnModel] = {}
    test_scores: dict[str, np.ndarray] = {}
    raw_scores: dict[str, np.ndarray] = {}

    with mlflow.start_run(experiment_id=exp_id, run_name="train") as parent:
        mlflow.set_tags({**shared_tags, "stage": "train"})
        mlflow.log_params(common | {"features": ",".join(data.features)[:6000]})
        mlflow.log_dict(feature_list, "feature_list.json")
        for kind, est in tqdm(candidates.items(), desc="candidates", disable=None):
            model = ChurnModel(kind, list(data.features), est, background, categories=dict(data.categories))
            search = None
            if kind == "lightgbm":
                model, search = tune_lightgbm(settings, model, X_tr, y_tr, X_va, y_va)
            else:
                model.fit(X_tr, y_tr)
            model.params = _params(kind, model.estimator)
            extra: dict[str, float] = {}
            if kind != baseline:
                model.calibrator, cv = choose_calibrator(model.predict_raw(X_va), y_va, seed=seed)
                model.params["calibration"] = model.calibrator.method
                extra |= {f"valid_cv_{m}_{k}": v for m, r in cv.items() for k, v in r.items()}
                raw_scores[kind] = model.predict_raw(X_te)
            test_scores[kind] = model.predict_proba(X_te)
            scores = _evaluate(y_te, test_scores[kind], settings, data.value_test)
            # evaluate() already gives brier and ece of the served (calibrated) scores; add the raw ones
            if kind in raw_scores:
                extra |= {
                    "test_brier_raw": brier(y_te, raw_scores[kind]),
                    "test_ece_raw": expected_calibration_error(y_te, raw_scores[kind]),
                }
            with mlflow.start_run(experiment_id=exp_id, run_name=kind, nested=True) as run:
                mlflow.set_tags({**shared_tags, "candidate": kind, "parent_run_id": parent.info.run_id})
                mlflow.log_params(
                    {**common, "model_kind": kind, **model.params}
                    | (
                        {
                            "search_budget": len(search),
                            "search_selected_by": "valid_pr_auc",
                            "early_stopping_rounds": EARLY_STOPPING_ROUNDS,
                        }
                        if search is not None
                        else {}
                    )
                )
                mlflow.log_metrics(scores | extra)
                mlflow.log_dict(feature_list, "feature_list.json")
                if search is not None:
                    mlflow.log_table(search, "lightgbm_search.json")
                    mlflow.log_text(search.to_csv(index=False), "lightgbm_search.csv")
                    mlflow.log_metric("valid_pr_auc_best", float(search["valid_pr_auc"].max()))
                example = X_te[data.features].head(5)
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=ChurnPyfunc(model),
                    signature=infer_signature(
                        example, pd.DataFrame({"churn_probability": model.predict_proba(example)})
                    ),
                    input_example=example,
                    pip_requirements=["churnwarn", "mlflow", "lightgbm", "scikit-learn", "shap", "pandas"],
                )
                results[kind] = {"run_id": run.info.run_id, "model_uri": info.model_uri, **scores, **extra}
                if "calibration" in model.params:
                    results[kind]["calibration"] = model.params["calibration"]
            models[kind] = model
            mlflow.log_metrics({f"{kind}_{k}": v for k, v in scores.items()})
            log.info(
                "%-9s roc_auc=%.3f pr_auc=%.3f lift@10%%=%.2f brier=%.4f ece=%.4f%s",
                kind,
                scores["roc_auc"],
                scores["pr_auc"],
                scores["top_decile_lift"],
                scores["brier"],
                scores["ece"],
                f" ({model.params['calibration']})" if kind != baseline else "",
            )

        title = f"{data.held_out} ({len(y_te)} {data.population}, {int(y_te.sum())} churners)"
        best = max((k for k in results if k != baseline), key=lambda k: results[k][metric])
        figures = {
            "candidates_roc_pr.png": lambda: candidate_curves(y_te, test_scores, title),
            "gains_lift.png": lambda: gains_chart(y_te, test_scores, title),
            "calibration.png": lambda: calibration_plot(
                y_te,
                {f"{k} (raw)": raw_scores[k] for k in raw_scores}
                | {f"{k} ({results[k]['calibration']})": test_scores[k] for k in raw_scores},
                title,
            ),
            "shap_summary.png": lambda: shap_summary(models[best], X_te, f"{best}: {title}"),
        }
        for path, make in figures.items():
            try:
                fig = make()
            except Exception as exc:  # a figure must never stop the training
                log.warning("figure %s not drawn: %s", path, exc)
                continue
            mlflow.log_figure(fig, path)
            plt.close(fig)

        fidelity = _reason_fidelity(settings, models[best], data)
        if fidelity:
            mlflow.log_metrics(fidelity)
        ceiling = _ceilings(settings, data, results[best])
        if ceiling:
            mlflow.log_metrics(ceiling)

        # champion / challenger: the current champion is scored on the same test rows
        baseline_score = results[baseline][metric] if baseline else float("nan")
        name = settings.mlflow.registered_model
        incumbent = _current_champion(settings, client, X_te, y_te, data.value_test)
        new_score = results[best][metric]
        if incumbent is None:
            promote, reason, old_score = True, "first champion", float("nan")
        elif incumbent["scores"] is None:
            promote, reason, old_score = True, "champion could not score the held-out rows", float("nan")
        else:
            old_score = incumbent["scores"][metric]
            promote = new_score > old_score
            reason = "beats the champion" if promote else "does not beat the champion"
        mv = mlflow.register_model(results[best]["model_uri"], name)
        alias = CHAMPION if promote else CHALLENGER
        for key, val in {
            "candidate": best,
            metric: f"{new_score:.4f}",
            "data_version": version,
            "calibration": results[best]["calibration"],
            "churnwarn.invocation": invocation,
            "decision": reason,
        }.items():
            client.set_model_version_tag(name, mv.version, key, val)
        incumbent_version = incumbent["version"] if incumbent else None
        champion_version = str(mv.version) if promote else incumbent_version
        decision = {
            "winner": best,
            "version": str(mv.version),
            "alias": alias,
            "promoted": promote,
            "decision": reason,
            "champion_version": champion_version,
            "previous_champion_version": incumbent_version,
            "previous_champion_score": old_score,  # nan when there was none (or it could not score)
            "selection_metric": metric,
            "winner_score": new_score,
            "rules_baseline_score": baseline_score,  # nan when the path has no rules baseline
            "calibration": results[best]["calibration"],
            "invocation": invocation,
            "candidates": results,
            "parent_run_id": parent.info.run_id,
            **fidelity,
            **ceiling,
        }
        decision_log = {
            "champion_decision": alias,
            "champion_decision_reason": reason,
            "registered_version": str(mv.version),
            "champion_version": str(champion_version),
            "previous_champion_version": str(incumbent_version),
            f"previous_champion_{metric}": f"{old_score:.4f}",
            f"winner_{metric}": f"{new_score:.4f}",
            "winner_calibration": results[best]["calibration"],
        }
        mlflow.log_params(decision_log)
        mlflow.set_tags({"winner": best, **decision_log})
        if old_score == old_score:
            mlflow.log_metric(f"previous_champion_{metric}", old_score)
        # the aliases move last: a failure before this line leaves the registry's champion as it was
        client.set_registered_model_alias(name, alias, mv.version)
        if promote:  # an older challenger lost to the new champion too
            try:
                if str(client.get_model_version_by_alias(name, CHALLENGER).version) != str(mv.version):
                    client.delete_registered_model_alias(name, CHALLENGER)
            except Exception:
                pass
        log.info(
            "registered %s version %s (%s %s=%.3f%s) as @%s: %s%s",
            name,
            mv.version,
            best,
            metric,
            new_score,
            f" vs {baseline} {baseline_score:.3f}" if baseline else "",
            alias,
            reason,
            f" v{incumbent_version} {metric}={old_score:.3f}" if incumbent else "",
        )
    return decision


def train(settings: Settings) -> dict:
    """The CDR path: Feast features, out-of-time split, rules / logistic / LightGBM. Returns the decision."""
    from features.store import historical_features

    labels = pd.read_parquet(settings.label_table)
    frame = historical_features(settings, labels)
    train_df, valid_df, test_df = split_out_of_time(frame, settings)
    params = {
        "split": "out-of-time: train / validation / test snapshots",
        "train_snapshots": ",".join(sorted({str(t.date()) for t in train_df["event_timestamp"]})),
        "valid_snapshot": str(valid_df["event_timestamp"].max().date()),
        "test_snapshot": str(test_df["event_timestamp"].max().date()),
        "label_horizon_days": settings.features.label_horizon_days,
        "n_train": len(train_df),
        "n_valid": len(valid_df),
        "n_test": len(test_df),
        "n_features": len(FEATURE_NAMES),
    }
    log.info(
        "training on %d rows (%s), validating on %d (%s), testing on %d rows (%s)",
        len(train_df),
        params["train_snapshots"],
        len(valid_df),
        params["valid_snapshot"],
        len(test_df),
        params["test_snapshot"],
    )
    data = TrainingSet(
        X_train=train_df[FEATURE_NAMES],
        y_train=train_df["churned"].to_numpy(),
        X_valid=valid_df[FEATURE_NAMES],
        y_valid=valid_df["churned"].to_numpy(),
        X_test=test_df[FEATURE_NAMES],
        y_test=test_df["churned"].to_numpy(),
        features=list(FEATURE_NAMES),
        data_version=data_version(settings.feature_table, settings.label_table),
        params=params,
        held_out=f"held-out snapshot {params['test_snapshot']}",
        value_test=test_df["arpu_3m"].to_numpy(dtype=float) if "arpu_3m" in test_df else None,
        ids_test=test_df["subscriber_id"].to_numpy() if "subscriber_id" in test_df else None,
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
    from sklearn.model_selection import train_test_split

    fit_df, test_df = ct.split(df, cfg)
    # validation rows (early stopping, LightGBM search, calibration): a stratified share of the training split
    train_df, valid_df = train_test_split(
        fit_df, test_size=cfg.test_fraction, stratify=ct.labels(fit_df, cfg), random_state=cfg.seed
    )
    train_df, valid_df = train_df.reset_index(drop=True), valid_df.reset_index(drop=True)
    params = {
        "source": cfg.name,
        "source_file": str(cfg.path),
        "split": "stratified random",
        "test_fraction": cfg.test_fraction,
        "valid_fraction_of_train": cfg.test_fraction,
        "split_seed": cfg.seed,
        "n_train": len(train_df),
        "n_valid": len(valid_df),
        "n_test": len(test_df),
        "n_features": len(cfg.features),
        "n_categorical": len(cfg.categorical_columns),
    }
    log.info(
        "%s: training on %d customers (validating on %d of them), testing on %d (stratified random %.0f%% split, seed %d)",
        cfg.name,
        len(fit_df),
        len(valid_df),
        len(test_df),
        100 * cfg.test_fraction,
        cfg.seed,
    )
    # the columns keep the table's own dtypes, so the logged signature accepts rows as read_table gives them
    data = TrainingSet(
        X_train=train_df[cfg.features],
        y_train=ct.labels(train_df, cfg),
        X_valid=valid_df[cfg.features],
        y_valid=ct.labels(valid_df, cfg),
        X_test=test_df[cfg.features],
        y_test=ct.labels(test_df, cfg),
        features=list(cfg.features),
        data_version=ct.fingerprint(cfg),
        params=params,
        held_out=f"{cfg.name}: held-out {100 * cfg.test_fraction:.0f}% stratified random split, seed {cfg.seed}",
        population="customers",
        categories=ct.categories(df, cfg),
        tags={"source": cfg.name},
    )
    candidates = build_table_candidates(settings, cfg.numeric_columns, cfg.categorical_columns)
    decision = fit_track_register(settings, data, candidates, baseline=None)
    return decision | {
        "registered_model": settings.mlflow.registered_model,
        "source": cfg.name,
        "n_train": len(train_df),
        "n_valid": len(valid_df),
        "n_test": len(test_df),
        "split": f"stratified random, test_fraction {cfg.test_fraction}, seed {cfg.seed}",
    }
