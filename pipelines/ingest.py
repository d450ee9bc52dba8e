"""Ingestion: validated landing export -> pseudonymised tables in ``data/raw``.

The other party's phone number never goes past this step. Each number is first put in its canonical
form (``pipelines/numbers.py``: ``+86 138-0013-8000`` and ``13800138000`` are one number), then
each call keeps only what features need: the class of number called (competitor hotline, own service
number, on-net, off-net, landline, international, service, unknown) and a keyed hash (HMAC-SHA256
cut to a 60-bit integer), so repeated contacts stay countable without the number. Subscribers lose
their own number (msisdn) for its hash under the same key (``number_hash``): calls to a subscriber
carry it as ``callee_hash``, which is how the call graph's features find contacts who left. The key
comes from the environment variable named by ``privacy.salt_env`` or, failing that, a random secret
created once in the workdir (``data/.secrets/salt``): never from the repository. The shares of the classes
are checked against ``validation.unknown_share`` and against the previous ingest
(``validation.share_change``): a broken number format fails here, not in a model.
"""

from __future__ import annotations

import hashlib
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
import phonenumbers

from core.config import Settings, ShareLimits
from core.io import (
    PARTITION,
    fingerprint,
    partition_hashes,
    replace_dir_atomic,
    sha256_files,
    write_json_atomic,
    write_secret,
)
from features.call_graph import NUMBER_HASH
from features.manifest import hash_cache
from pipelines import numbers
from pipelines.errors import Failure, ValidationFailed
from pipelines.numbers import UDF_NAME, register_duckdb
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
# microsecond timestamps, which every engine reads (Spark refuses pandas' default nanoseconds);
# a value that would lose precision raises instead of being truncated
PORTABLE_PARQUET = {"coerce_timestamps": "us", "allow_truncated_timestamps": False}
MIN_SHARE_CALLS = 1000  # fewer newly ingested calls are not judged by their class shares
# hex digits of the HMAC kept as the callee hash, a BIGINT: 60 bits (two of 10^8 distinct numbers share
# a hash with odds ~0.4%); as an 8-byte key the feature step at 10^8 calls takes ~8% less than with
# 24-digit strings, which DuckDB cannot inline (docs/benchmarks/duckdb_feature_query.md)
HASH_HEX = 15
NUMBER = "number"  # the dialled number in canonical form (pipelines/numbers.py), classified and hashed
# in data/raw, beside the tables: each CDR partition's landing content hash and calls per class
STATE = ".partitions.json"


@dataclass(frozen=True)
class IngestSummary:
    """What ingestion wrote: ``reports/ingest.json`` (a DVC metrics file) holds these fields."""

    cdr_rows: int  # calls in data/raw
    partitions: int  # CDR day partitions
    callee_classes: dict[str, int]  # calls per class of number called, every class named
    landing: dict[str, str]  # fingerprint of each landing table ingested (see ensure_ingested)
    partitions_ingested: int  # CDR partitions new or changed since the last run, ingested by this one
    partitions_removed: int  # CDR partitions no longer in the landing export, removed


@dataclass(frozen=True)
class CdrIngest:
    """What the CDR step did, by partition value (day): ingested anew, kept as they were, removed."""

    ingested: tuple[str, ...]
    kept: tuple[str, ...]
    removed: tuple[str, ...]
    classes: dict[str, dict[str, int]]  # calls per class of number called, per partition in data/raw
    recipe: str  # the key, normalisation and number plan they were ingested with (see _recipe)
    landing: dict[str, str]  # content hash of each landing partition
    previous: dict[str, int]  # calls per class in the previous ingest (same recipe; else empty)

    def state(self) -> dict:
        """:data:`STATE`: what the next run compares the landing export with."""
        return {
            "recipe": self.recipe,
            "partitions": {
                d: {"landing": h, "classes": self.classes.get(d, {})} for d, h in self.landing.items()
            },
        }


def salt(settings: Settings) -> bytes:
    """The HMAC key: ``$<privacy.salt_env>``, else a random one created once (0600, atomically) in
    the workdir. In production set it from the environment or a secrets file kept apart from the
    data: the workdir's file sits beside the hashes it keys."""
    value = os.environ.get(settings.privacy.salt_env)
    if value:
        return value.encode()
    path = settings.workdir / "data" / ".secrets" / "salt"
    if not path.exists():
        write_secret(path, secrets.token_hex(32))
        log.warning(
            "no $%s set: created a random salt in %s (keep it to keep hashes stable)",
            settings.privacy.salt_env,
            path,
        )
    return path.read_text().strip().encode()


def _sql_list(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def classify_sql(settings: Settings, column: str = NUMBER) -> str:
    """SQL for the class of each dialled number, from the operator's number plan in ``settings.data``."""
    cfg = settings.data
    n = f"CAST({column} AS VARCHAR)"
    return f"""CASE
        WHEN {n} IN ({_sql_list(cfg.competitor_hotlines)}) THEN 'competitor_hotline'
        WHEN {n} IN ({_sql_list(cfg.own_service_numbers)}) THEN 'own_service'
        WHEN regexp_matches({n}, '^1[0-9]{{10}}$') AND substr({n}, 1, 3) IN ({_sql_list(cfg.on_net_prefixes)}) THEN 'on_net'
        WHEN regexp_matches({n}, '^1[0-9]{{10}}$') THEN 'off_net'
        WHEN regexp_matches({n}, '^0[1-9][0-9]{{9,10}}$') THEN 'landline'
        WHEN regexp_matches({n}, '^00[0-9]{{6,15}}$') THEN 'international'
        WHEN regexp_matches({n}, '^(?:1[0-9]{{4}}|95[0-9]{{3}})$') THEN 'service'
        ELSE 'unknown' END"""


def hash_sql(column: str = NUMBER) -> str:
    """HMAC-SHA256 of the number keyed by the salt, its first :data:`HASH_HEX` hex digits as a BIGINT:
    countable contacts, no recoverable number without the key. Written out (RFC 2104:
    ``H(K^opad || H(K^ipad || m))``) because neither engine has an HMAC function; the padded keys are
    the ``$ipad`` and ``$opad`` parameters (:func:`hmac_params`), never in the text. The hex-to-integer
    cast is DuckDB's; Spark's translation reads it with ``conv`` (``features/spark_sql.py``)."""
    inner = f"sha256(unhex($ipad) || encode(CAST({column} AS VARCHAR)))"
    return f"CAST(('0x' || substr(sha256(unhex($opad) || unhex({inner})), 1, {HASH_HEX})) AS BIGINT)"


def hmac_params(key: bytes) -> dict[str, str]:
    """The HMAC key ``key`` XOR-padded to SHA-256's 64-byte block (inner, outer), hex: the parameters
    of :func:`hash_sql`, so ``hmac.new(key, number, sha256)`` gives the same digest."""
    block = hashlib.sha256(key).digest() if len(key) > 64 else key
    block = block.ljust(64, b"\0")
    return {
        "ipad": bytes(b ^ 0x36 for b in block).hex(),
        "opad": bytes(b ^ 0x5C for b in block).hex(),
    }


def _run_on_numbers(numbers: pd.Series, settings: Settings, select: str, params=None) -> np.ndarray:
    con = duckdb.connect()
    try:
        register_duckdb(con, settings.data.number_region)
        con.register("numbers", pd.DataFrame({"other_party": numbers.astype(str)}))
        sql = f"SELECT {select} AS v FROM (SELECT {UDF_NAME}(other_party) AS {NUMBER} FROM numbers) AS n"
        return con.execute(sql, params).df()["v"].to_numpy()
    finally:
        con.close()


def classify(numbers: pd.Series, settings: Settings) -> np.ndarray:
    """Classes of ``numbers`` through the same normalisation and SQL ingestion runs."""
    return _run_on_numbers(numbers, settings, classify_sql(settings))


def pseudonymise(numbers: pd.Series, key: bytes, settings: Settings) -> np.ndarray:
    """Hashes of ``numbers`` as ingestion writes them (normalised first)."""
    return _run_on_numbers(numbers, settings, hash_sql(), hmac_params(key))


def ingest(settings: Settings, *, skip_validation: bool = False) -> IngestSummary:
    """Validate the landing export (unless already validated as is), then write ``data/raw``.

    Per CDR day partition: only partitions new or changed since the last ingestion (by the SHA-256
    of their files, :data:`STATE`) go through normalisation, the number-plan classification and the
    keyed hash, a DuckDB statement on all cores per day, then the class-share checks; unchanged ones are hard-linked as they are (same bytes,
    same modification time) and partitions gone from the landing are gone from ``data/raw``. The
    whole folder is written beside and swapped in, so a failed run leaves the previous one.
    ``skip_validation`` is for the scale benchmarks on freshly generated data only.
    """
    if not skip_validation:
        ensure_validated(settings)
    key = salt(settings)
    src, dst = settings.landing_dir, settings.raw_dir
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _copy_tables(src, tmp, settings, key)
    cdr = _ingest_cdr(settings, src / "cdr", dst, tmp, key)
    _check_shares(settings, cdr, tmp)
    write_json_atomic(cdr.state(), tmp / STATE)
    replace_dir_atomic(tmp, dst)
    classes = {c: 0 for c in CALLEE_CLASSES}
    for counts in cdr.classes.values():
        for c, k in counts.items():
            classes[c] = classes.get(c, 0) + k
    summary = IngestSummary(
        cdr_rows=sum(classes.values()),
        partitions=len(list((dst / "cdr").glob(f"{PARTITION}=*"))),
        callee_classes=classes,
        landing=_landing_fingerprint(settings),
        partitions_ingested=len(cdr.ingested),
        partitions_removed=len(cdr.removed),
    )
    write_json_atomic(asdict(summary), settings.reports_dir / "ingest.json")
    log.info(
        "ingested %d calls in %d day partitions into %s (%s; %d unchanged kept, %d removed%s); "
        "other-party numbers replaced by class + keyed hash",
        summary.cdr_rows,
        summary.partitions,
        dst,
        f"{len(cdr.ingested)} new or changed: {_days(cdr.ingested)}"
        if cdr.ingested
        else "none new or changed",
        len(cdr.kept),
        len(cdr.removed),
        f": {_days(cdr.removed)}" if cdr.removed else "",
    )
    return summary


def _check_shares(settings: Settings, cdr: CdrIngest, tmp: Path) -> None:
    """Warn of the share failures that are warnings; raise on errors (``tmp`` removed, ``data/raw``
    left as it was)."""
    shares = share_failures(settings, cdr)
    for w in (f for f in shares if f.severity == "warning"):
        log.warning("%s", w)
    if any(f.severity == "error" for f in shares):
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValidationFailed([f for f in shares if f.severity == "error"])


def _severity(value: float, limits: ShareLimits) -> str | None:
    return "error" if value > limits.fail else "warning" if value > limits.warn else None


def share_failures(settings: Settings, cdr: CdrIngest) -> list[Failure]:
    """The class shares of the newly ingested days against ``validation.unknown_share`` and, per
    class, against the previous ingest (``validation.share_change``): a number format the
    normalisation does not know shows as a jump of ``unknown`` here. Fewer than
    :data:`MIN_SHARE_CALLS` new calls are too few to judge a share by."""
    days = {d: cdr.classes.get(d) or {} for d in cdr.ingested}
    new = {c: sum(counts.get(c, 0) for counts in days.values()) for c in CALLEE_CLASSES}
    total = sum(new.values())
    if total < MIN_SHARE_CALLS:
        return []
    cfg, file = settings.validation, str(settings.landing_dir / "cdr")
    out = []
    unknown = new["unknown"] / total
    if sev := _severity(unknown, cfg.unknown_share):
        share = {d: c.get("unknown", 0) / max(sum(c.values()), 1) for d, c in days.items()}
        worst = sorted(share, key=lambda d: -share[d])[:5]
        detail = (
            f"[unknown_share] {new['unknown']} of {total} calls ({unknown:.1%}) dial numbers of no "
            f"known class after normalisation (warn above {cfg.unknown_share.warn:.1%}, fail above "
            f"{cfg.unknown_share.fail:.1%}); worst days first"
        )
        examples = [f"{d}: {share[d]:.1%}" for d in worst]
        out.append(Failure("cdr", file, "callee_class_share", "other_party", detail, examples, sev, worst))
    before = sum(cdr.previous.values())
    if before < MIN_SHARE_CALLS:
        return out
    for c in CALLEE_CLASSES:
        old, now = cdr.previous.get(c, 0) / before, new[c] / total
        if sev := _severity(abs(now - old), cfg.share_change):
            detail = (
                f"[share_change] share of {c} calls {old:.1%} in the previous ingest, {now:.1%} in "
                f"the {len(days)} day(s) ingested now ({new[c]} of {total} calls; warn beyond "
                f"{cfg.share_change.warn:.0%} points of change, fail beyond {cfg.share_change.fail:.0%})"
            )
            out.append(
                Failure("cdr", file, "callee_class_share", "other_party", detail, [], sev, sorted(days)[:5])
            )
    return out


def _days(days: tuple[str, ...], most: int = 5) -> str:
    return ", ".join(days[:most]) + (f" and {len(days) - most} more" if len(days) > most else "")


def _copy_tables(src: Path, dst: Path, settings: Settings, key: bytes) -> None:
    """Subscribers and the small tables, their schema's columns only.

    Data minimisation: only the columns the schema names pass (an extra column, say a phone number in
    a real export, stops here), and the subscriber's own number never does: it becomes
    :data:`NUMBER_HASH`, the keyed hash calls to that subscriber carry as ``callee_hash``, so the call
    graph's features (``features/call_graph.py``) can tell which contacts are our subscribers and whether
    they left, without a number.
    """
    subs = pd.read_parquet(src / "subscribers.parquet", columns=SCHEMAS["subscribers"])
    keep = [c for c in SCHEMAS["subscribers"] if c not in PRIVATE_SUBSCRIBER_COLUMNS]
    own = pseudonymise(subs["msisdn"], key, settings)
    subs[keep].assign(**{NUMBER_HASH: np.where(subs["msisdn"].isna(), None, own)}).to_parquet(
        dst / "subscribers.parquet", index=False, **PORTABLE_PARQUET
    )
    for name in SMALL_TABLES:
        pd.read_parquet(src / f"{name}.parquet", columns=SCHEMAS[name]).to_parquet(
            dst / f"{name}.parquet", index=False, **PORTABLE_PARQUET
        )


# the columns of an ingested call, in the order of the file and of its sort (``ORDER BY ALL``)
CDR_COLUMNS = ("subscriber_id", "callee_class", "callee_hash", "start_time", "duration_s", "direction")


def select_calls_sql(settings: Settings, source: str, carry: str = "") -> str:
    """The calls of ``source``, their numbers normalised (the :data:`UDF_NAME` function, registered
    on either engine from one Python definition), classified and hashed (the ``$ipad``/``$opad``
    parameters): the one definition both engines run (Spark its SQLGlot translation,
    ``pipelines/ingest_spark.py``). ``carry``: a column of ``source`` passed through first (Spark
    keeps the day partition that way)."""
    return f"""
        SELECT {carry + ", " if carry else ""}subscriber_id, {classify_sql(settings)} AS callee_class, {hash_sql()} AS callee_hash,
               start_time, CAST(duration_s AS INTEGER) AS duration_s, direction
        FROM (SELECT *, {UDF_NAME}(CAST(other_party AS VARCHAR)) AS {NUMBER} FROM {source}) AS calls"""


def _select_sql(settings: Settings, sources: list[str]) -> str:
    """The calls of the landing files ``sources``, classified and hashed, in one order: the same calls
    give the same bytes, so a re-ingested day changes no feature."""
    files = ", ".join("'" + f.replace("'", "''") + "'" for f in sources)
    source = f"read_parquet([{files}], hive_partitioning = false)"
    return select_calls_sql(settings, source) + " ORDER BY ALL"


def _recipe(settings: Settings, key: bytes) -> str:
    """What makes an ingested partition from a landing one: the key, the number plan's SQL and the
    normalisation (its code, region and libphonenumber's metadata version)."""
    parts = [_select_sql(settings, []), settings.data.number_region, phonenumbers.__version__]
    code = sha256_files(Path(numbers.__file__))
    return hashlib.sha256(key + b"\0" + "\0".join([*parts, code]).encode()).hexdigest()


def _previous_state(raw: Path) -> dict:
    try:
        return json.loads((raw / STATE).read_text())
    except (OSError, ValueError):
        return {}


def _ingest_cdr(settings: Settings, src: Path, raw: Path, tmp: Path, key: bytes) -> CdrIngest:
    """The CDR partitions of ``src`` into ``tmp/cdr``: new or changed ones (content hash, or another
    salt or number plan) classified and hashed, unchanged ones linked from ``raw/cdr``."""
    recipe = _recipe(settings, key)
    landing = partition_hashes(src, hash_cache(settings))  # unchanged days' files are not read
    before = _previous_state(raw)
    old = before.get("partitions", {}) if before.get("recipe") == recipe else {}
    kept = tuple(
        d
        for d, h in landing.items()
        if (old.get(d) or {}).get("landing") == h and (raw / "cdr" / f"{PARTITION}={d}").is_dir()
    )
    todo = tuple(d for d in landing if d not in kept)
    classify = _classify_partitions
    if todo and settings.features is not None and settings.features.engine == "spark":
        from pipelines import ingest_spark  # the optional `spark` extra

        classify = ingest_spark.classify_partitions
    classes = classify(settings, src, tmp / "cdr", key, todo) if todo else {}
    for d in kept:
        _link_tree(raw / "cdr" / f"{PARTITION}={d}", tmp / "cdr" / f"{PARTITION}={d}")
        classes[d] = old[d]["classes"]
    (tmp / "cdr").mkdir(exist_ok=True)
    removed = tuple(sorted(set(before.get("partitions", {})) - set(landing)))
    previous: dict[str, int] = {}
    for part in old.values():
        for c, k in (part.get("classes") or {}).items():
            previous[c] = previous.get(c, 0) + k
    return CdrIngest(todo, kept, removed, classes, recipe, landing, previous)


def _classify_partitions(
    settings: Settings, src: Path, dst: Path, key: bytes, days: tuple[str, ...]
) -> dict[str, dict[str, int]]:
    """The landing partitions ``days`` classified and hashed into ``dst``, one file per day (each
    statement on all cores); the calls per class of number called, per day."""
    out: dict[str, dict[str, int]] = {}
    con = duckdb.connect()
    try:
        register_duckdb(con, settings.data.number_region)
        con.execute("SET preserve_insertion_order = true")  # the order of ORDER BY ALL, in the file
        for d in days:
            files = sorted(str(f) for f in src.glob(f"{PARTITION}={d}/*.parquet"))
            out[d] = {}
            if not files:
                continue
            target = dst / f"{PARTITION}={d}" / "part-0.parquet"
            target.parent.mkdir(parents=True)
            con.execute(
                f"COPY ({_select_sql(settings, files)}) TO '{target}' (FORMAT parquet)",
                hmac_params(key),
            )
            counts = con.execute(f"SELECT callee_class, count(*) FROM '{target}' GROUP BY 1").fetchall()
            out[d] = {c: int(k) for c, k in counts}
    finally:
        con.close()
    return out


def _link_tree(old: Path, new: Path) -> None:
    """``old``'s files under ``new`` as hard links: the same bytes and modification time, no copy
    (a copy keeping the time where the file system has no links)."""
    for f in sorted(old.rglob("*")):
        if f.is_file():
            target = new / f.relative_to(old)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(f, target)
            except OSError:
                shutil.copy2(f, target)


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
