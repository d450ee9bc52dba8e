"""The candidates and how each is fitted: the rules baseline, logistic regression and LightGBM.

LightGBM is tuned by a budgeted search early-stopped on the validation rows; every candidate but the
rules baseline is then calibrated on the validation rows (isotonic or Platt, ``models/calibration.py``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier, early_stopping
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from core.config import Settings
from features.catalogue import MONOTONE
from models.calibration import choose_calibrator
from models.churn_model import ChurnModel
from models.rules import RuleBaseline

# The budgeted search: the config's own LightGBM settings plus configurations sampled (with the
# training seed) from this grid, each early-stopped on the validation rows; best validation PR-AUC wins.
SEARCH_SPACE = {
    "num_leaves": [4, 7, 15, 31],
    "learning_rate": [0.02, 0.03, 0.05, 0.1],
    "min_child_samples": [20, 50, 100],
}
SEARCH_BUDGET = 8
EARLY_STOPPING_ROUNDS = 30


@dataclass(frozen=True)
class FittedCandidate:
    """One candidate after fitting (and calibration, unless it is the baseline)."""

    kind: str
    model: ChurnModel
    search: pd.DataFrame | None  # LightGBM's search table, one row per configuration
    calibration_cv: dict[str, float]  # cross-validated calibration metrics on the validation rows

    @property
    def calibration(self) -> str | None:
        return self.model.calibrator.method if self.model.calibrator is not None else None


def _lightgbm(settings: Settings, **extra) -> LGBMClassifier:
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


def search_configurations(settings: Settings, budget: int = SEARCH_BUDGET) -> list[dict]:
    """``budget`` distinct LightGBM configurations: the config's own first, the rest sampled with the seed."""
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
    y_tr, y_va = np.asarray(y_tr), np.asarray(y_va)
    spw = float(np.sqrt((y_tr == 0).sum() / max(1, (y_tr == 1).sum())))
    rows = []
    for i, cfg in enumerate(search_configurations(settings)):
        est = clone(model.estimator).set_params(**cfg, scale_pos_weight=spw, metric="average_precision")
        trial = replace(model, estimator=est)
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
    out = replace(model, estimator=final)
    return out.fit(X_tr, y_tr), table


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


def fit_candidate(
    settings: Settings, kind: str, estimator, data, background: pd.DataFrame, calibrate: bool
) -> FittedCandidate:
    """Fit one candidate on ``data``'s training rows (a ``models.train.TrainingSet``); LightGBM is
    tuned first, and every calibrated candidate gets the calibrator chosen on the validation rows."""
    model = ChurnModel(
        kind,
        list(data.features),
        estimator,
        background,
        categories=dict(data.categories),
        derived=list(data.derived),
    )
    search = None
    if kind == "lightgbm":
        model, search = tune_lightgbm(settings, model, data.X_train, data.y_train, data.X_valid, data.y_valid)
    else:
        model.fit(data.X_train, data.y_train)
    model.params = _params(kind, model.estimator)
    cv: dict[str, float] = {}
    if calibrate:
        model.calibrator, per_method = choose_calibrator(
            model.predict_raw(data.X_valid), data.y_valid, seed=settings.training.seed
        )
        model.params["calibration"] = model.calibrator.method
        cv = {f"valid_cv_{m}_{k}": v for m, r in per_method.items() for k, v in r.items()}
    return FittedCandidate(kind, model, search, cv)
