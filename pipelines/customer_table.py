"""The customer-table path: one row per customer with a churn label, described by a mapping in the config.

Where the CDR path builds point-in-time features from an operator's raw records, this path takes a
table an operator (or a public data set) already has, e.g. the IBM Telco sample ``wa_churn``
vendored in ``pipelines/datasets``. The ``source:`` section of the config names the id, the label
(and which value means churn), the numeric and the categorical columns; from that mapping:

- :func:`validate_table` builds a Great Expectations suite and runs it through the same
  :func:`pipelines.validate.run_suite` as the landing export (mapped columns present, id not null
  and unique, label inside the mapping with both values present, numeric columns numeric);
  a failure raises :class:`pipelines.validate.ValidationFailed` naming the column and file;
- :func:`split` holds out a stratified random share (the table has no time dimension, so no
  out-of-time test is possible);
- :func:`train_stage` validates, then trains through the shared core in :mod:`models.train`
  (candidates, MLflow parent and child runs, registration, ``champion`` alias). Nothing is
  tracked or registered unless the table passes validation.

Docs: ``docs/real-data.md``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os

import numpy as np
import pandas as pd

from core.config import CustomerTableConfig, Settings
from core.io import write_json_atomic

log = logging.getLogger(__name__)

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

TABLE = "customer_table"
# a number as pandas writes or reads it (nulls are not checked by map expectations: they may be missing)
NUMBER = r"^\s*(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|True|False)\s*$"


def _config(settings: Settings) -> CustomerTableConfig:
    if settings.source is None:
        raise ValueError("this config has no source: section (the customer-table path is not configured)")
    return settings.source


def read_table(cfg: CustomerTableConfig) -> pd.DataFrame:
    """The table as delivered: CSV (``.csv`` or ``.csv.gz``) or Parquet, read with pandas only."""
    path = cfg.file
    if not path.exists():
        from pipelines.validate import Failure, ValidationFailed

        raise ValidationFailed([Failure(TABLE, str(path), "file_exists", None, "customer table not found")])
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def _suite(cfg: CustomerTableConfig):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=TABLE)
    add = suite.add_expectation
    add(gxe.ExpectColumnValuesToNotBeNull(column=cfg.id_column, meta={"check": "id"}))
    add(gxe.ExpectColumnValuesToBeUnique(column=cfg.id_column, meta={"check": "one row per customer"}))
    add(gxe.ExpectColumnValuesToNotBeNull(column=cfg.label_column, meta={"check": "label"}))
    labels = [cfg.positive_label, cfg.negative_label]
    add(
        gxe.ExpectColumnValuesToBeInSet(
            column=cfg.label_column, value_set=labels, meta={"check": "label values inside the mapping"}
        )
    )
    add(
        gxe.ExpectColumnDistinctValuesToContainSet(
            column=cfg.label_column, value_set=labels, meta={"check": "both label values present"}
        )
    )
    for c in cfg.numeric_columns:
        add(gxe.ExpectColumnValuesToMatchRegex(column=c, regex=NUMBER, meta={"check": "numeric column"}))
    return suite


def fingerprint(cfg: CustomerTableConfig) -> str:
    """Content hash of the table file: the data version logged with every run."""
    h = hashlib.sha256()
    with open(cfg.file, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def validate_table(settings: Settings, df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Validate the mapped table; return it, or raise ``ValidationFailed`` (report in ``reports/``)."""
    from pipelines.validate import ValidationFailed, run_suite

    cfg = _config(settings)
    df = read_table(cfg) if df is None else df
    file = str(cfg.file)
    required = [cfg.id_column, cfg.label_column, *cfg.features]
    failures = run_suite(df, lambda: _suite(cfg), TABLE, file, required)
    errors = [f for f in failures if getattr(f, "severity", "error") == "error"]
    report = {
        "success": not errors,
        "table": cfg.name,
        "file": file,
        "rows": len(df),
        "data_version": fingerprint(cfg),
        "failures": [str(f) for f in failures],
    }
    (settings.reports_dir / "validation_failed.json").unlink(missing_ok=True)
    write_json_atomic(
        report, settings.reports_dir / ("validation.json" if not errors else "validation_failed.json")
    )
    if errors:
        raise ValidationFailed(errors)
    log.info(
        "validated %s: %d rows, %d numeric + %d categorical columns, churn rate %.3f",
        cfg.name,
        len(df),
        len(cfg.numeric_columns),
        len(cfg.categorical_columns),
        float(labels(df, cfg).mean()),
    )
    return df


def labels(df: pd.DataFrame, cfg: CustomerTableConfig) -> np.ndarray:
    """1 for the positive (churn) label value, 0 otherwise."""
    return (df[cfg.label_column].astype(str) == str(cfg.positive_label)).to_numpy(dtype=int)


def categories(df: pd.DataFrame, cfg: CustomerTableConfig) -> dict[str, list[str]]:
    """Categorical column -> its values in the table (as text, sorted): the models' fixed vocabulary."""
    return {c: sorted(df[c].dropna().astype(str).unique().tolist()) for c in cfg.categorical_columns}


def split(df: pd.DataFrame, cfg: CustomerTableConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified random hold-out of ``test_fraction`` with ``seed`` (the table has no time to split on)."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        df, test_size=cfg.test_fraction, stratify=labels(df, cfg), random_state=cfg.seed
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


# Stage functions (pipelines.stages dispatches here when the config has a source: section) ---------
def validate_stage(settings: Settings) -> dict:
    df = validate_table(settings)
    return {"table": _config(settings).name, "rows": len(df), "success": True}


def train_stage(settings: Settings) -> dict:
    """Validate, split, train, track and register; writes ``reports/train.json``. Returns the decision."""
    from models.train import train_customer_table

    cfg = _config(settings)
    df = validate_table(settings)
    decision = train_customer_table(settings, df)
    best = decision["candidates"][decision["winner"]]
    report = {k: v for k, v in decision.items() if k != "candidates" and not _nan(v)}
    report |= {
        f"{k}_{m}": v[m]
        for k, v in decision["candidates"].items()
        for m in ("roc_auc", "pr_auc", "top_decile_lift")
    }
    write_json_atomic(report, settings.reports_dir / "train.json")
    log.info(
        "champion: %s v%s of %s; held-out ROC-AUC %.3f, PR-AUC %.3f, top-decile lift %.2f "
        "(stratified random %.0f%% split, seed %d, %d customers)",
        decision["winner"],
        decision["version"],
        decision["registered_model"],
        best["roc_auc"],
        best["pr_auc"],
        best["top_decile_lift"],
        100 * cfg.test_fraction,
        cfg.seed,
        decision["n_test"],
    )
    return decision


def run_stage(settings: Settings) -> dict:
    """The whole customer-table path: validate, then train (nothing to generate, ingest or materialise)."""
    return train_stage(settings)


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)
