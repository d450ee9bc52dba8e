"""How sure a customer table's figures are: bootstrap intervals on the held-out rows, repeated
stratified cross-validation, and whether a champion decision's margin is inside the noise.

A customer table is small (wa_churn: 7,043 rows, a 1,409-row hold-out): one random split moves
ROC-AUC by about +-0.01, as much as the gap between two good candidates. So next to each held-out
figure this reports

- a bootstrap confidence interval (``scipy.stats.bootstrap``, percentile, resampling the held-out
  customers) of ROC-AUC, PR-AUC and top-decile lift;
- the mean and standard deviation over a repeated stratified k-fold cross-validation
  (``sklearn.model_selection.RepeatedStratifiedKFold``) of the training customers: the candidate's
  chosen configuration refitted on each fold and scored (uncalibrated: calibration is fitted on the
  validation rows and is monotone, so it barely moves a ranking metric). The held-out rows are not
  used, so the held-out figure stays an independent estimate;
- for each comparison the decision made (the winner against the other candidates, and against the
  current champion), the paired bootstrap interval of the difference on the same rows: an interval
  that contains 0 means the decision is inside the noise, and the run says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import bootstrap, rankdata
from sklearn.base import clone
from sklearn.model_selection import RepeatedStratifiedKFold

from core.config import Settings, UncertaintyConfig
from models.candidates import FittedCandidate
from models.champion import Decision, Incumbent
from models.metrics import top_fraction_lift
from models.training_data import TrainingSet

log = logging.getLogger(__name__)

HEADLINE = ("roc_auc", "pr_auc", "top_decile_lift")
CI_METHOD = "bootstrap percentile"
BATCH_CELLS = 2_000_000  # resampled rows held at once (x a few float64 arrays: tens of MB)


def roc_auc(y: np.ndarray, score: np.ndarray, axis: int = -1) -> np.ndarray:
    """ROC-AUC as the Mann-Whitney statistic (ties count half, as ``roc_auc_score``), vectorised over
    bootstrap resamples: ~100x faster than a loop over ``roc_auc_score``. NaN when a class is absent."""
    y = np.moveaxis(np.asarray(y), axis, -1).astype(bool)
    ranks = rankdata(np.moveaxis(np.asarray(score, dtype=float), axis, -1), axis=-1)
    n1 = y.sum(axis=-1)
    n0 = y.shape[-1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * y).sum(axis=-1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def average_precision(y: np.ndarray, score: np.ndarray, axis: int = -1) -> np.ndarray:
    """PR-AUC as ``average_precision_score`` computes it (tied scores form one threshold), vectorised
    over bootstrap resamples: sum over thresholds of the recall gained times the precision there."""
    y = np.moveaxis(np.asarray(y), axis, -1).astype(float)
    score = np.moveaxis(np.asarray(score, dtype=float), axis, -1)
    order = np.argsort(-score, axis=-1, kind="stable")
    s, t = np.take_along_axis(score, order, -1), np.take_along_axis(y, order, -1)
    n = s.shape[-1]
    last = np.ones_like(s, dtype=bool)  # a position ending its run of tied scores: a threshold
    last[..., :-1] = s[..., 1:] != s[..., :-1]
    # every position takes the precision at the end of its run of ties
    end = np.where(last, np.arange(n), n - 1)
    end = np.flip(np.minimum.accumulate(np.flip(end, -1), axis=-1), -1)
    precision = np.cumsum(t, axis=-1) / np.arange(1, n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (t * np.take_along_axis(precision, end, -1)).sum(axis=-1) / t.sum(axis=-1)


# metric -> (function of (y, score), whether it takes a batch of resamples at once)
METRICS: dict[str, tuple[Callable, bool]] = {
    "roc_auc": (roc_auc, True),
    "pr_auc": (average_precision, True),
    "top_decile_lift": (lambda y, s: top_fraction_lift(y, s, 0.1), False),
}


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def text(self, digits: int = 3) -> str:
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class CvFigure:
    mean: float
    sd: float  # across the folds x repeats scores (ddof=1)
    scores: tuple[float, ...]

    def text(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}"


@dataclass(frozen=True)
class CandidateUncertainty:
    kind: str
    intervals: dict[str, Interval]  # metric -> held-out estimate and its bootstrap interval
    cv: dict[str, CvFigure]  # metric -> repeated stratified CV of the training customers


@dataclass(frozen=True)
class Margin:
    """One comparison the decision made, on the same held-out rows: ``winner`` minus ``other``."""

    winner: str
    other: str  # another candidate, or "champion v<N>"
    metric: str
    difference: Interval  # paired bootstrap interval of the difference

    @property
    def inside_noise(self) -> bool:
        return bool(self.difference.low <= 0 <= self.difference.high)

    def sentence(self, confidence: float) -> str:
        d = self.difference
        verdict = "inside the noise" if self.inside_noise else "outside the noise"
        return (
            f"{self.winner} vs {self.other}: {self.metric} {d.estimate:+.3f}, {confidence:.0%} CI of the "
            f"paired difference [{d.low:+.3f}, {d.high:+.3f}]: {verdict}"
        )


@dataclass(frozen=True)
class Uncertainty:
    """What training reports on how sure its figures are (``reports/train.json``, MLflow, the log)."""

    config: UncertaintyConfig
    cv_rows: int
    candidates: dict[str, CandidateUncertainty]
    margins: list[Margin]

    @property
    def decision_inside_noise(self) -> bool:
        """True when any comparison the decision rests on is inside the noise."""
        return any(m.inside_noise for m in self.margins)

    def params(self) -> dict:
        c = self.config
        return {
            "ci_method": CI_METHOD,
            "ci_level": c.confidence,
            "bootstrap_resamples": c.bootstrap_resamples,
            "cv": f"repeated stratified {c.cv_folds}-fold x {c.cv_repeats}",
            "cv_rows": self.cv_rows,
        }

    def metrics(self, kind: str) -> dict[str, float]:
        """A candidate's run metrics: ``<m>_ci_low``/``_ci_high``, ``cv_<m>_mean``/``_sd``."""
        u = self.candidates[kind]
        out = {f"{m}_ci_{e}": getattr(i, e) for m, i in u.intervals.items() for e in ("low", "high")}
        return out | {f"cv_{m}_{e}": getattr(f, e) for m, f in u.cv.items() for e in ("mean", "sd")}

    def report(self) -> dict:
        """The ``uncertainty`` entry of ``reports/train.json``."""
        return {
            **self.params(),
            "candidates": {
                k: {
                    m: {
                        "held_out": u.intervals[m].estimate,
                        "ci": [u.intervals[m].low, u.intervals[m].high],
                        "cv_mean": u.cv[m].mean,
                        "cv_sd": u.cv[m].sd,
                    }
                    for m in u.intervals
                }
                for k, u in self.candidates.items()
            },
            "margins": [
                {
                    "winner": m.winner,
                    "other": m.other,
                    "metric": m.metric,
                    "difference": m.difference.estimate,
                    "ci": [m.difference.low, m.difference.high],
                    "inside_noise": m.inside_noise,
                }
                for m in self.margins
            ],
            "decision_inside_noise": self.decision_inside_noise,
        }


def _interval(cfg: UncertaintyConfig, seed: int, metric: str, y: np.ndarray, *scores: np.ndarray) -> Interval:
    """Bootstrap interval of ``metric`` (one score) or of its paired difference (two scores)."""
    fn, vectorised = METRICS[metric]

    def stat(yy, a, b=None, axis=-1):  # scipy passes axis=-1 (a batch of resamples) when vectorised
        return fn(yy, a) if b is None else fn(yy, a) - fn(yy, b)

    estimate = float(stat(y, *scores))
    res = bootstrap(
        (y, *scores),
        stat,
        paired=True,
        vectorized=vectorised,
        n_resamples=cfg.bootstrap_resamples,
        confidence_level=cfg.confidence,
        method="percentile",
        batch=max(1, BATCH_CELLS // len(y)),  # resamples per vectorised call: bounded memory on big tables
        rng=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return Interval(estimate, float(ci.low), float(ci.high))


def held_out_intervals(
    cfg: UncertaintyConfig, seed: int, y: np.ndarray, proba: np.ndarray
) -> dict[str, Interval]:
    return {m: _interval(cfg, seed, m, np.asarray(y), np.asarray(proba)) for m in HEADLINE}


def repeated_cv(cfg: UncertaintyConfig, seed: int, fitted: FittedCandidate, data: TrainingSet) -> dict:
    """The candidate's chosen configuration refitted and scored on every fold of a repeated stratified
    k-fold split of the training customers (training + validation rows; never the held-out ones)."""
    X = pd.concat([data.X_train, data.X_valid], ignore_index=True)
    y = np.concatenate([np.asarray(data.y_train), np.asarray(data.y_valid)])
    folds = RepeatedStratifiedKFold(n_splits=cfg.cv_folds, n_repeats=cfg.cv_repeats, random_state=seed)
    scores: dict[str, list[float]] = {m: [] for m in HEADLINE}
    for tr, te in folds.split(X, y):
        model = replace(fitted.model, estimator=clone(fitted.model.estimator), calibrator=None)
        raw = model.fit(X.iloc[tr], y[tr]).predict_raw(X.iloc[te])
        for m in HEADLINE:
            scores[m].append(float(METRICS[m][0](y[te], raw)))
    return {m: CvFigure(float(np.mean(v)), float(np.std(v, ddof=1)), tuple(v)) for m, v in scores.items()}


def assess(
    settings: Settings,
    data: TrainingSet,
    fitted: dict[str, FittedCandidate],
    test_proba: dict[str, np.ndarray],
    decision: Decision,
    incumbent: Incumbent | None,
) -> Uncertainty:
    """Intervals and CV for every candidate, and the noise around each comparison of the decision."""
    cfg, seed = settings.source.uncertainty, settings.training.seed
    y = np.asarray(data.y_test)
    per = {
        k: CandidateUncertainty(
            k, held_out_intervals(cfg, seed, y, test_proba[k]), repeated_cv(cfg, seed, fitted[k], data)
        )
        for k in fitted
    }
    metric, w = settings.mlflow.selection_metric, decision.winner
    margins = [
        Margin(w, k, metric, _interval(cfg, seed, metric, y, test_proba[w], test_proba[k]))
        for k in fitted
        if k != w
    ]
    if incumbent is not None and incumbent.proba is not None:
        diff = _interval(cfg, seed, metric, y, test_proba[w], incumbent.proba)
        margins.append(Margin(w, f"champion v{incumbent.version}", metric, diff))
    n_cv = len(data.y_train) + len(data.y_valid)
    return Uncertainty(cfg, n_cv, per, margins)
