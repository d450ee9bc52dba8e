"""Bad raw input stops the pipeline with a message naming the problem, and nothing is lost."""

import hashlib

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.validate import ValidationFailed, validate_raw


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


CORRUPTIONS = {
    "missing column": (lambda df: df.drop(columns=["duration_s"]), ["duration_s", "missing"]),
    "negative duration": (lambda df: df.assign(duration_s=df["duration_s"].where(df.index != 5, -30)),
                          ["duration_s", "expect_column_values_to_be_between", "-30"]),
    "null subscriber": (lambda df: df.assign(subscriber_id=df["subscriber_id"].where(df.index != 7, None)),
                        ["subscriber_id", "expect_column_values_to_not_be_null"]),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupted_cdr_stops_the_pipeline_and_keeps_outputs(trained_copy, kind):
    from models.registry import use_tracking

    s = trained_copy
    corrupt, expected = CORRUPTIONS[kind]
    cdr_path = s.raw_dir / "cdr.parquet"
    corrupt(pd.read_parquet(cdr_path)).to_parquet(cdr_path, index=False)
    before = {p: _digest(p) for p in (s.feature_table, s.label_table)}
    client = use_tracking(s)
    champion = client.get_model_version_by_alias(s.mlflow.registered_model, "champion").version
    n_versions = len(client.search_model_versions(f"name='{s.mlflow.registered_model}'"))

    result = CliRunner().invoke(app, ["features", "--config", str(s.config_path)])

    assert result.exit_code == 2, result.output
    message = result.stderr if hasattr(result, "stderr") else result.output
    assert str(cdr_path) in message
    for word in expected:
        assert word in message
    assert {p: _digest(p) for p in before} == before  # feature table and labels untouched
    client = use_tracking(s)
    assert client.get_model_version_by_alias(s.mlflow.registered_model, "champion").version == champion
    assert len(client.search_model_versions(f"name='{s.mlflow.registered_model}'")) == n_versions


def test_bad_category_and_missing_file_are_named(trained_copy):
    s = trained_copy
    ev = pd.read_parquet(s.raw_dir / "churn_events.parquet")
    ev.loc[0, "event_type"] = "abducted"
    ev.to_parquet(s.raw_dir / "churn_events.parquet", index=False)
    (s.raw_dir / "complaints.parquet").unlink()
    with pytest.raises(ValidationFailed) as info:
        validate_raw(s)
    msg = str(info.value)
    assert "event_type" in msg and "abducted" in msg
    assert "complaints.parquet" in msg and "not found" in msg
    assert (s.reports_dir / "validation_failed.json").exists()
