"""What training reads: the rows split into train / validation / test, and how they are described.

Two paths fill a :class:`TrainingSet`: the CDR path splits Feast's point-in-time rows out of time
(:func:`split_out_of_time`), the customer-table path holds out a stratified random share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Settings
from core.io import content_hash


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

    @property
    def title(self) -> str:
        return f"{self.held_out} ({len(self.y_test)} {self.population}, {int(self.y_test.sum())} churners)"
