"""The customer-table path's data: labels, categorical vocabularies, the hold-out split, the version.

A customer table has one row per customer and a churn label, described by the config's ``source:``
mapping; ``pipelines/customer_table.py`` validates it, ``models/train.py`` trains on it. Its derived
columns (SQL over the mapped columns) are ``features/derived.py``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from core.config import CustomerTableConfig
from core.io import content_hash
from features.derived import Derived


def fingerprint(cfg: CustomerTableConfig) -> str:
    """Content hash of the table file: the data version logged with every run."""
    return content_hash(cfg.file)


def labels(df: pd.DataFrame, cfg: CustomerTableConfig) -> np.ndarray:
    """1 for the positive (churn) label value, 0 otherwise."""
    return (df[cfg.label_column].astype(str) == str(cfg.positive_label)).to_numpy(dtype=int)


def categories(
    df: pd.DataFrame, cfg: CustomerTableConfig, derived: Sequence[Derived] = ()
) -> dict[str, list[str]]:
    """Categorical column (mapped or derived) -> its values in the table (as text, sorted): the models'
    fixed vocabulary."""
    return {c: sorted(df[c].dropna().astype(str).unique().tolist()) for c in model_columns(cfg, derived)[1]}


def split(df: pd.DataFrame, cfg: CustomerTableConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified random hold-out of ``test_fraction`` with ``seed`` (the table has no time to split on)."""
    train, test = train_test_split(
        df, test_size=cfg.test_fraction, stratify=labels(df, cfg), random_state=cfg.seed
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def model_columns(cfg: CustomerTableConfig, derived: Sequence[Derived]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) model columns: the mapped ones, then the derived ones of each kind."""
    return (
        [*cfg.numeric_columns, *(d.name for d in derived if d.kind == "numeric")],
        [*cfg.categorical_columns, *(d.name for d in derived if d.kind == "categorical")],
    )
