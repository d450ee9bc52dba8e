"""What training reads: the rows split into train / validation / test, and how they are described.

Two paths fill a :class:`TrainingSet`: the CDR path splits Feast's point-in-time rows out of time
(:func:`split_out_of_time`), the customer-table path holds out a stratified random share. At operator
scale the training rows are then cut to ``training.sample_rows`` by :func:`sample_training_set`, a
stratified sample (per snapshot and label) that leaves the validation and test rows whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Settings
from core.io import content_hash
from features.derived import Derived


def data_version(*paths: Path) -> str:
    """Content hash of the training inputs, logged with every run."""
    return content_hash(*paths)


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
    ts = frame["event_timestamp"]
    train_snaps, valid_t, test_t = split_snapshots(sorted(ts.unique()), settings)
    return (
        frame[ts.isin(train_snaps)].reset_index(drop=True),
        frame[ts == valid_t].reset_index(drop=True),
        frame[ts == test_t].reset_index(drop=True),
    )


def split_snapshots(snaps: list, settings: Settings) -> tuple[list, object, object]:
    """The rule of :func:`split_out_of_time` on the sorted snapshot times alone: (train snapshots,
    validation snapshot, test snapshot). Every row of a snapshot shares its time, so the Spark engine
    splits its lazy frame with the same answer (``pipelines.training``)."""
    if settings.features is None:
        raise ValueError("the CDR path needs a features: section in the config")
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
    train = [t for t in snaps if t + horizon <= valid_t]
    if not train:
        raise ValueError(
            f"no training snapshot ends its {horizon.days}-day label window before the validation snapshot "
            f"{pd.Timestamp(valid_t).date()}: add earlier features.snapshots"
        )
    return train, valid_t, test_t


@dataclass(frozen=True)
class TrainingSet:
    """What training needs from either path: the split, the columns and how to describe them.

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
    split: str  # the split in one line, for reports/train.json
    population: str = "subscribers"
    categories: dict[str, list[str]] = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    source: str | None = None  # the customer table's name; None on the CDR path
    value_test: np.ndarray | None = None  # per test row: what losing it costs (monthly revenue), if known
    ids_test: np.ndarray | None = None  # subscriber ids of the test rows, if known
    # per training row, aligned with X_train: subscriber_id and event_timestamp (its snapshot), if known;
    # the snapshot stratifies the sample, the keys name the sampled rows on the MLflow run
    keys_train: pd.DataFrame | None = None
    sample: TrainingSample | None = None  # how X_train was sampled (sample_training_set), once it was
    derived: tuple[
        Derived, ...
    ] = ()  # a customer table's derived columns (in features, computed by the model)

    @property
    def title(self) -> str:
        return f"{self.held_out} ({len(self.y_test)} {self.population}, {int(self.y_test.sum())} churners)"


@dataclass(frozen=True)
class TrainingSample:
    """A stratified sample of the training rows, as recorded on the MLflow run."""

    requested: int | None  # training.sample_rows; None: all rows
    seed: int
    strata: tuple[str, ...]  # the columns the rows were stratified by
    n_strata: int
    rows_total: int
    rows_sampled: int
    churn_rate_total: float
    churn_rate_sampled: float

    @property
    def fraction(self) -> float:
        return self.rows_sampled / self.rows_total if self.rows_total else 1.0

    def params(self) -> dict:
        """The MLflow params of the sample (logged on the parent run and every candidate's run)."""
        return {
            "sample_rows": "all" if self.requested is None else self.requested,
            "sample_seed": self.seed,
            "sample_strata": ",".join(self.strata),
            "train_rows_total": self.rows_total,
            "train_rows_sampled": self.rows_sampled,
            "train_sample_fraction": round(self.fraction, 6),
            "train_churn_rate_total": round(self.churn_rate_total, 6),
            "train_churn_rate_sampled": round(self.churn_rate_sampled, 6),
        }


def stratified_positions(strata: pd.DataFrame, n_rows: int | None, seed: int) -> np.ndarray:
    """Positions (sorted) of ``n_rows`` rows drawn without replacement so that every stratum (a distinct
    row of ``strata``) keeps its share: its count is its proportional quota rounded by largest
    remainder, so within one row of it and summing to ``n_rows`` exactly. Seeded: the same strata,
    size and seed give the same rows. ``None`` or at least every row: all positions."""
    total = len(strata)
    if n_rows is None or n_rows >= total:
        return np.arange(total)
    if n_rows <= 0:
        raise ValueError(f"a sample needs a positive number of rows, got {n_rows}")
    codes = strata.groupby(list(strata.columns), sort=True, dropna=False).ngroup().to_numpy()
    sizes = np.bincount(codes)
    alloc = allocate(sizes, n_rows)
    # a random key per row; each stratum keeps its `alloc` smallest keys
    order = np.lexsort((np.random.default_rng(seed).random(total), codes))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(total) - starts[codes[order]]
    return np.sort(order[rank < alloc[codes[order]]])


def allocate(sizes: np.ndarray, n_rows: int) -> np.ndarray:
    """Rows per stratum (``sizes`` in the strata's sorted order): the proportional quota rounded by
    largest remainder, so within one row of it and summing to ``n_rows``. Shared by both engines."""
    quota = n_rows * sizes / sizes.sum()
    alloc = np.floor(quota).astype(np.int64)
    short = n_rows - int(alloc.sum())
    alloc[np.argsort(-(quota - alloc), kind="stable")[:short]] += 1
    return alloc


def _described(
    strata: pd.DataFrame, label: str, pos: np.ndarray, n_rows: int | None, seed: int
) -> TrainingSample:
    y = strata[label].to_numpy()
    return TrainingSample(
        requested=n_rows,
        seed=seed,
        strata=tuple(strata.columns),
        n_strata=len(strata.drop_duplicates()),
        rows_total=len(strata),
        rows_sampled=len(pos),
        churn_rate_total=float(y.mean()) if len(y) else 0.0,
        churn_rate_sampled=float(y[pos].mean()) if len(pos) else 0.0,
    )


def stratified_sample(
    frame: pd.DataFrame,
    n_rows: int | None,
    seed: int,
    label: str = "churned",
    by: Sequence[str] = ("event_timestamp",),
) -> tuple[pd.DataFrame, TrainingSample]:
    """``n_rows`` rows of ``frame`` stratified by ``by`` and ``label`` (see :func:`stratified_positions`);
    every snapshot keeps its share of churners and non-churners. Returns the rows and how they were drawn."""
    strata = frame[[*by, label]]
    pos = stratified_positions(strata, n_rows, seed)
    return frame.iloc[pos].reset_index(drop=True), _described(strata, label, pos, n_rows, seed)


def bound_held_out(data: TrainingSet, eval_rows: int | None, seed: int) -> TrainingSet:
    """``data`` with each held-out part (validation, test) cut to a stratified sample by label of
    ``eval_rows`` (``training.eval_rows``); ``None`` or a part no larger: unchanged. The totals are
    recorded in ``params`` (``valid_rows_total``, ``test_rows_total``)."""
    if eval_rows is None:
        return data
    changes, params = {}, {"eval_rows": eval_rows}
    for part in ("valid", "test"):
        y = np.asarray(getattr(data, f"y_{part}"))
        params[f"{part}_rows_total"] = len(y)
        pos = stratified_positions(pd.DataFrame({"churned": y}), eval_rows, seed)
        if len(pos) == len(y):
            continue
        changes[f"X_{part}"] = getattr(data, f"X_{part}").iloc[pos].reset_index(drop=True)
        changes[f"y_{part}"] = y[pos]
        params[f"n_{part}"] = len(pos)
        if part == "test":
            changes["value_test"] = None if data.value_test is None else np.asarray(data.value_test)[pos]
            changes["ids_test"] = None if data.ids_test is None else np.asarray(data.ids_test)[pos]
    return replace(data, params=data.params | params, **changes)


def sample_training_set(data: TrainingSet, n_rows: int | None, seed: int) -> TrainingSet:
    """``data`` with its training rows cut to a stratified sample of ``n_rows`` (label, and snapshot when
    ``keys_train`` has it); the validation and test rows stay whole, so every size is judged on the
    same held-out rows. ``None`` keeps every row (and still records the sample, as all of them)."""
    strata = pd.DataFrame({"churned": np.asarray(data.y_train)})
    if data.keys_train is not None and "event_timestamp" in data.keys_train:
        strata.insert(0, "event_timestamp", data.keys_train["event_timestamp"].to_numpy())
    pos = stratified_positions(strata, n_rows, seed)
    sample = _described(strata, "churned", pos, n_rows, seed)
    if len(pos) == len(strata):  # every row: no copy
        return replace(data, sample=sample)
    keys = data.keys_train.iloc[pos].reset_index(drop=True) if data.keys_train is not None else None
    return replace(
        data,
        X_train=data.X_train.iloc[pos].reset_index(drop=True),
        y_train=np.asarray(data.y_train)[pos],
        keys_train=keys,
        sample=sample,
        params=data.params | {"n_train": len(pos)},
    )
