"""Validation reads what changed: a new CDR day is checked alone, a bad new day still stops the run
before anything is written, and a changed subscribers table re-checks everything that reads it."""

import hashlib
import json
import shutil

import pandas as pd
import pytest

from core.config import load_settings
from pipelines.errors import ValidationFailed
from pipelines.generate import generate
from pipelines.ingest import ingest
from pipelines.validate import ensure_validated, validate_landing

NEW_DAY = "2026-01-20"
SMALL = {"n_subscribers": 300, "seed": 5, "start_date": "2026-01-01"}


def _settings(workdir, make_config):
    data = {**SMALL, "end_date": "2026-01-21"}
    return load_settings(
        make_config(workdir, data=data, features={"snapshots": ["2026-01-10", "2026-01-15"]})
    )


@pytest.fixture(scope="module")
def before_new_day(tmp_path_factory):
    """A workdir validated and ingested while NEW_DAY's partition holds no call yet; its calls wait in
    ``held.parquet`` (the day's partition is there, so the export is complete and fresh)."""
    from conftest import write_config  # noqa: PLC0415 - conftest sits on sys.path under pytest

    work = tmp_path_factory.mktemp("incremental_validation")
    s = _settings(work, write_config)
    generate(s)
    part = _day_file(s)
    shutil.move(part, work / "held.parquet")
    pd.read_parquet(work / "held.parquet").iloc[:0].to_parquet(part, index=False)
    ingest(s)
    return work


@pytest.fixture
def day_arrives(before_new_day, tmp_path, make_config):
    """A copy of the workdir: ``(settings, the new day's calls)``, the calls not yet delivered."""
    work = tmp_path / "w"
    shutil.copytree(before_new_day, work)
    return _settings(work, make_config), work / "held.parquet"


def _day_file(s, day=NEW_DAY):
    return next((s.landing_dir / "cdr" / f"date={day}").glob("*.parquet"))


def _arrive(s, held):
    shutil.copyfile(held, _day_file(s))


def _digest(path):
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files if f.is_file())).hexdigest()


def test_a_new_day_is_validated_alone(day_arrives):
    s, held = day_arrives
    _arrive(s, held)
    report = validate_landing(s)
    cdr = report["tables"]["cdr"]
    assert (cdr["checked"], cdr["reused"]) == (1, 19)
    assert cdr["rows"] == sum(len(pd.read_parquet(p)) for p in (s.landing_dir / "cdr").rglob("*.parquet"))
    assert sorted(cdr["units"]) == [f"2026-01-{d:02d}" for d in range(1, 21)]
    assert all(report["tables"][t]["checked"] == 0 for t in report["tables"] if t != "cdr")
    assert (s.reports_dir / "data_docs" / "index.html").exists()
    # the report stays what ensure_validated accepts: nothing is checked again
    written = (s.reports_dir / "validation.json").stat().st_mtime_ns
    ensure_validated(s)
    assert (s.reports_dir / "validation.json").stat().st_mtime_ns == written


def test_a_bad_new_day_fails_naming_it_and_nothing_is_written(day_arrives):
    s, held = day_arrives
    df = pd.read_parquet(held)
    df.loc[3, "duration_s"] = -30
    df.to_parquet(_day_file(s), index=False)
    before = {p: _digest(p) for p in (s.raw_dir, s.reports_dir / "validation.json")}

    with pytest.raises(ValidationFailed) as err:
        ingest(s)

    message = str(err.value)
    assert "duration_s" in message and "-30" in message and NEW_DAY in message
    assert {p: _digest(p) for p in before} == before  # ingested tables and the passing report kept
    failed = json.loads((s.reports_dir / "validation_failed.json").read_text())
    assert failed["success"] is False and failed["tables"]["cdr"]["checked"] == 1

    df.loc[3, "duration_s"] = 30  # the operator re-delivers the day, fixed: only it is checked again
    df.to_parquet(_day_file(s), index=False)
    ingest(s)
    cdr = json.loads((s.reports_dir / "validation.json").read_text())["tables"]["cdr"]
    assert (cdr["checked"], cdr["reused"]) == (1, 19)


def test_a_changed_subscribers_table_rechecks_everything(day_arrives):
    s, held = day_arrives
    _arrive(s, held)
    calls = pd.read_parquet(_day_file(s, "2026-01-03"))
    gone = calls["subscriber_id"].iloc[0]
    subs = pd.read_parquet(s.landing_dir / "subscribers.parquet")
    subs[subs["subscriber_id"] != gone].to_parquet(s.landing_dir / "subscribers.parquet", index=False)

    with pytest.raises(ValidationFailed) as err:
        validate_landing(s)

    message = str(err.value)
    assert "orphans" in message and str(gone) in message and "2026-01-03" in message
    failed = json.loads((s.reports_dir / "validation_failed.json").read_text())["tables"]
    assert failed["cdr"]["checked"] == 20  # every day, not only the new one
    assert all(failed[t]["checked"] == 1 for t in failed if t != "cdr")
