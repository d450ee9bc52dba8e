"""What the work orders of a nightly list led to: the ``work_order_outcomes`` landing table.

One file per list date (``data/outcomes/work_order_outcomes/list_date=D.parquet``), one row per work
order: list date, subscriber, group (treatment or control), the action it carried, whether the
subscriber was reached, whether they accepted the offer, its cost (CNY; ``cost`` = ``contact_cost`` +
``offer_cost``), whether they churned within the horizon and when. An operator's work-order and billing systems export it; on simulated data
``churn outcomes --simulate`` plays the list forward with the simulator's truth
(:mod:`pipelines.treatment`) and writes what those systems would.

Like every landing table it passes a Great Expectations suite before anything reads it
(:func:`check_outcomes`): outcomes of work orders the list never held, churn dates before the list
date, an outcome twice, a control subscriber recorded as contacted, or a column of the wrong kind
raise :class:`ValidationFailed` naming the file, the check and example rows; a bad file is never
written and never evaluated.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd

from core.config import Settings
from core.io import write_parquet_atomic
from pipelines import treatment
from pipelines.errors import Failure, ValidationFailed, WarnError
from pipelines.validate import run_suite

log = logging.getLogger(__name__)

TABLE = "work_order_outcomes"
COLUMNS = [
    "list_date",
    "subscriber_id",
    "group",
    "action",
    "contacted",
    "offer_accepted",
    "cost",
    "contact_cost",
    "offer_cost",
    "churned",
    "churn_date",
]
KINDS = {
    "list_date": "timestamp",
    "churn_date": "timestamp",
    "cost": "number",
    "contact_cost": "number",
    "offer_cost": "number",
    "contacted": "true/false",
    "offer_accepted": "true/false",
    "churned": "true/false",
}
# helper columns the suite expects empty: the subscriber id of each row that breaks the rule
UNKNOWN, EARLY, CONTACTED_CONTROL = "unknown_work_order", "churn_before_list_date", "control_contacted"


@dataclass(frozen=True)
class OutcomesResult:
    """One list's outcomes as written: where, and the raw counts per group."""

    date: dt.date
    path: Path
    orders: int
    treated: int
    control: int
    churned_treated: int
    churned_control: int
    cost: float

    def headline(self) -> str:
        return (
            f"{self.orders:,} work-order outcomes of the list of {self.date}: treated {self.treated:,} "
            f"({self.churned_treated:,} churned), control {self.control:,} ({self.churned_control:,} churned), "
            f"cost {self.cost:,.0f} CNY: {self.path}"
        )


def outcome_file(settings: Settings, date: dt.date) -> Path:
    return settings.outcomes_dir / f"list_date={date}.parquet"


def parse_date(date: dt.date | str) -> dt.date:
    if isinstance(date, dt.date):
        return date
    try:
        return dt.date.fromisoformat(str(date).strip())
    except ValueError:
        raise WarnError(f"--date {date!r} is not a date (YYYY-MM-DD)") from None


def read_list(settings: Settings, date: dt.date) -> pd.DataFrame:
    """The work orders of the list of ``date``, with their control-group assignment."""
    path = settings.workdir / "warnings" / str(date) / "warnings.parquet"
    if not path.exists():
        raise WarnError(f"no nightly list for {date} ({path}): run `churn warn --date {date}` first")
    orders = pd.read_parquet(path).drop(columns=["reasons"])
    if "group" not in orders:
        raise WarnError(f"{path} has no control-group assignment (written before retention.control_share)")
    return orders


def simulate_outcomes(settings: Settings, date: dt.date | str) -> OutcomesResult:
    """Play the list of ``date`` forward with the simulator's truth and write its outcome records."""
    date = parse_date(date)
    orders = read_list(settings, date)
    try:
        state = treatment.state_on(treatment.read_intents(settings), date, settings)
        played = treatment.play_forward(
            orders.assign(action=orders["planned_action_code"]), state, date, settings
        )
    except (FileNotFoundError, ValueError) as exc:
        raise WarnError(f"cannot simulate outcomes of the list of {date}: {exc}") from exc
    records = pd.concat(
        [
            pd.DataFrame(
                {
                    "list_date": pd.Timestamp(date),
                    "subscriber_id": orders["subscriber_id"].to_numpy(),
                    "group": orders["group"].to_numpy(),
                    "action": orders["action_code"].to_numpy(),
                }
            ),
            played,
        ],
        axis=1,
    )[COLUMNS]
    path = outcome_file(settings, date)
    check_outcomes(records, orders, settings, f"simulated outcomes for {path}")
    write_parquet_atomic(records, path)
    return summarise(records, date, path)


def summarise(records: pd.DataFrame, date: dt.date, path: Path) -> OutcomesResult:
    t, c = records["group"] == "treatment", records["group"] == "control"
    return OutcomesResult(
        date=date,
        path=path,
        orders=len(records),
        treated=int(t.sum()),
        control=int(c.sum()),
        churned_treated=int(records.loc[t, "churned"].sum()),
        churned_control=int(records.loc[c, "churned"].sum()),
        cost=float(records["cost"].sum()),
    )


def load_outcomes(settings: Settings, date: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The list of ``date`` and its checked outcome records (:func:`check_outcomes`)."""
    orders = read_list(settings, date)
    path = outcome_file(settings, date)
    if not path.exists():
        raise WarnError(
            f"no work-order outcomes for the list of {date} ({path}): the work-order system's export, "
            f"or `churn outcomes --simulate --date {date}` on simulated data"
        )
    records = pd.read_parquet(path)
    check_outcomes(records, orders, settings, str(path))
    return orders, records


def check_outcomes(records: pd.DataFrame, orders: pd.DataFrame, settings: Settings, file: str) -> None:
    """The landing table's suite; raises :class:`ValidationFailed` naming every problem."""
    failures = _kind_failures(records, file)
    if not failures:
        failures = run_suite(_with_rule_columns(records, orders), _suite, TABLE, file, COLUMNS)
    if failures:
        raise ValidationFailed(failures)


def _kind_failures(records: pd.DataFrame, file: str) -> list[Failure]:
    """Missing columns and columns of the wrong kind: the suite's comparisons would only restate them."""
    missing = [c for c in COLUMNS if c not in records]
    if missing:
        return [
            Failure(TABLE, file, "expect_table_columns_to_include", c, "required column is missing")
            for c in missing
        ]
    test = {
        "timestamp": pd.api.types.is_datetime64_any_dtype,
        "number": pd.api.types.is_numeric_dtype,
        "true/false": pd.api.types.is_bool_dtype,
    }
    return [
        Failure(
            TABLE,
            file,
            "column_type",
            c,
            f"[type] holds {records[c].dtype} where {kind} is expected",
            [str(v) for v in records[c].dropna().head(5)],
        )
        for c, kind in KINDS.items()
        if not test[kind](records[c])
    ]


def _with_rule_columns(records: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """``records`` with one column per rule across rows (the subscriber id where it is broken, else
    null): outcomes of work orders the list does not hold, churn dates before the list date, and
    control subscribers recorded as contacted."""
    out = records.copy()
    ids = out["subscriber_id"].astype(object)
    listed = pd.MultiIndex.from_arrays(
        [pd.to_datetime(orders["feature_date"]).dt.normalize(), orders["subscriber_id"].astype(str)]
    )
    key = pd.MultiIndex.from_arrays([out["list_date"].dt.normalize(), ids.astype(str)])
    out[UNKNOWN] = ids.where(~key.isin(listed))
    out[EARLY] = ids.where(out["churn_date"].notna() & (out["churn_date"] < out["list_date"]))
    out[CONTACTED_CONTROL] = ids.where((out["group"] == "control") & out["contacted"])
    return out


def _suite():
    suite = gx.ExpectationSuite(name=TABLE)
    for e in (
        gxe.ExpectColumnValuesToNotBeNull(column="subscriber_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="list_date"),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["list_date", "subscriber_id"], meta={"check": "duplicate outcomes"}
        ),
        gxe.ExpectColumnValuesToBeNull(column=UNKNOWN, meta={"check": "unknown work orders"}),
        gxe.ExpectColumnValuesToBeNull(column=EARLY, meta={"check": "outcomes before the list date"}),
        gxe.ExpectColumnValuesToBeNull(
            column=CONTACTED_CONTROL, meta={"check": "control subscriber contacted"}
        ),
        gxe.ExpectColumnValuesToBeInSet(column="group", value_set=["treatment", "control"]),
        gxe.ExpectColumnValuesToBeBetween(column="cost", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="contact_cost", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="offer_cost", min_value=0),
    ):
        suite.add_expectation(e)
    return suite
