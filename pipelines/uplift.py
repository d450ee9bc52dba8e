"""``churn uplift``: learn what each action does to whom from the logged experiments, and register it.

The experiments are the nightly lists whose outcomes are in (``churn outcomes``): every work order
with its group (treatment or control), the action it carried (``planned_action_code``: the reasons'
action, or a random one for ``retention.explore_share`` of them), and whether the subscriber churned
within the horizon. The features are the list date's rows from the same ``compute_features`` the
churn model and the nightly list read. Subscribers are split by a keyed hash
(``retention.uplift.holdout_share``): the model (:mod:`models.uplift_model`, a T- or X-learner per
action, ``retention.uplift.learner``) is fitted on the rest and judged on them by Qini curves, one per action.

The fit is logged to MLflow (params, Qini coefficients, the figure) and registered as a new version
of the uplift model (``<mlflow.registered_model>-uplift``). It takes ``@champion`` when there is none
or when its mean Qini coefficient beats the champion's on the *same* held-out work orders, else
``@challenger`` (:func:`models.champion.decide`, the churn models' rule). ``uplift/<label>/`` gets
``uplift.json`` and ``qini.png``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from core.config import Settings
from core.hashing import hash_uniform
from core.io import write_json_atomic
from features import engine
from features.catalogue import FEATURE_NAMES
from models.champion import CHALLENGER, CHAMPION, Decision, Incumbent, decide
from models.plots import plt
from models.registry import UpliftPyfunc, load_uplift, uplift_model_name, use_tracking
from models.uplift_model import LEARNERS, QiniCurve, UpliftModel, qini_by_action
from pipelines.errors import WarnError
from pipelines.evaluate import list_dates
from pipelines.outcomes import load_outcomes, outcome_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Experiments:
    """The logged experiments, one row per work order with an outcome: its features (``X``) and
    ``rows`` (list_date, subscriber_id, action, treated, churned, cost, value_at_stake, holdout)."""

    X: pd.DataFrame = field(repr=False)
    rows: pd.DataFrame = field(repr=False)
    dates: list[dt.date]

    def part(self, holdout: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
        keep = self.rows["holdout"].to_numpy() == holdout
        return self.X[keep].reset_index(drop=True), self.rows[keep].reset_index(drop=True)


def experiments(settings: Settings, dates: list[dt.date]) -> Experiments:
    """Every listed work order with an outcome on ``dates``, joined to its features as of the list date."""
    xs, rows, used = [], [], []
    for d in dates:
        if not outcome_file(settings, d).exists():
            continue
        orders, records = load_outcomes(settings, d)
        feats, _ = engine.compute_features(settings.raw_dir, [d], settings)
        keep = orders[["subscriber_id", "planned_action_code", "value_at_stake"]]
        part = records.merge(keep, on="subscriber_id", how="inner").merge(
            feats[["subscriber_id", *FEATURE_NAMES]], on="subscriber_id", how="inner"
        )
        xs.append(part[FEATURE_NAMES])
        rows.append(
            pd.DataFrame(
                {
                    "list_date": pd.Timestamp(d),
                    "subscriber_id": part["subscriber_id"].to_numpy(),
                    "action": part["planned_action_code"].to_numpy(),
                    "treated": (part["group"] == "treatment").to_numpy(),
                    "churned": part["churned"].to_numpy(dtype=bool),
                    "cost": part["cost"].to_numpy(dtype=float),
                    "value_at_stake": part["value_at_stake"].to_numpy(dtype=float),
                }
            )
        )
        used.append(d)
    if not used:
        raise WarnError(
            f"no work-order outcomes for any list in {dates[0]}..{dates[-1]}: nothing to learn from"
        )
    out = pd.concat(rows, ignore_index=True)
    cfg = settings.retention.uplift
    out["holdout"] = hash_uniform(out["subscriber_id"], cfg.holdout_salt) < cfg.holdout_share
    return Experiments(pd.concat(xs, ignore_index=True), out, used)


@dataclass(frozen=True)
class UpliftResult:
    """What ``churn uplift`` fitted, how it scored on the held-out experiments, and where it went."""

    label: str
    dates: list[dt.date]
    n_train: dict[str, int]
    n_holdout: int
    cost: dict[str, float]
    qini: dict[str, float]  # per action: Qini coefficient on the held-out work orders
    qini_mean: float  # weighted by each action's held-out treated work orders: the selection score
    folder: Path
    version: str | None = None
    alias: str | None = None
    decision: str | None = None
    previous_qini: float | None = None
    run_id: str | None = None

    def headline(self) -> str:
        per = ", ".join(f"{a} {q:+.4f}" for a, q in self.qini.items())
        reg = "" if self.version is None else f"; v{self.version} @{self.alias} ({self.decision})"
        return (
            f"uplift model from {sum(self.n_train.values()):,} work orders of {len(self.dates)} list(s) "
            f"{self.label}; Qini on {self.n_holdout:,} held-out: mean {self.qini_mean:+.4f} ({per}){reg}: "
            f"{self.folder}"
        )


def mean_qini(curves: dict[str, QiniCurve]) -> float:
    """The actions' Qini coefficients weighted by their held-out treated work orders."""
    w = np.array([c.n_treated for c in curves.values()], dtype=float)
    q = np.array([c.coefficient for c in curves.values()])
    return float((w * q).sum() / w.sum()) if w.sum() else float("nan")


def fit_uplift(
    settings: Settings,
    date: str | dt.date | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    register: bool = True,
) -> UpliftResult:
    """Fit the uplift model on the experiments of the list(s), judge it on the held-out ones, register it."""
    dates = list_dates(settings, date, date_from, date_to)
    ex = experiments(settings, dates)
    (X, rows), (Xh, held) = ex.part(False), ex.part(True)
    cfg = settings.retention.uplift
    try:
        model = LEARNERS[cfg.learner](
            X, rows["action"], rows["treated"], rows["churned"], rows["cost"], cfg.lightgbm,
            cfg.min_treated, settings.training.seed,
        )  # fmt: skip
    except ValueError as exc:
        raise WarnError(f"cannot fit the uplift model: {exc}") from exc
    curves = dict(qini_by_action(model, Xh, held))
    label = str(ex.dates[0]) if len(ex.dates) == 1 else f"{ex.dates[0]}_{ex.dates[-1]}"
    result = UpliftResult(
        label, ex.dates, model.n_train, len(held), model.cost,
        {a: c.coefficient for a, c in curves.items()}, mean_qini(curves), Path(),
    )  # fmt: skip
    if register:
        result = _register(settings, model, result, curves, Xh, held)
    folder = _write(settings, result, curves)
    result = _replace(result, folder=folder)
    log.info("%s", result.headline())
    return result


def _replace(result: UpliftResult, **changes) -> UpliftResult:
    return UpliftResult(**{**asdict(result), **changes})


def _incumbent(settings: Settings, Xh: pd.DataFrame, held: pd.DataFrame) -> Incumbent | None:
    """The registered champion scored on this run's held-out work orders (None: no champion)."""
    try:
        loaded = load_uplift(settings)
    except MlflowException:
        return None
    try:
        return Incumbent(
            loaded.version, loaded.model.kind, mean_qini(dict(qini_by_action(loaded.model, Xh, held)))
        )
    except Exception as exc:  # a champion that cannot score today's rows cannot stay champion
        return Incumbent(loaded.version, error=str(exc))


def _register(
    settings: Settings,
    model: UpliftModel,
    result: UpliftResult,
    curves: dict[str, QiniCurve],
    Xh: pd.DataFrame,
    held: pd.DataFrame,
) -> UpliftResult:
    """An MLflow run ``uplift <label>``, a new registered version, and the alias :func:`decide` names."""
    client = use_tracking(settings)
    name = uplift_model_name(settings)
    incumbent = _incumbent(settings, Xh, held)
    decision: Decision = decide({"t_learner": result.qini_mean}, incumbent)
    exp = client.get_experiment_by_name(settings.mlflow.experiment)
    exp_id = (
        exp.experiment_id
        if exp
        else client.create_experiment(
            settings.mlflow.experiment, artifact_location=settings.artifact_root.resolve().as_uri()
        )
    )
    with mlflow.start_run(experiment_id=exp_id, run_name=f"uplift {result.label}") as run:
        mlflow.log_params(
            {
                "learner": model.kind,
                "learner_key": settings.retention.uplift.learner,
                "dates": ",".join(str(d) for d in result.dates),
                "holdout_share": settings.retention.uplift.holdout_share,
                **{f"lgbm_{k}": v for k, v in settings.retention.uplift.lightgbm.model_dump().items()},
                **{f"n_{k}": v for k, v in model.n_train.items()},
            }
        )
        mlflow.log_metrics(
            {"qini_mean": result.qini_mean, **{f"qini_{a}": q for a, q in result.qini.items()}}
        )
        fig = qini_figure(curves, result.label)
        mlflow.log_figure(fig, "uplift/qini.png")
        plt.close(fig)
        info = mlflow.pyfunc.log_model(name="model", python_model=UpliftPyfunc(model), pip_requirements=[])
    mv = mlflow.register_model(info.model_uri, name)
    client.set_model_version_tag(name, mv.version, "qini_mean", f"{result.qini_mean:.5f}")
    client.set_model_version_tag(name, mv.version, "decision", decision.reason)
    client.set_registered_model_alias(name, decision.alias, mv.version)
    if decision.promote:
        try:
            if str(client.get_model_version_by_alias(name, CHALLENGER).version) != str(mv.version):
                client.delete_registered_model_alias(name, CHALLENGER)
        except MlflowException:  # no challenger
            pass
    return _replace(
        result,
        version=str(mv.version),
        alias=CHAMPION if decision.promote else CHALLENGER,
        decision=decision.reason,
        previous_qini=decision.previous_score,
        run_id=run.info.run_id,
    )


def qini_figure(curves: dict[str, QiniCurve], label: str):
    """One panel per action: the Qini curve of the model and the random line, on held-out experiments."""
    n = len(curves)
    cols = min(n, 3)
    fig, axes = plt.subplots(
        (n + cols - 1) // cols, cols, figsize=(4.2 * cols, 3.4 * ((n + cols - 1) // cols))
    )
    axes = np.atleast_1d(axes).ravel()
    for ax, (a, c) in zip(axes, curves.items(), strict=False):
        ax.plot(c.share, c.gain, color="#c33", label=f"model (Qini {c.coefficient:+.4f})")
        ax.plot([0, 1], [0, c.total], ls="--", color="#888", label="random")
        ax.axhline(0, color="#666", lw=0.6)
        ax.set(title=f"{a} ({c.n_treated:,} treated, {c.n_control:,} control)", xlabel="share targeted")
        ax.set_ylabel("extra stayers")
        ax.legend(fontsize=7)
    for ax in axes[n:]:
        ax.axis("off")
    fig.suptitle(f"Qini curves on held-out experiments, lists {label}", fontsize=10)
    fig.tight_layout()
    return fig


def _write(settings: Settings, result: UpliftResult, curves: dict[str, QiniCurve]) -> Path:
    folder = settings.workdir / "uplift" / result.label
    folder.mkdir(parents=True, exist_ok=True)
    fig = qini_figure(curves, result.label)
    fig.savefig(folder / "qini.png", dpi=90)
    plt.close(fig)
    doc = asdict(result) | {"dates": [str(d) for d in result.dates], "folder": str(folder)}
    write_json_atomic(doc, folder / "uplift.json")
    return folder
