"""Ingestion: validated landing export -> pseudonymised tables in ``data/raw``.

The other party's phone number never goes past this step. Each call keeps only what features
need: the class of number called (competitor hotline, own service number, on-net, off-net,
landline, international, service, unknown) and a salted hash, so repeated contacts stay countable
without the number. Subscribers lose their own number (msisdn). The salt comes from the
environment variable named by ``privacy.salt_env`` or, failing that, a random secret created once
in the workdir (``data/.secrets/salt``): never from the repository.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from pipelines.config import Settings
from pipelines.io import replace_dir_atomic, write_json_atomic
from pipelines.validate import PARTITION, SCHEMAS, _fingerprint, ensure_validated

log = logging.getLogger(__name__)

CALLEE_CLASSES = ("competitor_hotline", "own_service", "on_net", "off_net", "landline", "international",
                  "service", "unknown")
PRIVATE_SUBSCRIBER_COLUMNS = ("msisdn",)


def salt(settings: Settings) -> bytes:
    value = os.environ.get(settings.privacy.salt_env)
    if value:
        return value.encode()
    path = settings.workdir / "data" / ".secrets" / "salt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
        log.warning("no $%s set: created a random salt in %s (keep it to keep hashes stable)",
                    settings.privacy.salt_env, path)
    return path.read_text().strip().encode()


def classify(numbers: pd.Series, settings: Settings) -> np.ndarray:
    """The class of each dialled number, from the operator's number plan in ``settings.data``."""
    cfg = settings.data
    s = numbers.astype(str)
    mobile = s.str.fullmatch(r"1\d{10}")
    prefix = s.str[:3]
    conditions = [
        s.isin(cfg.competitor_hotlines),
        s.isin(cfg.own_service_numbers),
        mobile & prefix.isin(cfg.on_net_prefixes),
        mobile,  # any other mobile number belongs to another network
        s.str.fullmatch(r"0[1-9]\d{9,10}"),
        s.str.fullmatch(r"00\d{6,15}"),
        s.str.fullmatch(r"1\d{4}|95\d{3}"),
    ]
    return np.select([c.to_numpy(dtype=bool) for c in conditions], CALLEE_CLASSES[:-1], "unknown")


def pseudonymise(numbers: pd.Series, key: bytes) -> np.ndarray:
    return np.array([hashlib.blake2b(n.encode(), key=key[:64], digest_size=8).hexdigest() for n in numbers.astype(str)])


def _cdr_partition(path: Path, settings: Settings, key: bytes) -> pa.Table:
    df = pd.read_parquet(path)
    other = df["other_party"].astype("category").cat.remove_unused_categories()
    cats = other.cat.categories.to_series()
    classes = pd.Categorical(classify(cats, settings), categories=CALLEE_CLASSES)
    hashes = pseudonymise(cats, key)
    codes = other.cat.codes.to_numpy()
    return pa.table({
        "subscriber_id": pa.array(df["subscriber_id"].astype(str)).dictionary_encode(),
        "callee_class": pa.DictionaryArray.from_arrays(pa.array(classes.codes[codes].astype(np.int8)),
                                                       pa.array(list(CALLEE_CLASSES))),
        "callee_hash": pa.array(hashes[codes]),
        "start_time": pa.array(df["start_time"]),
        "duration_s": pa.array(df["duration_s"].astype(np.int32)),
        "direction": pa.array(df["direction"].astype(str)).dictionary_encode(),
    })


def ingest(settings: Settings) -> dict:
    """Validate the landing export (unless already validated as is), then write ``data/raw``."""
    ensure_validated(settings)
    key = salt(settings)
    src, dst = settings.landing_dir, settings.raw_dir
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    subs = pd.read_parquet(src / "subscribers.parquet").drop(columns=list(PRIVATE_SUBSCRIBER_COLUMNS))
    subs.to_parquet(tmp / "subscribers.parquet", index=False)
    for name in ("billing", "complaints", "churn_events"):
        shutil.copy2(src / f"{name}.parquet", tmp / f"{name}.parquet")
    files = sorted((src / "cdr").glob(f"{PARTITION}=*/*.parquet"))
    rows, counts = 0, pd.Series(0, index=list(CALLEE_CLASSES))
    for f in tqdm(files, desc="ingesting cdr", unit="file", disable=None):
        out = tmp / "cdr" / f.parent.name
        out.mkdir(parents=True, exist_ok=True)
        tbl = _cdr_partition(f, settings, key)
        pq.write_table(tbl, out / f.name)
        rows += tbl.num_rows
        counts = counts.add(tbl.column("callee_class").to_pandas().value_counts(), fill_value=0)
    replace_dir_atomic(tmp, dst)
    summary = {"cdr_rows": rows, "partitions": len({f.parent.name for f in files}),
               "callee_classes": {k: int(v) for k, v in counts.items()}, "landing": _landing_fingerprint(settings)}
    write_json_atomic(summary, settings.reports_dir / "ingest.json")
    log.info("ingested %d calls from %d files into %s; other-party numbers replaced by class + salted hash",
             rows, len(files), dst)
    return summary


def _landing_fingerprint(settings: Settings) -> dict[str, str]:
    src = settings.landing_dir
    return {t: _fingerprint(src / ("cdr" if t == "cdr" else f"{t}.parquet")) for t in SCHEMAS}


def ensure_ingested(settings: Settings) -> None:
    """Ingest unless ``data/raw`` was written from exactly the landing files on disk now."""
    report = settings.reports_dir / "ingest.json"
    if settings.raw_dir.exists() and report.exists():
        import json

        if json.loads(report.read_text()).get("landing") == _landing_fingerprint(settings):
            ensure_validated(settings)
            return
    ingest(settings)
