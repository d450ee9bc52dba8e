"""Ingestion: validated landing export -> pseudonymised tables in ``data/raw``.

The other party's phone number never goes past this step. Each call keeps only what features
need: the class of number called (competitor hotline, own service number, on-net, off-net,
landline, international, service, unknown) and a salted hash, so repeated contacts stay countable
without the number. Subscribers lose their own number (msisdn). The salt comes from the
environment variable named by ``privacy.salt_env`` or, failing that, a random secret created once
in the workdir (``data/.secrets/salt``): never from the repository.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from core.config import Settings
from core.io import PARTITION, fingerprint, replace_dir_atomic, write_json_atomic
from pipelines.validate import SCHEMAS, ensure_validated

log = logging.getLogger(__name__)

CALLEE_CLASSES = (
    "competitor_hotline",
    "own_service",
    "on_net",
    "off_net",
    "landline",
    "international",
    "service",
    "unknown",
)
PRIVATE_SUBSCRIBER_COLUMNS = ("msisdn",)
SMALL_TABLES = (
    "billing",
    "complaints",
    "churn_events",
    "recharges",
)  # no numbers: their schema columns copied


@dataclass(frozen=True)
class IngestSummary:
    """What ingestion wrote: ``reports/ingest.json`` (a DVC metrics file) holds these fields."""

    cdr_rows: int  # calls in data/raw
    partitions: int  # CDR day partitions
    callee_classes: dict[str, int]  # calls per class of number called, every class named
    landing: dict[str, str]  # fingerprint of each landing table ingested (see ensure_ingested)


def salt(settings: Settings) -> bytes:
    value = os.environ.get(settings.privacy.salt_env)
    if value:
        return value.encode()
    path = settings.workdir / "data" / ".secrets" / "salt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
        log.warning(
            "no $%s set: created a random salt in %s (keep it to keep hashes stable)",
            settings.privacy.salt_env,
            path,
        )
    return path.read_text().strip().encode()


def _sql_list(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def classify_sql(settings: Settings, column: str = "other_party") -> str:
    """SQL for the class of each dialled number, from the operator's number plan in ``settings.data``."""
    cfg = settings.data
    n = f"CAST({column} AS VARCHAR)"
    return f"""CASE
        WHEN {n} IN ({_sql_list(cfg.competitor_hotlines)}) THEN 'competitor_hotline'
        WHEN {n} IN ({_sql_list(cfg.own_service_numbers)}) THEN 'own_service'
        WHEN regexp_full_match({n}, '1[0-9]{{10}}') AND substr({n}, 1, 3) IN ({_sql_list(cfg.on_net_prefixes)}) THEN 'on_net'
        WHEN regexp_full_match({n}, '1[0-9]{{10}}') THEN 'off_net'
        WHEN regexp_full_match({n}, '0[1-9][0-9]{{9,10}}') THEN 'landline'
        WHEN regexp_full_match({n}, '00[0-9]{{6,15}}') THEN 'international'
        WHEN regexp_full_match({n}, '1[0-9]{{4}}|95[0-9]{{3}}') THEN 'service'
        ELSE 'unknown' END"""


def hash_sql(column: str = "other_party") -> str:
    """A salted SHA-256 of the number, 16 hex digits: countable contacts, no recoverable number."""
    return f"substr(sha256($salt || CAST({column} AS VARCHAR)), 1, 16)"


def classify(numbers: pd.Series, settings: Settings) -> np.ndarray:
    """Classes of ``numbers`` through the same SQL ingestion runs."""
    con = duckdb.connect()
    try:
        con.register("numbers", pd.DataFrame({"other_party": numbers.astype(str)}))
        return con.execute(f"SELECT {classify_sql(settings)} AS c FROM numbers").df()["c"].to_numpy()
    finally:
        con.close()


def pseudonymise(numbers: pd.Series, key: bytes) -> np.ndarray:
    con = duckdb.connect()
    try:
        con.register("numbers", pd.DataFrame({"other_party": numbers.astype(str)}))
        return (
            con.execute(f"SELECT {hash_sql()} AS h FROM numbers", {"salt": key.decode()}).df()["h"].to_numpy()
        )
    finally:
        con.close()


def ingest(settings: Settings, *, skip_validation: bool = False) -> IngestSummary:
    """Validate the landing export (unless already validated as is), then write ``data/raw``.

    One DuckDB statement streams every CDR partition through the number-plan classification and
    the salted hash and writes the result partitioned by day, using all cores. ``skip_validation``
    is for the scale benchmarks on freshly generated data only; the pipeline never sets it.
    """
    if not skip_validation:
        ensure_validated(settings)
    key = salt(settings)
    src, dst = settings.landing_dir, settings.raw_dir
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _copy_tables(src, tmp)
    counts = _ingest_cdr(settings, src / "cdr", tmp / "cdr", key)
    replace_dir_atomic(tmp, dst)
    classes = {c: 0 for c in CALLEE_CLASSES} | counts
    summary = IngestSummary(
        cdr_rows=sum(classes.values()),
        partitions=len(list((dst / "cdr").glob(f"{PARTITION}=*"))),
        callee_classes=classes,
        landing=_landing_fingerprint(settings),
    )
    write_json_atomic(asdict(summary), settings.reports_dir / "ingest.json")
    log.info(
        "ingested %d calls in %d day partitions into %s; other-party numbers replaced by class + salted hash",
        summary.cdr_rows,
        summary.partitions,
        dst,
    )
    return summary


def _copy_tables(src: Path, dst: Path) -> None:
    """Subscribers and the small tables, their schema's columns only.

    Data minimisation: only the columns the schema names pass (an extra column, say a phone number in
    a real export, stops here), and the subscriber's own number never does.
    """
    keep = [c for c in SCHEMAS["subscribers"] if c not in PRIVATE_SUBSCRIBER_COLUMNS]
    pd.read_parquet(src / "subscribers.parquet", columns=keep).to_parquet(
        dst / "subscribers.parquet", index=False
    )
    for name in SMALL_TABLES:
        pd.read_parquet(src / f"{name}.parquet", columns=SCHEMAS[name]).to_parquet(
            dst / f"{name}.parquet", index=False
        )


def _ingest_cdr(settings: Settings, src: Path, dst: Path, key: bytes) -> dict[str, int]:
    """Every CDR partition of ``src`` classified and hashed into ``dst`` (partitioned by day); the calls
    per class of number called."""
    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = false")
        con.execute(
            f"""
            COPY (
                SELECT subscriber_id, {classify_sql(settings)} AS callee_class, {hash_sql()} AS callee_hash,
                       start_time, CAST(duration_s AS INTEGER) AS duration_s, direction, {PARTITION}
                FROM read_parquet('{src}/{PARTITION}=*/*.parquet', hive_partitioning = true)
            ) TO '{dst}' (FORMAT parquet, PARTITION_BY ({PARTITION}), FILENAME_PATTERN 'part-{{i}}')
        """,
            {"salt": key.decode()},
        )
        counts = con.execute(f"""
            SELECT callee_class, count(*) FROM read_parquet('{dst}/*/*.parquet') GROUP BY 1
        """).fetchall()
    finally:
        con.close()
    return {c: int(k) for c, k in counts}


def _landing_fingerprint(settings: Settings) -> dict[str, str]:
    src = settings.landing_dir
    return {t: fingerprint(src / ("cdr" if t == "cdr" else f"{t}.parquet")) for t in SCHEMAS}


def ensure_ingested(settings: Settings) -> None:
    """Ingest unless ``data/raw`` was written from exactly the landing files on disk now."""
    report = settings.reports_dir / "ingest.json"
    if settings.raw_dir.exists() and report.exists():
        if json.loads(report.read_text()).get("landing") == _landing_fingerprint(settings):
            ensure_validated(settings)
            return
    ingest(settings)
