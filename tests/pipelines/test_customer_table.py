"""The customer-table path's intake: config mapping, the vendored wa_churn table, GX validation, split."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from core.config import REPO_ROOT, load_settings

WA_CONFIG = REPO_ROOT / "configs" / "wa_churn.yaml"
WA_TABLE = REPO_ROOT / "pipelines" / "datasets" / "wa_churn.csv.gz"


def write_wa_config(workdir: Path, source: dict | None = None, **sections) -> Path:
    """configs/wa_churn.yaml pointing at ``workdir``, with ``source`` keys and other sections merged."""
    raw = yaml.safe_load(WA_CONFIG.read_text())
    raw["workdir"] = str(workdir)
    raw["source"] = {**raw["source"], **(source or {})}
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def wa_table() -> pd.DataFrame:
    return pd.read_csv(WA_TABLE)


def test_wa_churn_config_maps_the_table_and_needs_no_cdr_sections():
    s = load_settings(WA_CONFIG)
    assert s.features is None and s.source is not None
    assert s.workdir == REPO_ROOT / "data" / "wa_churn"
    assert s.source.file == WA_TABLE and s.source.file.exists()
    assert s.mlflow.registered_model == "churnwarn_wa_churn"  # the registry name comes from source:
    assert len(s.source.features) == 19 and set(s.source.categorical_columns) <= set(s.source.features)


def test_cdr_config_still_requires_features(tmp_path, make_config):
    path = make_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    del raw["features"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValidationError, match="features"):
        load_settings(path)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"categorical_columns": ["contract", "tenure"]}, "mapped once"),
        ({"numeric_columns": [], "categorical_columns": []}, "at least one"),
        ({"negative_label": "Yes"}, "must differ"),
        ({"id_colum": "x"}, "id_colum"),
    ],
)
def test_bad_mapping_is_rejected(tmp_path, change, needle):
    with pytest.raises(ValidationError, match=needle):
        load_settings(write_wa_config(tmp_path, change))


def test_vendored_wa_churn_is_the_ibm_telco_sample(wa_table):
    assert wa_table.shape == (7043, 21)
    assert wa_table["churn"].value_counts().to_dict() == {"No": 5174, "Yes": 1869}
    assert wa_table["rownames"].is_unique
    assert wa_table["total_charges"].isna().sum() == 11  # customers in their first month, as published
    with gzip.open(WA_TABLE, "rt") as fh:  # plain gzip CSV, readable without pandas too
        assert fh.readline().startswith("rownames,churn,")
    readme = (WA_TABLE.parent / "README.md").read_text()
    assert "MIT" in readme and "modeldata" in readme and "7043" in readme


def test_real_table_passes_validation(tmp_path):
    from pipelines.customer_table import TableValidation
    from pipelines.stages import run_stage, stage_named

    s = load_settings(write_wa_config(tmp_path))
    out = run_stage(stage_named(s, "validate"), s).result  # the config picks the customer-table path
    assert out == TableValidation("wa_churn", 7043, True)
    assert (s.reports_dir / "validation.json").exists()


def _bad(df: pd.DataFrame, case: str) -> tuple[pd.DataFrame, str]:
    df = df.copy()
    if case == "missing mapped column":
        return df.drop(columns=["payment_method"]), "payment_method"
    if case == "null id":
        df["rownames"] = df["rownames"].astype("float64")
        df.loc[17, "rownames"] = None
        return df, "rownames"
    if case == "duplicate id":
        df.loc[5, "rownames"] = df.loc[4, "rownames"]
        return df, "rownames"
    if case == "label outside the mapping":
        df.loc[3, "churn"] = "Maybe"
        return df, "churn"
    if case == "text in a numeric column":
        df["total_charges"] = df["total_charges"].astype(object)
        df.loc[9, "total_charges"] = " "  # how the original IBM export wrote a missing total
        return df, "total_charges"
    if case == "one label value only":
        return df[df["churn"] == "No"], "churn"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "missing mapped column",
        "null id",
        "duplicate id",
        "label outside the mapping",
        "text in a numeric column",
        "one label value only",
    ],
)
def test_bad_table_stops_before_anything_is_tracked_or_registered(tmp_path, wa_table, case):
    from pipelines.customer_table import train_stage
    from pipelines.errors import ValidationFailed
    from pipelines.stages import run_all

    bad, column = _bad(wa_table, case)
    table = tmp_path / "bad_table.csv"
    bad.to_csv(table, index=False)
    s = load_settings(write_wa_config(tmp_path / "work", {"path": str(table)}))
    for stage in (train_stage, run_all):
        with pytest.raises(ValidationFailed) as exc:
            stage(s)
        assert column in {f.column for f in exc.value.failures}
        assert f"column '{column}'" in str(exc.value) and str(table) in str(exc.value)
    assert (
        not (s.workdir / "mlflow.db").exists() and not s.artifact_root.exists()
    )  # no run, nothing registered
    assert (s.reports_dir / "validation_failed.json").exists() and not (
        s.reports_dir / "validation.json"
    ).exists()


def test_missing_file_is_a_validation_failure(tmp_path):
    from pipelines.customer_table import train_stage
    from pipelines.errors import ValidationFailed

    s = load_settings(write_wa_config(tmp_path, {"path": str(tmp_path / "nowhere.csv")}))
    with pytest.raises(ValidationFailed, match="nowhere.csv"):
        train_stage(s)


def test_cli_validate_exits_2_naming_column_and_file(tmp_path, wa_table):
    from typer.testing import CliRunner

    from pipelines.cli import app

    table = tmp_path / "dupes.csv"
    _bad(wa_table, "duplicate id")[0].to_csv(table, index=False)
    res = CliRunner().invoke(
        app, ["validate", "--config", str(write_wa_config(tmp_path / "w", {"path": str(table)}))]
    )
    assert res.exit_code == 2
    out = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert "rownames" in out and str(table) in out


def test_stratified_split_is_80_20_and_reproducible(wa_table):
    from features.customer_table import labels, split

    cfg = load_settings(WA_CONFIG).source
    train, test = split(wa_table, cfg)
    assert (len(train), len(test)) == (5634, 1409)
    assert set(train["rownames"]).isdisjoint(test["rownames"])
    rate = labels(wa_table, cfg).mean()
    assert abs(labels(train, cfg).mean() - rate) < 0.002 and abs(labels(test, cfg).mean() - rate) < 0.002
    again, _ = split(wa_table, cfg)
    assert again["rownames"].tolist() == train["rownames"].tolist()


# -- derived columns: a bad one is the config's error, found before anything is tracked --------------


@pytest.mark.parametrize(
    "sql, needle",
    [
        ("total_charges / NULLIF(tenur, 0)", "unknown column 'tenur'"),
        ("total_charges / (tenure", "Parser Error"),
        ("churn = 'Yes'", "unknown column 'churn'"),  # the label: never an input
        ("total_charges - avg(total_charges)", "row-wise"),
        ("CAST(contract AS INTEGER)", "could not be computed"),  # binds, fails on the table's values
    ],
)
def test_bad_derived_column_is_a_config_error_before_any_run(tmp_path, sql, needle):
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.customer_table import train_stage
    from pipelines.errors import ConfigError
    from pipelines.stages import run_all

    path = write_wa_config(
        tmp_path, {"derived_columns": {"per_month": "total_charges / NULLIF(tenure, 0)", "bad": sql}}
    )
    s = load_settings(path)
    for stage in (train_stage, run_all):
        with pytest.raises(ConfigError, match="source.derived_columns") as exc:
            stage(s)
        assert "'bad'" in str(exc.value) and needle in str(exc.value) and str(path) in str(exc.value)
    res = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert res.exit_code == 2 and "bad" in res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert (
        not (s.workdir / "mlflow.db").exists() and not s.artifact_root.exists()
    )  # no run, nothing registered
