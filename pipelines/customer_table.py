"""The customer-table path: one row per customer with a churn label, described by a mapping in the config.

Where the CDR path builds point-in-time features from an operator's raw records, this path takes a
table an operator (or a public data set) already has, e.g. the IBM Telco sample ``wa_churn``
vendored in ``pipelines/datasets``. The ``source:`` section of the config names the id, the label
(and which value means churn), the numeric and the categorical columns; from that mapping:

- :func:`validate_table` builds a Great Expectations suite and runs it through the same
  :func:`pipelines.validate.run_suite` as the landing export (mapped columns present, id not null
  and unique, label inside the mapping with both values present, numeric columns numeric);
  a failure raises :class:`pipelines.validate.ValidationFailed` naming the column and file;
- :func:`derived` checks the config's derived columns (SQL over the mapped columns) before the
  table is even read, and validation computes them on the table: a bad one raises
  :class:`pipelines.errors.ConfigError` (the CLI exits 2) before anything is tracked;
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
from features.derived import Derived, DerivedColumnError, add_derived, derived_columns
from models.train import TrainResult, train_customer_table
from pipelines.errors import ConfigError, Failure, ValidationFailed
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


def derived(settings: Settings) -> list[Derived]:
    """The config's derived columns, checked against the mapping; a bad one is a ``ConfigError``."""
    try:
        return derived_columns(_config(settings))
    except DerivedColumnError as exc:
        raise ConfigError(f"{settings.config_path}: source.derived_columns: {exc}") from None


def _derived_on(settings: Settings, df: pd.DataFrame) -> dict[str, int]:
    """Compute the derived columns on the validated table (a SQL error on real values is a
    ``ConfigError``); returns how many rows each leaves missing (division by zero, missing inputs)."""
    cfg, cols = _config(settings), derived(settings)
    try:
        out = add_derived(df, cols, cfg.categorical_columns)
    except DerivedColumnError as exc:
        raise ConfigError(f"{settings.config_path}: source.derived_columns: {exc}") from None
    missing = {d.name: int(out[d.name].isna().sum()) for d in cols}
    for d in cols:
        log.info(
            "derived %s (%s) = %s: %d of %d rows missing", d.name, d.kind, d.sql, missing[d.name], len(df)
        )
    return missing


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
    derived(settings)  # a bad derived column is the config's fault: said before the table is read
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
    if not errors:  # numbers are numbers: the derived columns can be computed (or fail) on them
        report["derived_missing_rows"] = _derived_on(settings, df)
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
    derived(settings)  # before anything is read, fitted or tracked
    try:
        result = train_customer_table(settings, validated_table(settings))
    except DerivedColumnError as exc:  # computing them on these rows failed, before any run was tracked
        raise ConfigError(f"{settings.config_path}: source.derived_columns: {exc}") from None
    write_json_atomic(result.report(), settings.reports_dir / "train.json")
    log.info(
        "%s: %s v%s of %s; %s (stratified random %.0f%% split, seed %d, %d customers)%s",
        result.alias,
        result.winner,
        result.version,
        result.registered_model,
        _figures(result),
        100 * cfg.test_fraction,
        cfg.seed,
        result.n_test,
        "; the decision is inside the noise" if result.uncertainty.decision_inside_noise else "",
    )
    return result


def _figures(result: TrainResult) -> str:
    """The winner's held-out figures with their bootstrap intervals and repeated-CV mean ± s.d."""
    u = result.uncertainty
    w, c = u.candidates[result.winner], u.config
    names = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "top_decile_lift": "top-decile lift"}
    held = ", ".join(
        f"{names[m]} {i.text(2 if m == 'top_decile_lift' else 3)}" for m, i in w.intervals.items()
    )
    cv = ", ".join(f"{names[m]} {f.text(2 if m == 'top_decile_lift' else 3)}" for m, f in w.cv.items())
    return (
        f"held out {held} ({c.confidence:.0%} bootstrap CI); {c.cv_folds}-fold x {c.cv_repeats} "
        f"cross-validation of the {u.cv_rows} training customers {cv}"
    )
