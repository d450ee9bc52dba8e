"""Many subscribers' rows from Feast's SQLite online store in one query, decoded in bulk; and written.

Feast's ``SqliteOnlineStore.online_read`` parses one ``ValueProto`` per feature per subscriber and
converts a timestamp per feature: ~80% of a 100-id request's store read (docs/serving.md, "Reading
the online store"). This reads the same table with the same query, through Feast's own pieces: its
connection (``SqliteOnlineStore._get_conn``), table name (``_table_id``), entity-key serialisation
(``serialize_entity_key``) and timestamp converter (``convert_timestamp``); the values are Feast's
serialised ``ValueProto``: a Float64 feature's is 9 bytes (the ``double_val`` tag, then the
little-endian double), which numpy reads for all rows at once; any other value goes through
``ValueProto`` as Feast would parse it. ``tests/features/test_store.py`` compares the result with
``get_online_features``, so a Feast upgrade that changes this contract fails the suite.

:func:`write` is the other direction: the rows Feast's ``online_write_batch`` would write for a frame
of Float64 features (its upsert, on its connection, in one transaction), with the value protos and
their ``value_text`` built in bulk instead of one ``ValueProto`` and one ``execute`` per feature and
subscriber (~25 us each: 150 s for 150,000 subscribers of 48 features). ``tests/features/
test_sqlite_online.py`` compares the table it leaves with the one Feast's own write leaves, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import warnings
import weakref
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

with warnings.catch_warnings():  # Feast's modules turn deprecation warnings on when imported
    from feast import FeatureView
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.sqlite import (
        SqliteOnlineStore,
        _quote_id,
        _table_id,
        convert_timestamp,
    )
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from feast.repo_config import RepoConfig
    from feast.utils import to_naive_utc

_DOUBLE = ValueProto(double_val=0.0).SerializeToString()  # tag byte + 8 bytes
_DOUBLE_TAG, _DOUBLE_LEN = _DOUBLE[0], len(_DOUBLE)
_CELL = np.dtype([("tag", "u1"), ("value", "<f8")])  # one such proto: protobuf's fixed64 is little-endian


@dataclass(frozen=True)
class SqliteRows:
    """``values`` (ids x ``names``, NaN where no value) and each id's event time (None: not found)."""

    values: np.ndarray
    stamps: list[dt.datetime | None]


def decode_values(blobs: list[bytes]) -> np.ndarray:
    """Serialised ``ValueProto``s as float64 (NaN for a null or unset one): the 9-byte ``double_val``
    ones read by numpy in one go, any other parsed by ``ValueProto`` (the value it holds, as a float)."""
    n = len(blobs)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    lens = np.fromiter(map(len, blobs), dtype=np.int64, count=n)
    starts = np.cumsum(lens) - lens
    buf = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    fast = lens == _DOUBLE_LEN
    fast[fast] = buf[starts[fast]] == _DOUBLE_TAG
    if fast.any():
        at = starts[fast, None] + np.arange(1, _DOUBLE_LEN)
        out[fast] = buf[at].view("<f8").ravel()
    for i in np.flatnonzero(~fast):
        value = ValueProto.FromString(blobs[i])
        kind = value.WhichOneof("val")
        if kind is not None and kind != "null_val":
            out[i] = float(getattr(value, kind))
    return out


@lru_cache(maxsize=1 << 16)  # a few MB at most; the ids asked for repeat
def entity_key(join_key: str, value: str, version: int) -> bytes:
    """A string entity key as Feast's online stores key it (``entity_key_serialization_version``)."""
    proto = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=value)])
    return serialize_entity_key(proto, entity_key_serialization_version=version)


def read(
    online: SqliteOnlineStore,
    config: RepoConfig,
    view: FeatureView,
    join_key: str,
    ids: list[str],
    names,
    conn: sqlite3.Connection | None = None,
) -> SqliteRows:
    """The rows of ``ids`` (in order, repeats allowed) for features ``names``, as Feast's
    ``online_read`` would give them, from Feast's table on Feast's connection (or ``conn``)."""
    keys = [entity_key(join_key, i, config.entity_key_serialization_version) for i in ids]
    unique = list(dict.fromkeys(keys))
    where = {k: n for n, k in enumerate(unique)}
    table = _quote_id(_table_id(config.project, view, config.registry.enable_online_feature_view_versioning))
    values = np.full((len(unique), len(names)), np.nan)
    seconds = np.full(len(unique), -1, dtype=np.int64)
    if unique:
        conn, names = conn or online._get_conn(config), tuple(names)
        slow = _read_joined(conn, table, unique, where, names, values, seconds)
        if slow:
            _read_rows(conn, table, [unique[n] for n in slow], where, names, values)
    stamps = [None if s < 0 else _stamp(s) for s in seconds.tolist()]
    order = [where[k] for k in keys]
    return SqliteRows(values[order], [stamps[n] for n in order])


_unwaiting: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # online store -> connection


def unwaiting_connection(online: SqliteOnlineStore, config: RepoConfig) -> sqlite3.Connection:
    """A read-only connection to Feast's SQLite file that never waits (busy timeout 0): a read that
    meets a writer's lock (a load in progress) fails at once instead of waiting up to 5 s, so a
    caller on an event loop can try it there and read in a thread only then. One per store object."""
    conn = _unwaiting.get(online)
    if conn is None:
        uri = Path(online._get_db_path(config)).resolve().as_uri() + "?mode=ro"
        conn = _unwaiting[online] = sqlite3.connect(uri, uri=True, timeout=0, check_same_thread=False)
    return conn


def _read_joined(
    conn, table: str, keys: list[bytes], where: dict, names: tuple, values, seconds
) -> list[int]:
    """One row per subscriber (its feature names, and its value protos joined into one blob), so SQLite,
    not Python, walks the feature rows; subscribers whose values are all 9-byte ``double_val`` protos
    (every Float64 value Feast writes) are decoded together by numpy. Returns the positions of the
    others (a null or missing value), for :func:`_read_rows`. ``event_ts + 0``: Feast stores epoch
    seconds, and an expression skips its converter; every feature of a row is written with its time."""
    rows = conn.execute(
        f"SELECT entity_key, max(event_ts) + 0, group_concat(feature_name, char(31)), "
        f"CAST(group_concat(value, '') AS BLOB) FROM {table} "
        f"WHERE entity_key IN ({','.join('?' * len(keys))}) GROUP BY entity_key",
        keys,
    ).fetchall()
    groups: dict[str, list[tuple[int, bytes]]] = {}
    for key, ts, features, blob in rows:
        seconds[where[key]] = ts
        groups.setdefault(features, []).append((where[key], blob or b""))
    slow: list[int] = []
    for features, members in groups.items():
        cols, keep = _columns(features, names)
        width = _DOUBLE_LEN * len(keep)
        slow += [n for n, b in members if len(b) != width]
        fit = [(n, b) for n, b in members if len(b) == width]
        if not fit:
            continue
        at = np.array([n for n, _ in fit], dtype=np.int64)
        cells = np.frombuffer(b"".join(b for _, b in fit), dtype=_CELL).reshape(len(fit), len(keep))
        ok = (cells["tag"] == _DOUBLE_TAG).all(axis=1)
        values[np.ix_(at[ok], cols)] = cells["value"][ok][:, keep]
        slow += at[~ok].tolist()
    return slow


@lru_cache(maxsize=64)  # a table's subscribers share their feature names, in one order or a few
def _columns(features: str, names: tuple) -> tuple[np.ndarray, np.ndarray]:
    """For a subscriber's ``group_concat`` of feature names: the column in ``names`` of each feature
    asked for, and which of its features those are."""
    column = {name: j for j, name in enumerate(names)}
    at = np.array([column.get(f, -1) for f in features.split("\x1f")], dtype=np.int64)
    return at[at >= 0], at >= 0


def _read_rows(conn, table: str, keys: list[bytes], where: dict, names: tuple, values) -> None:
    """Feast's own query for ``keys``, one row per feature, each value decoded by :func:`decode_values`."""
    rows = conn.execute(
        f"SELECT entity_key, feature_name, value FROM {table} WHERE entity_key IN ({','.join('?' * len(keys))})",
        keys,
    ).fetchall()
    column = {name: j for j, name in enumerate(names)}
    for key, feature, blob in rows:
        if (j := column.get(feature)) is not None:
            values[where[key], j] = decode_values([blob or b""])[0]


@lru_cache(maxsize=1024)  # a snapshot's rows share their time
def _stamp(seconds: int) -> dt.datetime | None:
    """Feast's reading of a stored event time (``convert_timestamp``, then UTC as ``online_read``
    labels it); None for the epoch, which get_online_features reports as 0 (not found)."""
    ts = convert_timestamp(str(seconds).encode()).replace(tzinfo=dt.UTC)
    return ts if ts.timestamp() >= 1 else None


WRITE_ROWS = 10_000  # subscribers per executemany: bounds the Python rows held at once


def can_write(online, config: RepoConfig, view: FeatureView) -> bool:
    """Whether :func:`write` writes what Feast would: a SQLite store with Feast's plain columns (no
    vector or ``value_num`` column) and a view without a created-timestamp column."""
    osc = config.online_store
    return (
        isinstance(online, SqliteOnlineStore)
        and not getattr(osc, "vector_enabled", False)
        and not getattr(osc, "enable_openai_compatible_store", False)
        and not getattr(view.batch_source, "created_timestamp_column", "")
    )


def write(
    online: SqliteOnlineStore,
    config: RepoConfig,
    view: FeatureView,
    join_key: str,
    ids: list[str],
    times: list[dt.datetime],
    values: np.ndarray,
    names,
    cells: np.ndarray | None = None,
) -> int:
    """Upsert ``values`` (ids x ``names``, float64; NaN: no value) with each id's event time into
    Feast's table, as ``online_write_batch`` does (see :func:`can_write`), in one transaction: a
    failure leaves the table as it was. ``cells`` (ids x ``names``, bool) writes only those values
    (the others' rows left as they are); default all. Returns the rows (id x feature) written."""
    table = _quote_id(_table_id(config.project, view, config.registry.enable_online_feature_view_versioning))
    sql = (
        f"INSERT INTO {table} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
        "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
        "created_ts = excluded.created_ts;"
    )
    names, version = list(names), config.entity_key_serialization_version
    cells = np.ones(values.shape, dtype=bool) if cells is None else cells
    conn = online._get_conn(config)
    with conn:  # Feast's own: one transaction, committed at the end, rolled back on an error
        for lo in range(0, len(ids), WRITE_ROWS):
            hi = min(lo + WRITE_ROWS, len(ids))
            rows = _rows(ids[lo:hi], times[lo:hi], values[lo:hi], cells[lo:hi], names, join_key, version)
            conn.executemany(sql, rows)
    return int(cells.sum())


def _rows(ids, times, values: np.ndarray, cells: np.ndarray, names: list, join_key: str, version: int):
    """Feast's row per id and feature of ``cells``: the serialised entity key, the ``ValueProto``
    (``double_val``, or empty for NaN, Feast's null), ``value_text`` (``str`` of the double, None for
    null), the event time as Feast's adapter stores it (naive UTC) and no created time."""
    protos = np.empty(values.shape, dtype=_CELL)
    protos["tag"], protos["value"] = _DOUBLE_TAG, values
    raw, null, texts = protos.tobytes(), np.isnan(values).ravel().tolist(), values.ravel().tolist()
    keys = [entity_key.__wrapped__(join_key, sid, version) for sid in ids]
    whens = [to_naive_utc(ts) for ts in times]
    width = len(names)
    for k in np.flatnonzero(cells.ravel()).tolist():
        i, j = divmod(k, width)
        if null[k]:
            yield keys[i], names[j], b"", None, whens[i], None
        else:
            yield (
                keys[i],
                names[j],
                raw[k * _DOUBLE_LEN : (k + 1) * _DOUBLE_LEN],
                str(texts[k]),
                whens[i],
                None,
            )
