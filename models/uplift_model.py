"""What each retention action does to each subscriber, learned from the logged experiments: T/X-learners.

The nightly lists hold out a randomised control group and, with ``retention.explore_share``, give a
random share of work orders a random action; ``churn outcomes`` records who stayed. From those rows
(features as of the list date, the action a work order carried, whether it was worked, whether the
subscriber churned within the horizon) :func:`fit_t_learner` fits one LightGBM classifier of P(churn)
on the control work orders and one on the treated work orders of each action (Kuenzel, Sekhon, Bickel &
Yu 2019, "Metalearners for estimating heterogeneous treatment effects", PNAS: the T-learner). The
estimated uplift of action *a* for a subscriber is P(churn | no contact) - P(churn | contacted with a),
the change in P(stay); its expected net value is uplift x monthly value x ``retention.value_months``
minus the action's mean cost per treated work order in the experiments.

Why not causalml: it is Apache-2.0, but 0.18.0 adds 16 packages to the lock, among them xgboost with
NVIDIA's CUDA library nvidia-nccl-cu12 (GPU code under NVIDIA's own licence terms), black and graphviz;
the two meta-learners on the LightGBM and scikit-learn already locked are about a hundred lines.

:func:`qini_curve` is the evaluation on held-out experiments (Radcliffe 2007, "Using control groups
to target on predicted lift"): work orders sorted by predicted uplift, the cumulative extra stayers
of the treated over the control group scaled to the treated count, against random targeting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier, LGBMRegressor

from core.config import LightGBMConfig

KIND = "t-learner (LightGBM)"
X_KIND = "x-learner (LightGBM)"


@dataclass
class UpliftModel:
    """A control model and one model per action, each of P(churn within the horizon); costs per action."""

    features: list[str]
    control: LGBMClassifier
    treated: dict[str, LGBMClassifier]
    cost: dict[str, float]  # mean cost (CNY) of a treated work order of the action in the experiments
    n_train: dict[str, int] = field(default_factory=dict)  # rows per model ("control" and each action)
    kind: str = KIND
    # X-learner (fit_x_learner): per action, the effect regressors on the control and the treated rows
    # and the share of treated rows g; the uplift is g x tau0(x) + (1 - g) x tau1(x)
    effects: dict[str, tuple[LGBMRegressor, LGBMRegressor, float]] | None = None

    @property
    def actions(self) -> list[str]:
        return list(self.treated)

    def uplift(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per row and action: estimated P(stay | contacted with the action) - P(stay | no contact)."""
        return pd.DataFrame(self.uplift_matrix(X[self.features].to_numpy(dtype=float)), index=X.index)

    def uplift_matrix(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`uplift` of rows already in :attr:`features` order (the endpoint's float matrix)."""
        if self.effects is not None:
            return {
                a: np.clip(g * tau0.predict(x) + (1 - g) * tau1.predict(x), -1, 1)
                for a, (tau0, tau1, g) in self.effects.items()
            }
        p0 = self.control.predict_proba(x)[:, 1]
        return {a: p0 - m.predict_proba(x)[:, 1] for a, m in self.treated.items()}

    def net_value(self, X: pd.DataFrame, value: np.ndarray, value_months: float) -> pd.DataFrame:
        """Per row and action: uplift x monthly ``value`` x ``value_months`` - the action's cost (CNY)."""
        up = self.uplift(X)
        worth = np.nan_to_num(np.asarray(value, dtype=float)) * value_months
        return pd.DataFrame({a: up[a].to_numpy() * worth - self.cost[a] for a in up.columns}, index=X.index)

    def best(self, X: pd.DataFrame, value: np.ndarray, value_months: float) -> Recommendation:
        """Each row's action of highest expected net value, that value and the action's uplift."""
        return self.best_matrix(X[self.features].to_numpy(dtype=float), value, value_months)

    def best_matrix(self, x: np.ndarray, value: np.ndarray, value_months: float) -> Recommendation:
        """:meth:`best` of rows already in :attr:`features` order."""
        up = self.uplift_matrix(x)
        actions = list(up)
        gain = np.column_stack([up[a] for a in actions])
        worth = np.nan_to_num(np.asarray(value, dtype=float)) * value_months
        net = gain * worth[:, None] - np.array([self.cost[a] for a in actions])
        pick = net.argmax(axis=1)
        rows = np.arange(len(net))
        return Recommendation(np.asarray(actions, dtype=object)[pick], net[rows, pick], gain[rows, pick])


@dataclass(frozen=True)
class Recommendation:
    """Per row: the recommended action, its expected net value (CNY) and its estimated uplift."""

    action: np.ndarray
    net_value: np.ndarray
    uplift: np.ndarray


def _lightgbm(kind: type, cfg: LightGBMConfig, seed: int):
    """An LGBMClassifier or LGBMRegressor with the configured trees, one thread, seeded."""
    return kind(
        n_estimators=cfg.n_estimators,
        learning_rate=cfg.learning_rate,
        num_leaves=cfg.num_leaves,
        min_child_samples=cfg.min_child_samples,
        random_state=seed,
        n_jobs=1,
        verbose=-1,
    )


def _classifier(cfg: LightGBMConfig, seed: int) -> LGBMClassifier:
    return _lightgbm(LGBMClassifier, cfg, seed)


def fit_t_learner(
    X: pd.DataFrame,
    action: np.ndarray,
    treated: np.ndarray,
    churned: np.ndarray,
    cost: np.ndarray,
    cfg: LightGBMConfig,
    min_treated: int = 50,
    seed: int = 7,
) -> UpliftModel:
    """One P(churn) model on the control rows (``~treated``) and one per action with at least
    ``min_treated`` treated rows; ``cost`` per row (CNY) gives each action's mean cost."""
    features = list(X.columns)
    x = X.to_numpy(dtype=float)
    action, treated = np.asarray(action, dtype=object), np.asarray(treated, dtype=bool)
    y, cost = np.asarray(churned, dtype=int), np.asarray(cost, dtype=float)
    if (~treated).sum() < min_treated:
        raise ValueError(f"{(~treated).sum()} control work orders: at least {min_treated} are needed")
    control = _classifier(cfg, seed).fit(x[~treated], y[~treated])
    models, costs, n = {}, {}, {"control": int((~treated).sum())}
    for a in sorted(set(action[treated])):
        rows = treated & (action == a)
        if rows.sum() < min_treated:
            continue
        models[a] = _classifier(cfg, seed).fit(x[rows], y[rows])
        costs[a], n[a] = float(cost[rows].mean()), int(rows.sum())
    if not models:
        raise ValueError(f"no action has {min_treated} treated work orders to learn from")
    return UpliftModel(features, control, models, costs, n)


def fit_x_learner(
    X: pd.DataFrame,
    action: np.ndarray,
    treated: np.ndarray,
    churned: np.ndarray,
    cost: np.ndarray,
    cfg: LightGBMConfig,
    min_treated: int = 50,
    seed: int = 7,
) -> UpliftModel:
    """The X-learner (Kuenzel et al. 2019) on top of :func:`fit_t_learner`'s outcome models: per action,
    the imputed effects (on P(stay)) mu0(x) - y of its treated rows and y - mu_a(x) of the control rows,
    each regressed on the features; combined with the treated share g of (treated + control) rows. It
    uses the large control group to sharpen each action's small treated group."""
    t = fit_t_learner(X, action, treated, churned, cost, cfg, min_treated, seed)
    x = X.to_numpy(dtype=float)
    action, treated = np.asarray(action, dtype=object), np.asarray(treated, dtype=bool)
    y = np.asarray(churned, dtype=float)
    p0 = t.control.predict_proba(x)[:, 1]
    effects = {}
    for a, model in t.treated.items():
        rows = treated & (action == a)
        tau1 = _regressor(cfg, seed).fit(x[rows], p0[rows] - y[rows])
        tau0 = _regressor(cfg, seed).fit(x[~treated], y[~treated] - model.predict_proba(x[~treated])[:, 1])
        effects[a] = (tau0, tau1, rows.sum() / (rows.sum() + (~treated).sum()))
    return UpliftModel(t.features, t.control, t.treated, t.cost, t.n_train, X_KIND, effects)


def _regressor(cfg: LightGBMConfig, seed: int) -> LGBMRegressor:
    return _lightgbm(LGBMRegressor, cfg, seed)


LEARNERS = {"t": fit_t_learner, "x": fit_x_learner}


@dataclass(frozen=True)
class QiniCurve:
    """Cumulative extra stayers when targeting the top k work orders by predicted uplift."""

    action: str
    share: np.ndarray  # share of the rows targeted, 0..1
    gain: np.ndarray  # extra stayers, scaled to the treated count (Radcliffe's Qini)
    n_treated: int
    n_control: int

    @property
    def total(self) -> float:
        """The gain of treating everyone (the random line ends there)."""
        return float(self.gain[-1])

    @property
    def coefficient(self) -> float:
        """Area between the curve and the random line, per held-out work order: 0 for a random order,
        above 0 when the model puts those the action moves first (comparable on the same rows only)."""
        n = self.n_treated + self.n_control
        return float(np.trapezoid(self.gain - self.share * self.total, self.share) / max(n, 1))


def qini_curve(score, treated, stayed, action: str = "all") -> QiniCurve:
    """Radcliffe's Qini curve of ``score`` (predicted uplift) on held-out experiment rows."""
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    t = np.asarray(treated, dtype=bool)[order]
    s = np.asarray(stayed, dtype=bool)[order]
    nt, nc = np.cumsum(t), np.cumsum(~t)
    st, sc = np.cumsum(t & s), np.cumsum(~t & s)
    gain = st - np.divide(sc * nt, nc, out=np.zeros(len(t)), where=nc > 0)
    share = np.arange(1, len(t) + 1) / max(len(t), 1)
    return QiniCurve(action, np.r_[0.0, share], np.r_[0.0, gain], int(t.sum()), int((~t).sum()))


def qini_by_action(model: UpliftModel, X: pd.DataFrame, rows: pd.DataFrame) -> Mapping[str, QiniCurve]:
    """Per action of ``model``: the Qini curve of its predicted uplift on the held-out work orders that
    carried it or were held out (``rows``: ``action``, ``treated``, ``churned``, aligned with ``X``)."""
    up = model.uplift(X)
    treated = rows["treated"].to_numpy(dtype=bool)
    stayed = ~rows["churned"].to_numpy(dtype=bool)
    out = {}
    for a in model.actions:
        keep = ~treated | (rows["action"].to_numpy() == a)
        out[a] = qini_curve(up[a].to_numpy()[keep], treated[keep], stayed[keep], a)
    return out
