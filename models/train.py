"""Train the candidates, compare them on held-out rows, register the best as ``champion`` or ``challenger``.

Two inputs share one sequence of steps (:func:`train_and_register`), each returning a typed result:

1. fit every candidate on the training rows (``models.candidates.fit_candidate``: LightGBM searched
   and early-stopped on the validation rows, each candidate calibrated on them);
2. evaluate each on the held-out test rows (``models.evaluation.evaluate_candidate``);
3. score the current champion on the same rows (``models.registry.score_incumbent``);
4. decide (``models.champion.decide``, a pure rule);
5. record: the only step that writes to MLflow (``models.tracking.record``).

- The CDR path (``pipelines.training.train``): the rows come from Feast's point-in-time join,
  split out of time (``models.training_data.split_out_of_time``). Candidates: the operator's rules
  baseline (scored, never registered), logistic regression, LightGBM. It lives with its stage so
  that this module does not import Feast, whose import re-enables every DeprecationWarning
  process-wide (``warnings.simplefilter("once", DeprecationWarning)``).
- The customer-table path (:func:`train_customer_table`): one row per customer from a table
  described by the config's ``source:`` mapping (``features/customer_table.py``), held out by a
  stratified random split, and a stratified validation share of the rest (such a table has no time
  dimension). Candidates: logistic regression (one-hot encoding + scaling) and LightGBM (native
  categorical splits); the rules baseline reads CDR features and does not apply.

Simulator-only evaluation (ceilings, reason fidelity) is a report on the trained model:
``pipelines/truth.py``.
"""

from __future__ import annotations

import logging

import pandas as pd
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from core.config import CustomerTableConfig, Settings
from features import customer_table as ct
from features.derived import Derived, add_derived, derived_columns
from models.candidates import build_candidates, build_table_candidates, fit_candidate
from models.champion import decide
from models.evaluation import evaluate_candidate
from models.registry import score_incumbent
from models.tracking import TrainResult, record
from models.training_data import TrainingSet, bound_held_out, sample_training_set, split_out_of_time
from models.uncertainty import Uncertainty, assess

__all__ = [
    "TrainResult",
    "build_candidates",
    "split_out_of_time",
    "train_and_register",
    "train_customer_table",
]

log = logging.getLogger(__name__)


def train_and_register(
    settings: Settings, data: TrainingSet, candidates: dict[str, object], baseline: str | None = None
) -> TrainResult:
    """Sample the training rows (``training.sample_rows``), fit, evaluate, score the champion, decide,
    record. The alias moves only at the very end of recording: a failure anywhere before leaves the
    current champion as it was."""
    if data.sample is None:  # the Spark engine drew both on its executors (pipelines.training)
        data = sample_training_set(data, settings.training.sample_rows, settings.training.seed)
        data = bound_held_out(data, settings.training.eval_rows, settings.training.seed)
    if data.sample.requested is not None:
        s = data.sample
        log.info(
            "training on a stratified sample of %d of %d training rows (by %s, seed %d): churn rate %.4f "
            "(all rows %.4f)",
            s.rows_sampled,
            s.rows_total,
            " and ".join(s.strata),
            s.seed,
            s.churn_rate_sampled,
            s.churn_rate_total,
        )
    background = data.X_train.sample(
        min(200, len(data.X_train)), random_state=settings.training.seed
    ).reset_index(drop=True)
    fitted, evals = {}, {}
    for kind, est in tqdm(candidates.items(), desc="candidates", disable=None):
        fitted[kind] = fit_candidate(settings, kind, est, data, background, calibrate=kind != baseline)
        evals[kind] = ev = evaluate_candidate(settings, fitted[kind], data)
        s = ev.scores
        log.info(
            "%-9s roc_auc=%.3f pr_auc=%.3f lift@10%%=%.2f brier=%.4f ece=%.4f%s",
            kind,
            s["roc_auc"],
            s["pr_auc"],
            s["top_decile_lift"],
            s["brier"],
            s["ece"],
            f" ({fitted[kind].calibration})" if kind != baseline else "",
        )
    metric = settings.mlflow.selection_metric
    incumbent = score_incumbent(settings, data)
    decision = decide({k: e.scores[metric] for k, e in evals.items()}, incumbent, baseline)
    uncertainty = None
    if data.source is not None and settings.source is not None:  # a customer table: small, so say how sure
        probs = {k: e.test_proba for k, e in evals.items()}
        uncertainty = assess(settings, data, fitted, probs, decision, incumbent)
        _log_uncertainty(uncertainty, metric, len(data.y_test))
    return record(settings, data, fitted, evals, decision, incumbent, baseline, uncertainty)


def _log_uncertainty(u: Uncertainty, metric: str, n_test: int) -> None:
    """Each candidate's held-out interval and CV figure, then each margin of the decision."""
    c = u.config
    for kind, cu in u.candidates.items():
        log.info(
            "%-9s %s held out %s (%.0f%% bootstrap CI); %d-fold x %d CV of the %d training rows %s",
            kind,
            metric,
            cu.intervals[metric].text(),
            100 * c.confidence,
            c.cv_folds,
            c.cv_repeats,
            u.cv_rows,
            cu.cv[metric].text(),
        )
    for m in u.margins:
        log.info("decision margin %s", m.sentence(c.confidence))
    if u.decision_inside_noise:
        log.info(
            "the champion decision is inside the noise: on %d held-out rows %s cannot tell apart "
            "the models it compared",
            n_test,
            metric,
        )


def train_customer_table(settings: Settings, df: pd.DataFrame) -> TrainResult:
    """The customer-table path on a validated table ``df`` (``pipelines.customer_table`` validates it)."""
    cfg = settings.source
    if cfg is None:
        raise ValueError("the config has no source: section (no customer table to train on)")
    derived = derived_columns(cfg)  # checked before anything is fitted or tracked
    df = add_derived(df, derived, cfg.categorical_columns)
    numeric, categorical = ct.model_columns(cfg, derived)
    data = _table_training_set(cfg, df, derived)
    candidates = build_table_candidates(settings, numeric, categorical)
    return train_and_register(settings, data, candidates, baseline=None)


def _table_training_set(cfg: CustomerTableConfig, df: pd.DataFrame, derived: list[Derived]) -> TrainingSet:
    """Hold out a stratified random share, then a stratified validation share of the rest (such a
    table has no time dimension); ``df`` already holds the derived columns."""
    numeric, categorical = ct.model_columns(cfg, derived)
    features = [*numeric, *categorical]
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
        "n_features": len(features),
        "n_categorical": len(categorical),
        "n_derived": len(derived),
    } | ({"derived_columns": "; ".join(f"{d.name} = {d.sql}" for d in derived)[:6000]} if derived else {})
    log.info(
        "%s: training on %d customers (validating on %d of them), testing on %d "
        "(stratified random %.0f%% split, seed %d)",
        cfg.name,
        len(fit_df),
        len(valid_df),
        len(test_df),
        100 * cfg.test_fraction,
        cfg.seed,
    )
    split = f"stratified random split, seed {cfg.seed}"
    # the columns keep the table's own dtypes, so the logged signature accepts rows as read_table gives them
    return TrainingSet(
        X_train=train_df[features],
        y_train=ct.labels(train_df, cfg),
        X_valid=valid_df[features],
        y_valid=ct.labels(valid_df, cfg),
        X_test=test_df[features],
        y_test=ct.labels(test_df, cfg),
        features=features,
        data_version=ct.fingerprint(cfg),
        params=params,
        held_out=f"{cfg.name}: held-out {100 * cfg.test_fraction:.0f}% {split}",
        split=f"stratified random, test_fraction {cfg.test_fraction}, seed {cfg.seed}",
        population="customers",
        categories=ct.categories(df, cfg, derived),
        tags={"source": cfg.name},
        source=cfg.name,
        derived=tuple(derived),
    )
