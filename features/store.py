"""The Feast feature store: subscriber entity, file source over the feature table, one feature view.

The store is built from the typed settings (no hand-edited YAML to drift), and a matching
``feature_store.yaml`` is written into the repo folder so the ``feast`` CLI and UI work on it too.
Training reads ``get_historical_features`` (point-in-time join); serving reads
``get_online_features`` after ``materialize``; both see the same table. On ``features.engine:
spark`` Feast runs on Spark (``features/spark_store.py``): its Spark offline store joins, and with a
Redis online store its Spark compute engine loads Redis from the executors' partitions.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import yaml

# Feast's modules run warnings.simplefilter("once", DeprecationWarning) when imported, turning every
# deprecation warning of every library back on for the whole process; the import keeps its filters
# to itself.
with warnings.catch_warnings():
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.errors import (
        FeastObjectNotFoundException,
        FeatureViewNotFoundException,
        ProjectNotFoundException,
    )
    from feast.feature_view import FeatureViewState
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource  # no PySpark
    from feast.infra.online_stores.sqlite import SqliteOnlineStore
    from feast.online_response import TIMESTAMP_POSTFIX
    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from feast.repo_config import RepoConfig
    from feast.types import Float64

from core.config import Settings
from features import sqlite_online
from features.catalogue import CATALOGUE, FEATURE_NAMES

log = logging.getLogger(__name__)

ENTITY = "subscriber"
JOIN_KEY = "subscriber_id"
VIEW = "subscriber_features"
FEATURE_REFS = [f"{VIEW}:{n}" for n in FEATURE_NAMES]
PROBE = 20  # subscribers asked for when the online store is checked


class OnlineStoreUnreachable(RuntimeError):
    """The configured online store cannot be reached (e.g. Redis on a closed port)."""


def describe_online_store(settings: Settings) -> str:
    osc = settings.feast.online_store
    if osc.type == "redis":
        return f"the Redis online store at {osc.redis_connection}"
    return f"the SQLite online store {settings.feast_dir / 'online_store.db'}"


def _unreachable(exc: BaseException) -> bool:
    return isinstance(exc, (ConnectionError, TimeoutError)) or (
        type(exc).__module__.startswith("redis") and "Connection" in type(exc).__name__ + str(exc)
    )


def _online_config(settings: Settings) -> dict:
    osc = settings.feast.online_store
    if osc.type == "redis":
        return {"type": "redis", "connection_string": redis_connection_string(osc)}
    return {"type": "sqlite", "path": str(settings.feast_dir / "online_store.db")}


def redis_connection_string(osc) -> str:
    """``redis_connection`` with the configured socket timeouts added, as Feast passes connection-string
    parameters to redis-py's client: without them a Redis that accepts and never answers holds a
    read for redis-py's default timeout times its retries. A timeout already in the string wins."""
    given = {part.split("=", 1)[0].strip() for part in osc.redis_connection.split(",") if "=" in part}
    extra = [
        f"{name}={getattr(osc, name)}"
        for name in ("socket_timeout", "socket_connect_timeout")
        if name not in given
    ]
    return ",".join([osc.redis_connection, *extra])


def _on_spark(settings: Settings) -> bool:
    return settings.features.engine == "spark"


def _offline_config(settings: Settings) -> dict:
    """The file store, or Feast's Spark store; its ``spark_conf`` serves the ``feast`` CLI, which starts
    its own session (in-process, Feast takes the project's active one)."""
    if not _on_spark(settings):
        return {"type": "file"}
    sc = settings.spark
    conf = {"spark.master": sc.master, "spark.app.name": sc.app_name, **sc.conf}
    return {"type": "spark", "spark_conf": {**conf, "spark.sql.session.timeZone": "UTC"}}


ONLINE_WRITE_ROWS = 10_000


def repo_config_dict(settings: Settings) -> dict:
    """Spark with Redis materialises through Feast's Spark engine (each executor writes its partition);
    a SQLite online store keeps the local engine: one file on the driver's disk, which executors
    elsewhere cannot reach and parallel writers would lock."""
    cfg = {
        "project": settings.feast.project,
        "provider": "local",
        "registry": str(settings.feast_dir / "registry.db"),
        "online_store": _online_config(settings),
        "offline_store": _offline_config(settings),
        "entity_key_serialization_version": 3,
        # rows per online write of a materialisation: Feast's default (all in one) holds a value proto
        # per feature and row at once, and was killed for memory at 16 GiB loading 10^6 subscribers
        "materialization": {"online_write_batch_size": ONLINE_WRITE_ROWS},
    }
    if _on_spark(settings) and settings.feast.online_store.type == "redis":
        cfg["batch_engine"] = {"type": "spark.engine"}
    return cfg


@contextmanager
def _engine_session(settings: Settings) -> Iterator[None]:
    """On Spark, the project's session active around Feast's calls (Feast takes the active one)."""
    if not _on_spark(settings):
        yield
        return
    from features import spark_store  # PySpark is an optional extra, loaded only on the spark engine

    with spark_store.feast_session(settings):
        yield


def get_store(settings: Settings):
    """A FeatureStore for these settings; writes ``feature_store.yaml`` beside the registry."""
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    cfg = repo_config_dict(settings)
    yaml_path = settings.feast_dir / "feature_store.yaml"
    text = yaml.safe_dump(cfg, sort_keys=False)
    if not yaml_path.exists() or yaml_path.read_text() != text:
        yaml_path.write_text(text)
    return FeatureStore(config=RepoConfig(repo_path=settings.feast_dir, **cfg))


def _set_aside_unreadable_registry(settings: Settings) -> None:
    """Feast writes its file registry in place (truncate, then write): a run killed while writing leaves
    one that does not parse, and every later Feast call would fail on it. It holds only what ``apply``
    and the loads recorded, so it is set aside (``registry.db.unreadable``) and rebuilt by the next
    ``churn features``, whose online-store check then finds nothing recorded and loads in full."""
    path = settings.feast_dir / "registry.db"
    try:
        RegistryProto.FromString(path.read_bytes())
    except FileNotFoundError:
        return
    except Exception as exc:  # protobuf's DecodeError, or a file that is not a registry at all
        path.replace(path.with_name(path.name + ".unreadable"))
        log.warning(
            "feast: the registry %s was unreadable (%s; a run killed while writing it?): set aside, "
            "`churn features` rebuilds it",
            path,
            exc,
        )


def definitions(settings: Settings) -> list:
    """Feast objects for the catalogue: defined from the same list the models and reasons use."""
    subscriber = Entity(
        name=ENTITY, join_keys=[JOIN_KEY], value_type=ValueType.STRING, description="a mobile subscriber"
    )
    where = {"name": "subscriber_features_source", "path": str(settings.feature_table.resolve())}
    if _on_spark(settings):
        source = SparkSource(**where, file_format="parquet", timestamp_field="event_timestamp")
    else:
        source = FileSource(**where, timestamp_field="event_timestamp")
    view = FeatureView(
        name=VIEW,
        entities=[subscriber],
        ttl=dt.timedelta(days=settings.features.ttl_days),
        schema=[Field(name=f.name, dtype=Float64, description=f"{f.meaning} [{f.unit}]") for f in CATALOGUE],
        source=source,
        online=True,
        tags={"owner": "churnwarn"},
    )
    return [subscriber, view]


def apply_and_materialize(
    settings: Settings, snapshots: list[dt.date] | None = None, *, incremental: bool = False
) -> dict:
    """Register the definitions and load the snapshots' newest values into the online store.

    Full (the default): materialise the whole span of ``snapshots`` (default: the configured ones).
    ``incremental=True``: Feast's ``materialize_incremental`` loads only what lies after the view's
    last materialised interval, up to the newest snapshot; nothing if that is already loaded, and a
    full load if the view was never materialised. Returns ``{"mode": "full" | "incremental" |
    "up to date", "start": ..., "end": ...}`` (ISO timestamps).
    """
    _set_aside_unreadable_registry(settings)  # here, the writer: a reader may meet a write in progress
    store = get_store(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Spark source is "experimental", said on every definition
        store.apply(definitions(settings))
    snaps = snapshots or settings.features.snapshots
    start = pd.Timestamp(min(snaps), tz="UTC") - pd.Timedelta(days=1)
    end = pd.Timestamp(max(snaps), tz="UTC") + pd.Timedelta(seconds=1)
    view = store.get_feature_view(VIEW)
    last = view.most_recent_end_time if incremental else None
    last = pd.Timestamp(last).tz_convert("UTC") if last is not None else None
    if last is not None and (why := untrusted_online(settings, store, view, last)):
        log.warning("feast: %s: loading it in full", why)
        last = None
    where = f"into the {settings.feast.online_store.type} online store"
    if last is not None and end <= last:
        log.info("feast: applied %s; online store already holds everything up to %s", VIEW, last)
        return {"mode": "up to date", "start": None, "end": last.isoformat()}
    with warnings.catch_warnings(), _engine_session(settings), _reaching(settings):
        warnings.simplefilter("ignore")
        if last is not None:
            store.materialize_incremental(end_date=end.to_pydatetime(), feature_views=[VIEW])
        else:
            store.materialize(start_date=start.to_pydatetime(), end_date=end.to_pydatetime())
    mode, start = ("incremental", last) if last is not None else ("full", start)
    log.info("feast: applied %s and materialised %s %s..%s %s", VIEW, mode, start, end, where)
    return {"mode": mode, "start": start.isoformat(), "end": end.isoformat()}


@contextmanager
def _reaching(settings: Settings) -> Iterator[None]:
    """Connection failures of the online store as :class:`OnlineStoreUnreachable`, naming it."""
    try:
        yield
    except Exception as exc:
        if _unreachable(exc):
            raise OnlineStoreUnreachable(
                f"cannot reach {describe_online_store(settings)}: {type(exc).__name__}: {exc}"
            ) from exc
        raise


def untrusted_online(settings: Settings, store, view, loaded_until: pd.Timestamp) -> str | None:
    """Why the online store cannot be trusted to hold what the registry says was loaded; None if it can.

    The registry records what was loaded, not what the store still holds: a load killed midway leaves
    the view MATERIALIZING, and a store deleted, emptied (a Redis flushed, or restarted without
    persistence) or swapped for another holds none of it. So the store itself is asked for a sample of
    the newest loaded snapshot's subscribers; a store that answers for none of them has lost the load.
    Raises :class:`OnlineStoreUnreachable` when it cannot be reached at all."""
    if view.state == FeatureViewState.MATERIALIZING:
        return "the last load into the online store was interrupted (the feature view is left MATERIALIZING)"
    snap, ids = _loaded_snapshot(settings, loaded_until)
    if not ids:
        return None
    with _reaching(settings):
        try:
            sample = _online_sample(store, ids, [snap], PROBE)
        except Exception as exc:
            if _unreachable(exc):
                raise
            return f"{describe_online_store(settings)} cannot be read ({type(exc).__name__}: {exc})"
    if sample.found == 0:
        return (
            f"{describe_online_store(settings)} holds none of {sample.subscribers} sampled subscribers of "
            f"snapshot {snap}, which the registry says it loaded (the store was emptied, lost or replaced)"
        )
    return None


def _loaded_snapshot(settings: Settings, loaded_until: pd.Timestamp) -> tuple[dt.date | None, list[str]]:
    """The newest snapshot of the feature table that lies in the loaded span, and its subscribers."""
    if not settings.feature_table.exists():
        return None, []
    df = pd.read_parquet(settings.feature_table, columns=[JOIN_KEY, "event_timestamp"])
    df = df[df["event_timestamp"] < loaded_until]
    if df.empty:
        return None, []
    newest = df["event_timestamp"].max()
    return newest.date(), sorted(df.loc[df["event_timestamp"] == newest, JOIN_KEY].astype(str))


def historical_features(settings: Settings, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join of the feature view onto ``entity_df`` (subscriber_id, event_timestamp, ...);
    on Spark the join runs there and the result is collected (``spark_store.training_frame`` keeps
    it on the executors)."""
    store = get_store(settings)
    if _on_spark(settings):
        from features import spark_store  # PySpark is an optional extra, loaded only on the spark engine

        df = spark_store.historical_features(store, settings, entity_df, FEATURE_REFS)
        return df.sort_values(["event_timestamp", JOIN_KEY], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = store.get_historical_features(entity_df=entity_df, features=FEATURE_REFS).to_df()
    return df.sort_values(["event_timestamp", JOIN_KEY], ignore_index=True)


def write_online_rows(store: FeatureStore, df: pd.DataFrame, cells: np.ndarray | None = None) -> int:
    """Upsert ``df``'s rows (``subscriber_id``, ``event_timestamp`` and the catalogue's features) into
    the online store, as ``write_to_online_store`` does, in one transaction; returns the store rows
    (subscriber x feature) written. A SQLite store is written by ``features.sqlite_online.write``
    (Feast's rows built in bulk: half the CPU of Feast's value proto and ``execute`` per feature and
    subscriber), and only the ``cells`` (rows x catalogue features, bool) given; any other store by
    Feast, whole rows."""
    if df.empty:
        return 0
    view = store.get_feature_view(VIEW)
    online = store._get_provider().online_store
    if sqlite_online.can_write(online, store.config, view):
        return sqlite_online.write(
            online,
            store.config,
            view,
            JOIN_KEY,
            df[JOIN_KEY].astype(str).tolist(),
            [t.to_pydatetime() for t in pd.to_datetime(df["event_timestamp"], utc=True)],
            df[FEATURE_NAMES].to_numpy(dtype="float64"),
            FEATURE_NAMES,
            cells,
        )
    store.write_to_online_store(VIEW, df=df)
    return len(df) * len(FEATURE_NAMES)


def online_features(store, subscriber_ids: list[str], event_timestamps: bool = False) -> pd.DataFrame:
    """Online values per id, in request order; an id unknown to the store comes back as all-NaN.

    ``event_timestamps=True`` adds ``event_timestamp`` (UTC; NaT for an unknown id): the snapshot the
    values belong to, which the service judges staleness by. Feast returns it with the values, so it
    costs no second read.
    """
    resp = store.get_online_features(
        features=FEATURE_REFS, entity_rows=[{JOIN_KEY: i} for i in subscriber_ids]
    )
    d = resp.to_dict(include_event_timestamps=event_timestamps)
    # one float block built in numpy: a per-column pandas astype cost 10x Feast's own read here
    values = np.array([[np.nan if v is None else v for v in d[n]] for n in FEATURE_NAMES], dtype="float64").T
    df = pd.DataFrame(values.reshape(len(subscriber_ids), len(FEATURE_NAMES)), columns=FEATURE_NAMES)
    df.insert(0, JOIN_KEY, list(d[JOIN_KEY]))
    if event_timestamps:  # one view: every feature of a row shares its timestamp; 0 = not found
        secs = np.array(d[FEATURE_NAMES[0] + TIMESTAMP_POSTFIX], dtype="int64")
        df["event_timestamp"] = pd.to_datetime(
            np.where(secs > 0, secs, np.iinfo("int64").min), unit="s", utc=True
        )
    return df


@dataclass(frozen=True)
class OnlineRows:
    """What the online store holds for some ids, in request order, as numpy: ``values`` is
    (ids x catalogue features) float64, NaN where the store has no value; ``stamps`` holds each id's
    event time (UTC, whole seconds, as ``get_online_features`` reports it), None when unknown."""

    values: np.ndarray
    stamps: list[dt.datetime | None]


def online_rows(store: FeatureStore, subscriber_ids: list[str]) -> OnlineRows:
    """The ids' online values through Feast's own store read, without its response objects.

    ``get_online_features`` builds a protobuf response, then Python lists, then a frame: 10x the read
    itself for one id. After the same registry look-up and serving gate (a disabled view, or one left
    MATERIALIZING, raises), a SQLite store is read by ``features.sqlite_online`` (Feast's query on
    Feast's connection, its value protos decoded in bulk: Feast's own ``online_read`` parses one per
    feature per id, ~8x the CPU for 100 ids); any other store by its provider's ``online_read``."""
    view = _servable_view(store)
    online = store._get_provider().online_store
    if isinstance(online, SqliteOnlineStore):
        got = sqlite_online.read(online, store.config, view, JOIN_KEY, subscriber_ids, FEATURE_NAMES)
        return OnlineRows(got.values, got.stamps)
    keys = [
        EntityKeyProto(join_keys=[JOIN_KEY], entity_values=[ValueProto(string_val=i)]) for i in subscriber_ids
    ]
    # a copy: Feast's Redis store appends its timestamp key to the list it is given
    read = store._get_provider().online_read(store.config, view, keys, list(FEATURE_NAMES))
    values = np.full((len(subscriber_ids), len(FEATURE_NAMES)), np.nan)
    stamps: list[dt.datetime | None] = []
    for i, (ts, found) in enumerate(read):
        # no row: None; Redis gives the epoch then, which get_online_features reports as 0 (not found)
        found = found or {}
        known = ts is not None and bool(found) and ts.timestamp() >= 1
        stamps.append(ts.astimezone(dt.UTC).replace(microsecond=0) if known else None)
        for j, name in enumerate(FEATURE_NAMES):
            value = found.get(name)
            kind = None if value is None else value.WhichOneof("val")
            if kind is not None and kind != "null_val":
                values[i, j] = getattr(value, kind)
    return OnlineRows(values, stamps)


def online_rows_now(store: FeatureStore, subscriber_ids: list[str]) -> OnlineRows | None:
    """:func:`online_rows` if the store can answer without waiting, else None: a SQLite store read on a
    connection that fails at once on a writer's lock (``sqlite_online.unwaiting_connection``). The
    service tries a few ids this way on its event loop, where a thread hop costs more than the read
    (~0.2 ms of CPU against 0.1 ms); None (Redis, a network round trip; SQLite being loaded; any
    SQLite error, which the thread's read then reports) sends the read to a thread."""
    online = store._get_provider().online_store
    if not isinstance(online, SqliteOnlineStore):
        return None
    view = _servable_view(store)
    try:
        conn = sqlite_online.unwaiting_connection(online, store.config)
        got = sqlite_online.read(online, store.config, view, JOIN_KEY, subscriber_ids, FEATURE_NAMES, conn)
    except sqlite3.Error:
        return None
    return OnlineRows(got.values, got.stamps)


VIEW_RECHECK_S = 1.0  # the request path looks the view up in the registry at most this often
_views: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # store -> (looked up at, view)


def _servable_view(store: FeatureStore) -> FeatureView:
    """:func:`_registry_view`, looked up again once it is :data:`VIEW_RECHECK_S` old: Feast's
    registry cache takes a lock and a stat of the file on every call, which concurrent reads queue on
    (a sixth of a worker's busy time at concurrency 32). A failed look-up is not kept."""
    now = time.monotonic()
    hit = _views.get(store)
    if hit is None or now - hit[0] > VIEW_RECHECK_S:
        hit = _views[store] = (now, _registry_view(store))
    return hit[1]


def _registry_view(store: FeatureStore) -> FeatureView:
    """The feature view from the registry's cache, gated as Feast gates an online read
    (``feast.utils._get_feature_views_to_use``): enabled, and generated or available online.
    ``list_feature_views`` keeps its parsed views per registry version (``get_feature_view`` parses
    the view's protobuf on every call: 3 ms with Feast's type checks)."""
    views = store.registry.list_feature_views(store.project, allow_cache=True)
    view = next((v for v in views if v.name == VIEW), None)
    if view is None:
        raise FeatureViewNotFoundException(VIEW, store.project)
    if not getattr(view, "enabled", True):
        raise ValueError(f"feature view {VIEW!r} is disabled and cannot serve features")
    servable = {FeatureViewState.STATE_UNSPECIFIED, FeatureViewState.AVAILABLE_ONLINE}
    if getattr(store.registry, "serve_features_while_materializing", False):
        servable.add(FeatureViewState.MATERIALIZING)
    if isinstance(view.state, FeatureViewState) and view.state not in servable:
        raise ValueError(f"feature view {VIEW!r} is in state {view.state.name} and cannot serve features")
    return view


def _as_date(value: dt.date | dt.datetime | str | None) -> dt.date:
    if value is None:
        return dt.datetime.now(dt.UTC).date()
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value.date() if isinstance(value, dt.datetime) else value


def _table_snapshots(settings: Settings) -> tuple[list[dt.date], list[str]]:
    """The feature table's snapshots, and the (sorted) subscriber ids of its newest one."""
    if not settings.feature_table.exists():
        return [], []
    df = pd.read_parquet(settings.feature_table, columns=[JOIN_KEY, "event_timestamp"])
    if df.empty:
        return [], []
    newest = df["event_timestamp"].max()
    snaps = sorted({t.date() for t in df["event_timestamp"].unique()})
    return snaps, sorted(df.loc[df["event_timestamp"] == newest, JOIN_KEY].astype(str))


@dataclass(frozen=True)
class OnlineSample:
    """What the online store answered for a sample of the newest snapshot's subscribers."""

    subscribers: int
    found: int
    at_table_latest: int
    newest: dt.date | None  # the newest snapshot among the answers


@dataclass(frozen=True)
class Freshness:
    """How fresh the served features are: ``fresh``, ``stale`` or ``never materialised``."""

    view: str
    online_store: str
    as_of: dt.date
    max_staleness_days: int
    status: str = "never materialised"
    message: str = ""
    latest_snapshot: dt.date | None = None
    age_days: int | None = None
    source: str | None = None
    materialised_until: pd.Timestamp | None = None
    intervals: tuple[tuple[pd.Timestamp, pd.Timestamp], ...] = ()
    table_latest_snapshot: dt.date | None = None
    online_sample: OnlineSample | None = None

    @property
    def ok(self) -> bool:
        return self.status == "fresh"

    def format(self) -> str:
        """A short table for the command line."""
        age = self.age_days
        rows = [
            ("status", self.status),
            (
                "latest snapshot",
                f"{self.latest_snapshot or '-'}" + (f" (from the {self.source})" if self.source else ""),
            ),
            ("age", f"{_days(age)} on {self.as_of}" if age is not None else f"- (on {self.as_of})"),
            ("bound", f"{self.max_staleness_days} days (features.max_staleness_days)"),
            (
                "materialised until",
                f"{self.materialised_until.isoformat() if self.materialised_until else 'never'}"
                + (f" ({len(self.intervals)} interval(s))" if self.intervals else ""),
            ),
            ("feature table", f"newest snapshot {self.table_latest_snapshot or '-'}"),
        ]
        if (sample := self.online_sample) is not None:
            rows.append(
                (
                    "online sample",
                    f"{sample.found}/{sample.subscribers} subscribers found, "
                    f"{sample.at_table_latest} at the table's newest snapshot",
                )
            )
        width = max(len(k) for k, _ in rows)
        head = f"feature freshness: {self.view} in the {self.online_store} online store"
        return "\n".join([head, *(f"  {k:<{width}}  {v}" for k, v in rows)])


def _days(n: int) -> str:
    return f"{n} day{'' if abs(n) == 1 else 's'}"


def freshness(
    settings: Settings, as_of: dt.date | dt.datetime | str | None = None, sample: int = 20
) -> Freshness:
    """How fresh the features the online store serves are, against ``features.max_staleness_days``.

    Reads the feature view's materialisation intervals from the Feast registry and asks the online
    store itself for up to ``sample`` subscribers of the feature table's newest snapshot (their event
    timestamps show which snapshot is served). ``status`` is ``fresh``, ``stale`` (older than the
    bound, the online store behind the feature table, or serving nothing) or ``never materialised``
    (no registry, no view, or no interval loaded). ``as_of`` defaults to today (UTC). Creates
    nothing when there is no registry yet.
    """
    report = Freshness(
        VIEW, settings.feast.online_store.type, _as_date(as_of), settings.features.max_staleness_days
    )
    store, intervals, why = _materialised(settings)
    if why:
        return replace(
            report, message=f"the online store has never been materialised ({why}): run `churn features`"
        )
    until = max(b for _, b in intervals)
    snaps, ids = _table_snapshots(settings)
    covered = [s for s in snaps if any(a <= pd.Timestamp(s, tz="UTC") < b for a, b in intervals)]
    latest, source = (covered[-1] if covered else None), "registry intervals x feature table"
    if not snaps:  # no table to compare with: the newest instant the intervals cover
        latest, source = (until - pd.Timedelta(seconds=1)).date(), "registry intervals"
    try:
        online = _online_sample(store, ids, snaps, sample) if ids and sample > 0 else None
    except Exception as exc:  # a report, never a traceback: say what is wrong and what to run
        return replace(
            report,
            status="stale",
            materialised_until=until,
            intervals=tuple(intervals),
            table_latest_snapshot=snaps[-1] if snaps else None,
            message=_unreadable(settings, store, exc),
        )
    if online is not None:
        latest, source = online.newest, "online store sample"
    report = replace(
        report,
        materialised_until=until,
        intervals=tuple(intervals),
        table_latest_snapshot=snaps[-1] if snaps else None,
        source=source,
        online_sample=online,
        latest_snapshot=latest,
        age_days=(report.as_of - latest).days if latest is not None else None,
    )
    return _judge(report)


def _unreadable(settings: Settings, store: FeatureStore, exc: Exception) -> str:
    if store.get_feature_view(VIEW).state == FeatureViewState.MATERIALIZING:
        return (
            "a load into the online store was interrupted: the feature view is left MATERIALIZING and "
            "serving refuses it: run `churn features` to load it again"
        )
    return f"{describe_online_store(settings)} cannot be read ({type(exc).__name__}: {exc})"


def _materialised(settings: Settings) -> tuple[FeatureStore | None, list, str | None]:
    """The store and the view's materialised intervals (sorted, UTC), or why there are none."""
    if not (settings.feast_dir / "registry.db").exists():
        return None, [], f"no Feast registry in {settings.feast_dir}"
    store = get_store(settings)
    try:
        view = store.get_feature_view(VIEW)
    except (FeastObjectNotFoundException, ProjectNotFoundException):
        return store, [], f"no feature view {VIEW} in project {settings.feast.project}"
    intervals = sorted(
        (pd.Timestamp(a).tz_convert("UTC"), pd.Timestamp(b).tz_convert("UTC"))
        for a, b in view.materialization_intervals
    )
    return store, intervals, None if intervals else f"feature view {VIEW} has no materialised interval"


def _online_sample(store: FeatureStore, ids: list[str], snaps: list[dt.date], sample: int) -> OnlineSample:
    """Ask the online store for up to ``sample`` of the newest snapshot's subscribers."""
    picked = ids[:: max(1, len(ids) // sample)][:sample]
    resp = store.get_online_features(features=FEATURE_REFS[:1], entity_rows=[{JOIN_KEY: i} for i in picked])
    stamps = [
        s for s in resp.to_dict(include_event_timestamps=True)[FEATURE_NAMES[0] + TIMESTAMP_POSTFIX] if s > 0
    ]
    served = [dt.datetime.fromtimestamp(s, dt.UTC).date() for s in stamps]
    return OnlineSample(
        len(picked), len(served), sum(d == snaps[-1] for d in served), max(served) if served else None
    )


def _judge(r: Freshness) -> Freshness:
    """Status and message from what is served, its age and the feature table's newest snapshot."""
    latest, table, bound, day = r.latest_snapshot, r.table_latest_snapshot, r.max_staleness_days, r.as_of
    if latest is None:
        return replace(
            r,
            status="stale",
            message=f"the online store serves nothing for subscribers of the newest snapshot {table} "
            f"although the registry says materialised until {r.materialised_until}: run `churn features`",
        )
    sampled = r.online_sample
    partial = bool(sampled and sampled.at_table_latest < sampled.subscribers)
    if r.age_days > bound:
        return replace(
            r,
            status="stale",
            message=f"features are stale: the online store's newest snapshot {latest} is "
            f"{_days(r.age_days)} old on {day} (bound features.max_staleness_days = {bound}): add a newer "
            "snapshot (with data up to it) to features.snapshots and run `churn features`",
        )
    if table is not None and (latest < table or partial):
        got = (
            f" ({sampled.at_table_latest} of {sampled.subscribers} sampled subscribers served)"
            if sampled
            else ""
        )
        return replace(
            r,
            status="stale",
            message=f"the online store lags the feature table: it serves {latest}, the "
            f"feature table has {table}{got}: run `churn features` to load it",
        )
    return replace(
        r,
        status="fresh",
        message=f"features are fresh: newest snapshot {latest}, {_days(r.age_days)} old on {day} (bound {bound})",
    )
