"""Ingestion keeps no third-party phone number: only a class and a salted hash per call."""

import hashlib
import hmac
import json
import re
import shutil

import pandas as pd
import pytest

from core.io import partition_hashes
from pipelines.ingest import CALLEE_CLASSES, classify, pseudonymise
from pipelines.validate import read_cdr


def test_number_plan_classes(trained):
    numbers = pd.Series(
        [
            "10086",
            "10010",
            "10000",
            "13312345678",
            "13812345678",
            "01087654321",
            "0085212345678",
            "95533",
            "12AB",
        ]
    )
    assert list(classify(numbers, trained)) == [
        "competitor_hotline",
        "competitor_hotline",
        "own_service",
        "on_net",
        "off_net",
        "landline",
        "international",
        "service",
        "unknown",
    ]


def test_hash_is_a_keyed_hmac_cut_to_60_bits(trained):
    n = pd.Series(["13812345678"])
    assert pseudonymise(n, b"a" * 32, trained)[0] != pseudonymise(n, b"b" * 32, trained)[0]
    for key in (b"a" * 32, b"k" * 64, b"long" * 40):  # shorter than, equal to, longer than a block
        expected = int(hmac.new(key, b"13812345678", hashlib.sha256).hexdigest()[:15], 16)
        assert pseudonymise(n, key, trained)[0] == expected


def _private_numbers(settings) -> set[str]:
    cdr = read_cdr(settings.landing_dir / "cdr")
    others = set(cdr["other_party"].astype(str))
    public = set(settings.data.competitor_hotlines) | set(settings.data.own_service_numbers)
    numbers = {n for n in others if len(n) >= 8} - public
    subs = pd.read_parquet(settings.landing_dir / "subscribers.parquet")
    return numbers | set(subs["msisdn"])


def test_no_phone_number_is_written_after_ingestion(trained):
    numbers = _private_numbers(trained)
    assert len(numbers) > 10_000
    after = [
        trained.raw_dir,
        trained.features_dir,
        trained.feast_dir,
        trained.reports_dir,
        trained.artifact_root,
        trained.workdir / "mlflow.db",
    ]
    files = [f for p in after for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    assert len(files) > 10
    digits = re.compile(rb"\d{8,15}")
    found = {}
    for f in files:
        if f.suffix == ".parquet":
            df = pd.read_parquet(f)
            values = {
                str(v)
                for c in df.columns
                if df[c].dtype in (object, "category") or str(df[c].dtype) == "string"
                for v in df[c].dropna().unique()
            }
        else:
            values = {m.decode() for m in digits.findall(f.read_bytes())}
        leaked = values & numbers
        if leaked:
            found[str(f)] = sorted(leaked)[:3]
    assert not found, f"phone numbers after ingestion: {found}"


def test_ingested_calls_carry_class_and_hash_only(trained):
    cdr = pd.read_parquet(trained.raw_dir / "cdr", dtype_backend="numpy_nullable")  # 60-bit ints stay exact
    assert "other_party" not in cdr.columns and "msisdn" not in pd.read_parquet(
        trained.raw_dir / "subscribers.parquet"
    )
    assert set(cdr["callee_class"].astype(str)) <= set(CALLEE_CLASSES)
    assert cdr["callee_hash"].dtype == "Int64" and cdr["callee_hash"].dropna().between(0, 2**60 - 1).all()


def test_subscribers_keep_their_number_only_as_the_callee_hash(trained):
    """A subscriber's own number is hashed as calls to it are: the call graph matches without numbers."""
    from pipelines.ingest import salt

    land = pd.read_parquet(trained.landing_dir / "subscribers.parquet")
    raw = pd.read_parquet(trained.raw_dir / "subscribers.parquet", dtype_backend="numpy_nullable")
    assert list(raw["subscriber_id"]) == list(land["subscriber_id"]) and "msisdn" not in raw
    assert list(raw["number_hash"]) == list(pseudonymise(land["msisdn"], salt(trained), trained))
    assert raw["number_hash"].dtype == "Int64" and raw["number_hash"].between(0, 2**60 - 1).all()
    assert raw["number_hash"].is_unique


def test_small_tables_are_copied_to_raw(trained):
    for name in ("billing", "complaints", "churn_events", "recharges"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(trained.raw_dir / f"{name}.parquet"),
            pd.read_parquet(trained.landing_dir / f"{name}.parquet"),
            check_dtype=False,  # data/raw keeps microseconds, which Spark reads too
        )
    r = pd.read_parquet(trained.raw_dir / "recharges.parquet")
    assert list(r.columns) == ["subscriber_id", "recharge_time", "amount"] and len(r) > 1000
    assert str(r["recharge_time"].dtype) == "datetime64[us]" and r["amount"].dtype == "float64"


@pytest.mark.parametrize("env", [True, False])
def test_salt_from_environment_or_a_private_file(trained_copy, monkeypatch, env):
    from pipelines.ingest import salt

    if env:
        monkeypatch.setenv(trained_copy.privacy.salt_env, "from-the-environment")
        assert salt(trained_copy) == b"from-the-environment"
    else:
        monkeypatch.delenv(trained_copy.privacy.salt_env, raising=False)
        value = salt(trained_copy)
        path = trained_copy.workdir / "data" / ".secrets" / "salt"
        assert value == path.read_text().encode() and len(value) == 64
        assert oct(path.stat().st_mode)[-3:] == "600"


def test_columns_outside_the_schema_stop_at_ingestion(trained_copy):
    """A real export may carry more than we need (a contact number, an e-mail): none of it passes."""
    from pipelines.ingest import ingest

    land = trained_copy.landing_dir
    c = pd.read_parquet(land / "complaints.parquet")
    c.assign(caller_number="13912345678").to_parquet(land / "complaints.parquet", index=False)
    s = pd.read_parquet(land / "subscribers.parquet")
    s.assign(email="someone@example.com").to_parquet(land / "subscribers.parquet", index=False)
    summary = ingest(trained_copy)
    report = json.loads((trained_copy.reports_dir / "ingest.json").read_text())  # the DVC metrics file
    assert list(report) == [
        "cdr_rows",
        "partitions",
        "callee_classes",
        "landing",
        "partitions_ingested",
        "partitions_removed",
    ]
    assert report["partitions_ingested"] == report["partitions_removed"] == 0  # only small tables changed
    assert report["cdr_rows"] == summary.cdr_rows == sum(summary.callee_classes.values()) > 0
    assert list(summary.callee_classes) == list(CALLEE_CLASSES)
    assert "caller_number" not in pd.read_parquet(trained_copy.raw_dir / "complaints.parquet").columns
    raw_subs = pd.read_parquet(trained_copy.raw_dir / "subscribers.parquet")
    assert not {"email", "msisdn"} & set(raw_subs.columns) and len(raw_subs) == len(s)


def _raw_files(settings) -> dict:
    """Each raw CDR file: its inode and modification time (the same file, untouched)."""
    raw = settings.raw_dir / "cdr"
    return {str(f.relative_to(raw)): (f.stat().st_ino, f.stat().st_mtime_ns) for f in raw.rglob("*.parquet")}


def _late_calls(settings, day: str, n: int = 20) -> pd.DataFrame:
    """``n`` more calls of ``day`` (some of its calls again, 7 s later), as a late delivery would bring."""
    part = settings.landing_dir / "cdr" / f"date={day}"
    calls = pd.read_parquet(sorted(part.glob("*.parquet"))[0])
    calls = calls.assign(start_time=calls["start_time"] + pd.Timedelta(seconds=7))
    return calls[calls["start_time"].dt.date.astype(str) == day].head(n)


def test_ingest_redoes_only_new_or_changed_partitions(copy_trained):
    from pipelines.ingest import ingest

    s = copy_trained(data={"end_date": "2026-07-02"})  # one more day in the batch period
    land = s.landing_dir / "cdr"
    before, rows = _raw_files(s), len(pd.read_parquet(s.raw_dir / "cdr"))
    _late_calls(s, "2026-05-15").to_parquet(land / "date=2026-05-15" / "late.parquet", index=False)
    (land / "date=2026-07-01").mkdir()
    for f in (land / "date=2026-06-30").glob("*.parquet"):  # a new day: the day before, a day later
        day = pd.read_parquet(f)
        day.assign(start_time=day["start_time"] + pd.Timedelta(days=1)).to_parquet(
            land / "date=2026-07-01" / f.name, index=False
        )

    summary = ingest(s)

    assert summary.partitions_ingested == 2 and summary.partitions_removed == 0
    after = _raw_files(s)
    redone = {"date=2026-05-15", "date=2026-07-01"}
    assert {k: v for k, v in after.items() if k.split("/")[0] not in redone} == {
        k: v for k, v in before.items() if k.split("/")[0] not in redone
    }  # every other partition's files untouched
    raw = pd.read_parquet(s.raw_dir / "cdr")
    added = len(pd.read_parquet(land / "date=2026-07-01"))
    assert len(raw) == summary.cdr_rows == rows + 20 + added
    # byte for byte what ingesting everything anew gives (the state file gone: nothing known as ingested)
    hashes = partition_hashes(s.raw_dir / "cdr")
    (s.raw_dir / ".partitions.json").unlink()
    assert ingest(s).partitions_ingested == summary.partitions
    assert partition_hashes(s.raw_dir / "cdr") == hashes and len(hashes) == summary.partitions

    # a partition gone from the landing export is gone from data/raw
    shutil.rmtree(land / "date=2026-07-01")
    gone = ingest(s, skip_validation=True)
    assert gone.partitions_removed == 1 and gone.partitions_ingested == 0
    assert not (s.raw_dir / "cdr" / "date=2026-07-01").exists() and gone.cdr_rows == rows + 20


def test_a_failed_ingest_leaves_data_raw_as_it_was(trained_copy, monkeypatch):
    import pipelines.ingest

    s = trained_copy
    _late_calls(s, "2026-05-15").to_parquet(
        s.landing_dir / "cdr" / "date=2026-05-15" / "late.parquet", index=False
    )
    before, state = _raw_files(s), (s.raw_dir / ".partitions.json").read_bytes()

    def broken(*args, **kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipelines.ingest, "_classify_partitions", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        pipelines.ingest.ingest(s, skip_validation=True)
    assert _raw_files(s) == before and (s.raw_dir / ".partitions.json").read_bytes() == state
