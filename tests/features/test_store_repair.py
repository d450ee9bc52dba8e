"""The online store is verified, not trusted: a store deleted, emptied or left MATERIALIZING by a killed
load is reloaded by the next `churn features`, `freshness` says what is wrong without a traceback, and
an unreachable Redis is named with exit 2."""

import datetime as dt
import socket
import uuid

import numpy as np
import pandas as pd
import pytest
import redis
from feast.feature_view import FeatureViewState
from typer.testing import CliRunner

from features.catalogue import FEATURE_NAMES
from features.store import VIEW, freshness, get_store, online_features
from pipelines.cli import app
from pipelines.feature_build import build_features

REDIS_DB = 7  # a database of the local Redis that these tests alone use (and empty)


def _newest(settings) -> pd.DataFrame:
    feats = pd.read_parquet(settings.feature_table)
    return feats[feats["event_timestamp"] == feats["event_timestamp"].max()].set_index("subscriber_id")


def _assert_serves_the_table(settings) -> None:
    table = _newest(settings)
    ids = list(table.index[:200])
    online = online_features(get_store(settings), ids).set_index("subscriber_id")
    np.testing.assert_allclose(online.loc[ids, FEATURE_NAMES], table.loc[ids, FEATURE_NAMES], rtol=1e-12)


def test_a_deleted_sqlite_store_is_reloaded_in_full(copy_trained, caplog):
    s = copy_trained()
    (s.feast_dir / "online_store.db").unlink()

    summary = build_features(s)

    assert summary.materialised == "full"
    assert "holds none of 20 sampled subscribers" in caplog.text
    _assert_serves_the_table(s)


def test_a_view_left_materializing_is_reported_then_repaired(copy_trained):
    s = copy_trained()
    get_store(s).set_feature_view_state(VIEW, FeatureViewState.MATERIALIZING)  # as a killed load leaves it
    as_of = _newest(s)["event_timestamp"].max().date() + dt.timedelta(days=1)

    report = freshness(s, as_of=as_of)  # no traceback: what is wrong and what to run
    assert not report.ok and "interrupted" in report.message and "churn features" in report.message
    result = CliRunner().invoke(app, ["freshness", "--config", str(s.config_path), "--as-of", str(as_of)])
    assert result.exit_code == 1 and "interrupted" in result.output and "Traceback" not in result.output

    summary = build_features(s)

    assert summary.materialised == "full"
    assert get_store(s).get_feature_view(VIEW).state == FeatureViewState.AVAILABLE_ONLINE
    assert freshness(s, as_of=as_of).ok
    _assert_serves_the_table(s)


def test_a_registry_cut_short_by_a_kill_is_set_aside_and_rebuilt(copy_trained, caplog):
    s = copy_trained()
    registry = s.feast_dir / "registry.db"
    whole = registry.read_bytes()
    registry.write_bytes(whole[: len(whole) // 3])  # Feast writes it in place: a kill mid-write

    summary = build_features(s)

    assert "registry" in caplog.text and "unreadable" in caplog.text
    assert (s.feast_dir / "registry.db.unreadable").exists()
    assert summary.materialised == "full"
    _assert_serves_the_table(s)


@pytest.fixture
def redis_db():
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    yield client
    client.flushdb()


def test_an_emptied_redis_is_reloaded_in_full(copy_trained, redis_db, caplog):
    s = copy_trained(
        feast={
            "project": f"repair_{uuid.uuid4().hex[:8]}",
            "online_store": {"type": "redis", "redis_connection": f"127.0.0.1:6379,db={REDIS_DB}"},
        }
    )
    assert build_features(s).materialised == "full"  # a new project: the first load is whole
    assert build_features(s).materialised == "up to date"  # the store answers: trusted
    redis_db.flushdb()  # e.g. a Redis restarted without persistence

    summary = build_features(s)

    assert summary.materialised == "full"
    assert "Redis online store at 127.0.0.1:6379" in caplog.text
    _assert_serves_the_table(s)


def test_a_closed_redis_port_exits_2_naming_it(copy_trained):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = copy_trained(
        feast={
            "project": f"closed_{uuid.uuid4().hex[:8]}",
            "online_store": {"type": "redis", "redis_connection": f"127.0.0.1:{port}"},
        }
    )

    result = CliRunner().invoke(app, ["features", "--config", str(s.config_path)])

    assert result.exit_code == 2, result.output
    assert f"cannot reach the Redis online store at 127.0.0.1:{port}" in result.output
