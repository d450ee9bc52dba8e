"""Refused exports are refused in plain words: the kind of value before its range; file, column,
count and at most five examples; a file delivered twice named as such, without its rows."""

from __future__ import annotations

import re
import shutil
import tempfile

import pandas as pd
import pytest
from messy_numbers import DAY, messy_export

from core.io import PARTITION
from pipelines.errors import ValidationFailed
from pipelines.validate import validate_landing


def _day_file(settings, day: str = DAY):
    return next((settings.landing_dir / "cdr" / f"{PARTITION}={day}").glob("*.parquet"))


def _refused(settings) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as err:
        validate_landing(settings)
    return err.value


def test_a_timestamp_stored_as_text_is_named_as_text_not_out_of_range(trained_copy):
    path = _day_file(trained_copy)
    calls = pd.read_parquet(path)
    calls["start_time"] = calls["start_time"].astype(str)
    calls.to_parquet(path, index=False)
    err = _refused(trained_copy)
    assert len(err.failures) == 1, str(err)
    f = err.failures[0]
    assert (f.column, f.expectation, f.partitions) == ("start_time", "column_type", [DAY])
    assert f"all {len(calls)} values are text" in f.detail and "where a timestamp is expected" in f.detail
    assert 1 <= len(f.examples) <= 5 and all(isinstance(v, str) for v in f.examples)
    assert "between" not in str(err) and "batch period" not in str(err)


def test_numbers_stored_as_numbers_are_refused_before_their_format(trained_copy):
    path = _day_file(trained_copy)
    calls = pd.read_parquet(path)
    calls = calls[calls["other_party"].str.fullmatch(r"1\d{10}")]
    calls.assign(other_party=calls["other_party"].astype("int64")).to_parquet(path, index=False)
    err = _refused(trained_copy)
    [f] = [f for f in err.failures if f.column == "other_party"]
    assert "holds numbers where text is expected" in f.detail and "leading 0" in f.detail
    assert "callee_format" not in str(err)


def test_every_message_names_file_column_count_and_at_most_five_examples(trained_copy):
    path = _day_file(trained_copy)
    calls = pd.read_parquet(path)
    calls.loc[:11, "duration_s"] = -pd.Series(range(1, 13))  # twelve bad values
    calls.to_parquet(path, index=False)
    recharges = trained_copy.landing_dir / "recharges.parquet"
    r = pd.read_parquet(recharges)
    r.loc[:7, "amount"] = 25_000.0
    r.to_parquet(recharges, index=False)
    err = _refused(trained_copy)
    assert len(err.failures) == 2
    for f in err.failures:
        line = str(f)
        assert f.file in line and f"column '{f.column}'" in line
        assert re.search(r"\b(12|8) of \d+ rows unexpected", line), line
        assert 1 <= len(f.examples) <= 5 and len(set(map(str, f.examples))) == len(f.examples)
        assert line.count(",") < 12  # five examples at most, no list of every value


def test_a_redelivered_file_is_refused_without_its_rows(trained_copy):
    path = _day_file(trained_copy)
    calls = pd.read_parquet(path)
    calls.sample(frac=1, random_state=1).to_parquet(path.with_name("redelivered.parquet"), index=False)
    err = _refused(trained_copy)
    message = str(err)
    assert len(err.failures) == 1, message
    f = err.failures[0]
    assert f.file.endswith("redelivered.parquet") and str(path) in f.detail
    assert "[re-delivered file]" in f.detail and f"same {len(calls)} calls" in f.detail
    assert not {n for n in calls["other_party"] if len(n) > 6 and n in message}  # no raw row
    assert not set(calls["subscriber_id"]) & set(re.findall(r"S\w+", message))


def test_a_duplicate_call_is_named_without_the_number_called(trained_copy):
    path = _day_file(trained_copy)
    calls = pd.read_parquet(path)
    row = calls[calls["other_party"].str.len() == 11].iloc[[0]]
    pd.concat([calls, row], ignore_index=True).to_parquet(path, index=False)
    err = _refused(trained_copy)
    message = str(err)
    assert "duplicate calls" in message and row["subscriber_id"].iloc[0] in message
    assert row["other_party"].iloc[0] not in message


def test_messy_number_formats_pass_even_a_strict_format_check(trained_copy):
    messy_export(trained_copy)
    strict = trained_copy.model_copy(
        update={"validation": trained_copy.validation.model_copy(update={"warn": []})}
    )
    report = validate_landing(strict)
    assert report["success"] and not report["tables"]["cdr"]["failures"]


def test_great_expectations_leaves_no_folder_in_the_system_temp_dir(trained_copy, tmp_path, monkeypatch):
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    shutil.rmtree(trained_copy.reports_dir / "data_docs", ignore_errors=True)
    (trained_copy.reports_dir / "validation.json").unlink()  # everything is checked again
    validate_landing(trained_copy)
    assert list(system_tmp.iterdir()) == []
    assert (trained_copy.reports_dir / "data_docs" / "index.html").exists()  # the docs, in the workdir
