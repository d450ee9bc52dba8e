"""The customer-table path: one row per customer with a churn label, described by a mapping in the config.

Where the CDR path builds point-in-time features from an operator's raw records, this path takes a
table an operator (or a public data set) already has, e.g. the IBM Telco sample ``wa_churn``
vendored in ``pipelines/datasets``. The ``source:`` section of the config names the id, the label
(and which value means churn), the numeric and the categorical columns; from that mapping:

- :func:`validate_table` builds a Great Expectations suite and runs it through the same
  :func:`pipelines.validate.run_suite` as the landing export (mapped columns present, id not null
  and unique, label inside the mapping with both values present, numeric columns numeric);
  a failure raises :class:`pipelines.validate.ValidationFailed` naming the column and file;
- ``features.customer_table.split`` holds out a stratified random share (the table has no time dimension, so no
  out-of-time test is possible);
- :func:`train_stage` validates, then trains through :mod:`models.train`
  (candidates, MLflow parent and child runs, registration, ``champion`` alias). Nothing is
  tracked or registered unless the table passes validation.

Docs: ``docs/real-data.md``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd

from core.config import CustomerTableConfig, Settings
from core.io import write_json_atomic
from features.customer_table import fingerprint, labels
from models.train import TrainResult, train_customer_table
from pipelines.errors import Failure, ValidationFailed
from pipelines.validate import run_suite

log = logging.getLogger(__name__)

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

TABLE = "customer_table"


@dataclass(frozen=True)
class TableValidation:
    table: str
    rows: int
    success: bool = True


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
        raise ValidationFailed([Failure(TABLE, str(path), "file_exists", None, "customer table not found")])
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def _suite(cfg: CustomerTableConfig):
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


def validate_table(settings: Settings, df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Validate the mapped table; return it, or raise ``ValidationFailed`` (report in ``reports/``)."""
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


def validated_table(settings: Settings) -> pd.DataFrame:
    """The table, validated now unless the last passing report covers this very file (``churn run``
    has just validated it)."""
    report = settings.reports_dir / "validation.json"
    cfg = _config(settings)
    if report.exists():
        last = json.loads(report.read_text())
        if (
            last.get("success")
            and last.get("file") == str(cfg.file)
            and last.get("data_version") == fingerprint(cfg)
        ):
            log.info("%s: validated before (%s), not re-checked", cfg.name, report)
            return read_table(cfg)
    return validate_table(settings)


# Stage functions (pipelines.stages picks them when the config has a source: section) ----------------
def validate_stage(settings: Settings) -> TableValidation:
    df = validate_table(settings)
    return TableValidation(_config(settings).name, len(df))


def train_stage(settings: Settings) -> TrainResult:
    """Validate, split, train, track and register; writes ``reports/train.json``."""
    cfg = _config(settings)
    result = train_customer_table(settings, validated_table(settings))
    write_json_atomic(result.report(), settings.reports_dir / "train.json")
    best = result.candidates[result.winner].metrics
    log.info(
        "%s: %s v%s of %s; held-out ROC-AUC %.3f, PR-AUC %.3f, top-decile lift %.2f "
        "(stratified random %.0f%% split, seed %d, %d customers)",
        result.alias,
        result.winner,
        result.version,
        result.registered_model,
        best["roc_auc"],
        best["pr_auc"],
        best["top_decile_lift"],
        100 * cfg.test_fraction,
        cfg.seed,
        result.n_test,
    )
    return result
