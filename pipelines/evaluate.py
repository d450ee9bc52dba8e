"""``churn evaluate``: did the nightly lists save anyone, with which action, for which cause, at what cost.

For the list of a date D (or every list from ``--from`` to ``--to`` that has outcomes) the checked
work-order outcomes (:mod:`pipelines.outcomes`) are joined to the list: the action the reasons
suggested (``planned_action_code``; control work orders keep it, so like is compared with like), the
predicted cause (the top reason's code) and the VIP tier. Per group: retention of the contacted vs
the control group and the uplift with Newcombe's interval (:mod:`models.uplift`), saying plainly
when a group is too small to conclude anything; the money in CNY: value retained (uplift x the
treated subscribers' monthly value x ``retention.value_months``), contact and offer cost, net and
ROI. On simulated data the true uplift of the same work orders (:mod:`pipelines.treatment`) stands
beside each estimate.

Everything is computed before anything is written; the report (``evaluation.json``, ``report.html``
with its figures) is swapped into ``evaluations/<D>/`` (or ``<from>_<to>``) in one rename, so a bad
outcome file leaves the previous evaluation as it was. The figures and headline numbers go to an
MLflow run ``evaluate <D>``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Settings
from models.uplift import Uplift, uplift
from pipelines import evaluate_report as report
from pipelines import treatment
from pipelines.errors import WarnError
from pipelines.outcomes import load_outcomes, outcome_file, parse_date

log = logging.getLogger(__name__)

DIMENSIONS = {"action": "planned_action_code", "predicted cause": "reason_1_code", "VIP tier": "vip_tier"}


@dataclass(frozen=True)
class Money:
    """What the contacted work orders of a group cost and (by the estimated uplift) brought, in CNY."""

    value_retained: float  # uplift x value of the treated (monthly value x value_months)
    value_retained_low: float
    value_retained_high: float
    contact_cost: float
    offer_cost: float
    net: float
    roi: float  # net / cost (NaN without cost)


@dataclass(frozen=True)
class Estimate:
    """One group's experiment: its uplift, the truth beside it (simulated data) and the money."""

    dimension: str
    value: str
    uplift: Uplift
    money: Money
    true_uplift: float | None = None  # mean true individual uplift of the group's work orders
    true_value_retained: float | None = None  # sum over its treated work orders of true uplift x value

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EvaluationResult:
    label: str  # the list date, or "<from>_<to>" of a range: the report's folder name
    dates: list[dt.date]
    folder: Path
    orders: int
    without_outcome: int  # work orders of the evaluated lists with no outcome record
    lists_without_outcomes: list[dt.date]
    overall: Estimate
    groups: list[Estimate] = field(repr=False)
    run_id: str | None = None

    def headline(self) -> str:
        """What the command line prints: :meth:`verdict` and where the report is."""
        return f"{self.verdict()}: {self.folder}"

    def verdict(self) -> str:
        """Retention of both groups, the uplift with its interval (and the truth), the verdict, the money."""
        u, m = self.overall.uplift, self.overall.money
        truth = "" if self.overall.true_uplift is None else f" (true {self.overall.true_uplift:+.3f})"
        return (
            f"{self.orders:,} work orders of {len(self.dates)} list(s) {self.label}: retention treated "
            f"{u.retention_treated:.3f} vs control {u.retention_control:.3f}, uplift {u.uplift:+.3f} "
            f"[{u.low:+.3f}, {u.high:+.3f}]{truth}: {u.verdict}; net {m.net:,.0f} CNY "
            f"(value retained {m.value_retained:,.0f}, cost {m.contact_cost + m.offer_cost:,.0f})"
        )

    def as_json(self) -> dict:
        return {
            "label": self.label,
            "dates": [str(d) for d in self.dates],
            "orders": self.orders,
            "without_outcome": self.without_outcome,
            "lists_without_outcomes": [str(d) for d in self.lists_without_outcomes],
            "overall": self.overall.as_dict(),
            "groups": [g.as_dict() for g in self.groups],
            "mlflow_run_id": self.run_id,
        }


def list_dates(settings: Settings, date, date_from, date_to) -> list[dt.date]:
    """The list dates to evaluate: ``date``, or every list from ``date_from`` to ``date_to``."""
    if date is not None:
        if date_from or date_to:
            raise WarnError("give --date or --from/--to, not both")
        return [parse_date(date)]
    if not (date_from and date_to):
        raise WarnError("give --date D, or --from D1 --to D2")
    lo, hi = parse_date(date_from), parse_date(date_to)
    root = settings.workdir / "warnings"
    found = []
    for p in sorted(root.glob("????-??-??")) if root.exists() else []:
        try:
            d = dt.date.fromisoformat(p.name)
        except ValueError:
            continue
        if lo <= d <= hi and (p / "warnings.parquet").exists():
            found.append(d)
    if not found:
        raise WarnError(f"no nightly list from {lo} to {hi} in {root}")
    return found


def experiment_rows(settings: Settings, dates: list[dt.date]) -> tuple[pd.DataFrame, int, list[dt.date]]:
    """One row per work order with an outcome, over ``dates``: the list's columns, the outcome, and the
    true uplift of its planned action when the simulator's truth is there. Also the work orders with no
    outcome, and the lists with no outcome file (skipped in a range; an error for a single date)."""
    frames, missing, skipped = [], 0, []
    for d in dates:
        if len(dates) > 1 and not outcome_file(settings, d).exists():
            skipped.append(d)
            continue
        orders, records = load_outcomes(settings, d)
        keep = ["subscriber_id", "planned_action_code", "reason_1_code", "vip_tier", "value_at_stake"]
        rows = records.merge(orders[keep], on="subscriber_id", how="inner")
        missing += len(orders) - len(rows)
        frames.append(_with_truth(settings, rows, d))
    if not frames:
        raise WarnError(f"no work-order outcomes for any list in {dates[0]}..{dates[-1]}")
    rows = pd.concat(frames, ignore_index=True)
    rows["reason_1_code"] = rows["reason_1_code"].fillna("NONE")
    return rows, missing, skipped


def _with_truth(settings: Settings, rows: pd.DataFrame, date: dt.date) -> pd.DataFrame:
    """``rows`` with ``true_uplift`` of each planned action (NaN without the simulator's truth)."""
    try:
        state = treatment.true_uplift(
            treatment.state_on(treatment.read_intents(settings), date, settings), settings
        )
    except (FileNotFoundError, ValueError):  # real outcomes: there is no truth to compare with
        return rows.assign(true_uplift=np.nan)
    merged = rows[["subscriber_id"]].merge(state, on="subscriber_id", how="left")
    cols = [f"uplift_{a}" for a in rows["planned_action_code"]]
    known = [c in merged.columns for c in cols]
    picked = [merged.at[i, c] if k else np.nan for i, (c, k) in enumerate(zip(cols, known, strict=True))]
    return rows.assign(true_uplift=np.asarray(picked, dtype=float))


def estimate(rows: pd.DataFrame, dimension: str, value: str, settings: Settings) -> Estimate:
    """The experiment of ``rows`` (one group): uplift, money, truth."""
    cfg = settings.retention
    treated = rows["group"].to_numpy() == "treatment"
    stay = ~rows["churned"].to_numpy(dtype=bool)
    u = uplift(stay[treated], stay[~treated], cfg.confidence, cfg.min_group)
    worth = rows["value_at_stake"].to_numpy(dtype=float) * cfg.value_months
    treated_worth = float(np.nansum(worth[treated]))
    contact, offer = (
        float(rows.loc[treated, "contact_cost"].sum()),
        float(rows.loc[treated, "offer_cost"].sum()),
    )
    retained = u.uplift * treated_worth if treated.any() and (~treated).any() else math.nan
    cost = contact + offer
    money = Money(
        value_retained=retained,
        value_retained_low=u.low * treated_worth,
        value_retained_high=u.high * treated_worth,
        contact_cost=contact,
        offer_cost=offer,
        net=retained - cost,
        roi=(retained - cost) / cost if cost else math.nan,
    )
    truth = rows["true_uplift"].to_numpy(dtype=float)
    has_truth = bool(np.isfinite(truth).any())
    return Estimate(
        dimension,
        value,
        u,
        money,
        true_uplift=float(np.nanmean(truth)) if has_truth else None,
        true_value_retained=float(np.nansum(truth[treated] * worth[treated])) if has_truth else None,
    )


def estimates(rows: pd.DataFrame, settings: Settings) -> tuple[Estimate, list[Estimate]]:
    """The whole experiment, then one estimate per action, predicted cause and VIP tier."""
    overall = estimate(rows, "all", "all work orders", settings)
    groups = [
        estimate(part, dimension, str(value), settings)
        for dimension, column in DIMENSIONS.items()
        for value, part in rows.groupby(column, sort=True)
    ]
    return overall, groups


def evaluate(
    settings: Settings,
    date: str | dt.date | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    log_to_mlflow: bool = True,
) -> EvaluationResult:
    """Evaluate the list(s), write the report atomically, log it to MLflow; see the module docstring."""
    dates = list_dates(settings, date, date_from, date_to)
    rows, missing, skipped = experiment_rows(settings, dates)
    overall, groups = estimates(rows, settings)
    evaluated = [d for d in dates if d not in skipped]
    label = str(dates[0]) if date is not None else f"{parse_date(date_from)}_{parse_date(date_to)}"
    result = EvaluationResult(label, evaluated, Path(), len(rows), missing, skipped, overall, groups)
    if log_to_mlflow:
        result = replace(result, run_id=report.log_run(settings, result, rows))
    result = replace(result, folder=report.write_report(settings, result, rows))
    log.info("%s", result.headline())
    return result
