"""The Feast feature store: subscriber entity, file source over the feature table, one feature view.

The store is built from the typed settings (no hand-edited YAML to drift), and a matching
``feature_store.yaml`` is written into the repo folder so the ``feast`` CLI and UI work on it too.
Training reads ``get_historical_features`` (point-in-time join); serving reads
``get_online_features`` after ``materialize``; both see the same table.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
import pandas as pd
import yaml

from features.catalogue import CATALOGUE, FEATURE_NAMES
from pipelines.config import Settings

log = logging.getLogger(__name__)

ENTITY = "subscriber"
JOIN_KEY = "subscriber_id"
VIEW = "subscriber_features"
FEATURE_REFS = [f"{VIEW}:{n}" for n in FEATURE_NAMES]


def _online_config(settings: Settings) -> dict:
    osc = settings.feast.online_store
    if osc.type == "redis":
        return {"type": "redis", "connection_string": osc.redis_connection}
    return {"type": "sqlite", "path": str(settings.feast_dir / "online_store.db")}


def repo_config_dict(settings: Settings) -> dict:
    return {
        "project": settings.feast.project,
        "provider": "local",
        "registry": str(settings.feast_dir / "registry.db"),
        "online_store": _online_config(settings),
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }


def get_store(settings: Settings):
    """A FeatureStore for these settings; writes ``feature_store.yaml`` beside the registry."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    cfg = repo_config_dict(settings)
    yaml_path = settings.feast_dir / "feature_store.yaml"
    text = yaml.safe_dump(cfg, sort_keys=False)
    if not yaml_path.exists() or yaml_path.read_text() != text:
        yaml_path.write_text(text)
    return FeatureStore(config=RepoConfig(repo_path=settings.feast_dir, **cfg))


def definitions(settings: Settings) -> list:
    """Feast objects for the catalogue: defined from the same list the models and reasons use."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    subscriber = Entity(name=ENTITY, join_keys=[JOIN_KEY], value_type=ValueType.STRING, description="a mobile subscriber")
    source = FileSource(
        name="subscriber_features_source",
        path=str(settings.feature_table.resolve()),
        timestamp_field="event_timestamp",
    )
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


def apply_and_materialize(settings: Settings, snapshots: list[dt.date] | None = None, *,
                          incremental: bool = False) -> dict:
    """Register the definitions and load the snapshots' newest values into the online store.

    Full (the default): materialise the whole span of ``snapshots`` (default: the configured ones).
    ``incremental=True``: Feast's ``materialize_incremental`` loads only what lies after the view's
    last materialised interval, up to the newest snapshot; nothing if that is already loaded, and a
    full load if the view was never materialised. Returns ``{"mode": "full" | "incremental" |
    "up to date", "start": ..., "end": ...}`` (ISO timestamps).
    """
    store = get_store(settings)
    store.apply(definitions(settings))
    snaps = snapshots or settings.features.snapshots
    start = pd.Timestamp(min(snaps), tz="UTC") - pd.Timedelta(days=1)
    end = pd.Timestamp(max(snaps), tz="UTC") + pd.Timedelta(seconds=1)
    last = store.get_feature_view(VIEW).most_recent_end_time if incremental else None
    last = pd.Timestamp(last).tz_convert("UTC") if last is not None else None
    where = f"into the {settings.feast.online_store.type} online store"
    if last is not None and end <= last:
        log.info("feast: applied %s; online store already holds everything up to %s", VIEW, last)
        return {"mode": "up to date", "start": None, "end": last.isoformat()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if last is not None:
            store.materialize_incremental(end_date=end.to_pydatetime(), feature_views=[VIEW])
        else:
            store.materialize(start_date=start.to_pydatetime(), end_date=end.to_pydatetime())
    mode, start = ("incremental", last) if last is not None else ("full", start)
    log.info("feast: applied %s and materialised %s %s..%s %s", VIEW, mode, start, end, where)
    return {"mode": mode, "start": start.isoformat(), "end": end.isoformat()}


def historical_features(settings: Settings, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join of the feature view onto ``entity_df`` (subscriber_id, event_timestamp, ...)."""
    store = get_store(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = store.get_historical_features(entity_df=entity_df, features=FEATURE_REFS).to_df()
    return df.sort_values(["event_timestamp", JOIN_KEY], ignore_index=True)


def online_features(store, subscriber_ids: list[str]) -> pd.DataFrame:
    """Online values per id, in request order; an id unknown to the store comes back as all-NaN."""
    resp = store.get_online_features(features=FEATURE_REFS, entity_rows=[{JOIN_KEY: i} for i in subscriber_ids])
    df = pd.DataFrame(resp.to_dict())
    return df[[JOIN_KEY, *FEATURE_NAMES]].astype({n: "float64" for n in FEATURE_NAMES})

