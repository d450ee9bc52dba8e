"""Bad input in the operator's export stops the pipeline with a message naming the problem,
and nothing downstream (ingested tables, feature table, registered model) is lost."""

import hashlib
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.errors import ValidationFailed
from pipelines.validate import validate_landing


def _digest(path):
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files if f.is_file())).hexdigest()


def _partition(s, day="2026-03-10"):
    return next((s.landing_dir / "cdr" / f"date={day}").glob("*.parquet"))


def _edit(path, fn):
    fn(pd.read_parquet(path)).to_parquet(path, index=False)


def _set(col, value, row=5):
    def fn(df):
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df

    return fn


CDR_CORRUPTIONS = {
    "missing column": (
        lambda s: _edit(_partition(s), lambda df: df.drop(columns=["duration_s"])),
        ["duration_s", "required column is missing", "date=2026-03-10"],
    ),
    "negative duration": (
        lambda s: _edit(_partition(s), _set("duration_s", -30)),
        ["duration_s", "expect_column_values_to_be_between", "-30", "2026-03-10"],
    ),
    "null subscriber": (
        lambda s: _edit(_partition(s), _set("subscriber_id", None)),
        ["subscriber_id", "expect_column_values_to_not_be_null"],
    ),
    "duplicate call": (
        lambda s: _edit(_partition(s), lambda df: pd.concat([df, df.iloc[[3]]], ignore_index=True)),
        ["duplicate calls", "subscriber_id,start_time,other_party"],
    ),
    "future timestamp": (
        lambda s: _edit(_partition(s), _set("start_time", pd.Timestamp("2031-01-01 10:00"))),
        ["start_time", "not in the future", "2031-01-01"],
    ),
    "orphan call": (
        lambda s: _edit(_partition(s), _set("subscriber_id", "S-NOT-A-SUBSCRIBER")),
        ["orphans", "S-NOT-A-SUBSCRIBER"],
    ),
    "missing partition": (
        lambda s: shutil.rmtree(_partition(s, "2026-04-02").parent),
        ["partition_present", "2026-04-02", "missing"],
    ),
    "latest partition missing": (
        lambda s: shutil.rmtree(_partition(s, "2026-06-30").parent),
        ["freshness", "date=2026-06-30"],
    ),
}


def _assert_stopped_and_outputs_kept(s, corrupt, file, expected):
    """Corrupt the export, run the features stage: exit 2 naming ``file`` and ``expected``; nothing lost."""
    from models.registry import use_tracking

    before = {p: _digest(p) for p in (s.raw_dir, s.feature_table, s.label_table)}
    client = use_tracking(s)
    champion = client.get_model_version_by_alias(s.mlflow.registered_model, "champion").version
    n_versions = len(client.search_model_versions(f"name='{s.mlflow.registered_model}'"))
    corrupt(s)

    result = CliRunner().invoke(app, ["features", "--config", str(s.config_path)])

    assert result.exit_code == 2, result.output
    message = result.stderr if hasattr(result, "stderr") else result.output
    assert str(file) in message
    for word in expected:
        assert word in message, (word, message)
    assert {p: _digest(p) for p in before} == before  # ingested tables, feature table and labels untouched
    client = use_tracking(s)
    assert client.get_model_version_by_alias(s.mlflow.registered_model, "champion").version == champion
    assert len(client.search_model_versions(f"name='{s.mlflow.registered_model}'")) == n_versions
    assert (s.reports_dir / "validation_failed.json").exists()


@pytest.mark.parametrize("kind", list(CDR_CORRUPTIONS))
def test_bad_cdr_stops_the_pipeline_and_keeps_outputs(trained_copy, kind):
    corrupt, expected = CDR_CORRUPTIONS[kind]
    _assert_stopped_and_outputs_kept(trained_copy, corrupt, trained_copy.landing_dir / "cdr", expected)


def test_negative_recharge_amount_stops_the_pipeline_and_keeps_outputs(trained_copy):
    path = trained_copy.landing_dir / "recharges.parquet"
    _assert_stopped_and_outputs_kept(
        trained_copy,
        lambda s: _edit(path, _set("amount", -30.0)),
        path,
        ["amount", "expect_column_values_to_be_between", "-30.0", "above 0"],
    )


def test_bad_category_orphan_event_and_missing_file_are_named(trained_copy):
    s = trained_copy
    ev = pd.read_parquet(s.landing_dir / "churn_events.parquet")
    ev.loc[0, "event_type"] = "abducted"
    ev.loc[1, "subscriber_id"] = "S-GHOST"
    ev.to_parquet(s.landing_dir / "churn_events.parquet", index=False)
    (s.landing_dir / "complaints.parquet").unlink()
    with pytest.raises(ValidationFailed) as info:
        validate_landing(s)
    msg = str(info.value)
    assert "event_type" in msg and "abducted" in msg
    assert "orphans" in msg and "S-GHOST" in msg
    assert "complaints.parquet" in msg and "not found" in msg


def test_bad_recharges_are_named(trained_copy):
    s = trained_copy
    path = s.landing_dir / "recharges.parquet"
    r = pd.read_parquet(path)
    r.loc[0, "amount"] = 25_000.0  # above any top-up card
    r.loc[1, "recharge_time"] = pd.Timestamp("2031-01-01 10:00")
    r.loc[2, "subscriber_id"] = "S-GHOST"
    r = pd.concat([r, r.iloc[[3]]], ignore_index=True)
    r.to_parquet(path, index=False)
    with pytest.raises(ValidationFailed) as info:
        validate_landing(s)
    failures = [f for f in info.value.failures if f.table == "recharges"]
    assert {f.file for f in failures} == {str(path)}
    msg = str(info.value)
    assert "amount" in msg and "25000.0" in msg
    assert "recharge_time" in msg and "2031-01-01" in msg
    assert "orphans" in msg and "S-GHOST" in msg
    assert "duplicate recharges" in msg and "subscriber_id,recharge_time" in msg
    assert len(failures) == len(info.value.failures) == 4  # the other tables pass


def test_unknown_callee_formats_warn_below_the_threshold_and_fail_above(trained_copy, make_config):
    s = trained_copy
    path = _partition(s)
    _edit(path, _set("other_party", "12AB"))  # one odd number in ~2 million: a warning
    report = validate_landing(s)
    cdr = report["tables"]["cdr"]["failures"]
    assert [f["severity"] for f in cdr] == ["warning"] and "callee_format" in cdr[0]["detail"]
    assert (s.reports_dir / "data_docs" / "index.html").exists()

    strict = s.model_copy(update={"validation": s.validation.model_copy(update={"warn": []})})
    _edit(path, lambda df: df.assign(other_party="12AB"))  # a whole partition of them: above 0.1%
    with pytest.raises(ValidationFailed, match="callee_format"):
        validate_landing(strict)


def test_cdrs_are_checked_in_bounded_batches_of_whole_days(trained_copy):
    """Operator scale: the export is validated a few days at a time; every batch is checked."""
    from pipelines.validate import cdr_batches, read_cdr

    total = len(read_cdr(trained_copy.landing_dir / "cdr"))
    s = trained_copy.model_copy(
        update={"validation": trained_copy.validation.model_copy(update={"cdr_batch_rows": total // 6})}
    )
    batches = [(len(b), set(b["date"])) for b in cdr_batches(s.landing_dir / "cdr", max_rows=total // 6)]
    assert 6 <= len(batches) <= 8 and sum(n for n, _ in batches) == total
    days = [d for _, ds in batches for d in ds]
    assert len(days) == len(set(days))  # a day never straddles two batches
    assert validate_landing(s)["tables"]["cdr"]["rows"] == total
    _edit(_partition(s, "2026-06-20"), _set("duration_s", -30))  # in the last batch
    _edit(
        _partition(s, "2026-03-10"), lambda df: pd.concat([df, df.iloc[[3]]], ignore_index=True)
    )  # in an early one
    with pytest.raises(ValidationFailed) as err:
        validate_landing(s)
    message = str(err.value)
    assert "2026-06-20" in message and "-30" in message and "duplicate calls" in message


def test_range_checks_see_microsecond_and_out_of_nanosecond_range_timestamps(trained_copy):
    """Ingested (us) timestamps are compared vectorised as ns; one past 2262 cannot be, and is still named."""
    from pipelines.validate import read_cdr, validate_table

    s = trained_copy
    df = read_cdr(s.landing_dir / "cdr").head(1000)
    df["start_time"] = df["start_time"].astype("datetime64[us]")
    df["duration_s"] = df["duration_s"].astype("int32")
    assert validate_table(df, "cdr", "calls", s) == []
    late = df.copy()
    late.loc[7, "start_time"] = pd.Timestamp("2300-01-01").as_unit("us")
    late.loc[8, "duration_s"] = -1
    found = {f.column: f for f in validate_table(late, "cdr", "calls", s)}
    assert set(found) == {"start_time", "duration_s"}
    assert "1 of 1000 rows unexpected" in found["start_time"].detail
    assert "1 of 1000 rows unexpected" in found["duration_s"].detail
