"""Feast on Spark: the training frame from its Spark offline store equals the file store's, and the
Redis load from Spark partitions is what Feast's own materialise writes, key for key."""

import shutil
import uuid

import pandas as pd
import pytest
import redis

from core.config import load_settings
from features.spark_store import FEAST_PARSER_CONF, training_frame
from features.store import (
    FEATURE_REFS,
    apply_and_materialize,
    freshness,
    get_store,
    historical_features,
    online_features,
    repo_config_dict,
)

REDIS = {"type": "redis", "redis_connection": "127.0.0.1:6379"}


@pytest.fixture
def redis_projects():
    """Unique Feast project names on the local Redis; their keys are removed afterwards."""
    client = redis.Redis(host="127.0.0.1", port=6379)
    client.ping()  # a clear error if the server is not running
    names = []

    def _new(tag: str) -> str:
        names.append(f"churnwarn_test_spark_{tag}_{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield _new
    for name in names:  # every key of a project ends with its name
        keys = list(client.scan_iter(match=b"*" + name.encode(), count=10_000))
        if keys:
            client.delete(*keys)


def _hashes(project: str) -> dict:
    """Every Redis hash of a project, keyed without the project suffix."""
    client = redis.Redis(host="127.0.0.1", port=6379)
    suffix = project.encode()
    return {k[: -len(suffix)]: client.hgetall(k) for k in client.scan_iter(match=b"*" + suffix, count=10_000)}


def test_training_frame_on_spark_equals_the_file_offline_store(trained, copy_trained, spark):
    s = copy_trained(features={"engine": "spark"}, feast={"project": f"spark_{uuid.uuid4().hex[:6]}"})
    assert repo_config_dict(s)["offline_store"]["type"] == "spark"
    apply_and_materialize(s)  # SQLite online store: Feast's local engine, reading through Spark
    labels = pd.read_parquet(trained.label_table)
    on_file = historical_features(trained, labels)
    on_spark = historical_features(s, labels)
    pd.testing.assert_frame_equal(on_spark, on_file, check_exact=True)

    # the entities as a Spark DataFrame: the join never needs them on the driver
    lazy = training_frame(get_store(s), s, spark.read.parquet(str(trained.label_table)), FEATURE_REFS)
    collected = lazy.toPandas().sort_values(["event_timestamp", "subscriber_id"], ignore_index=True)
    collected["event_timestamp"] = collected["event_timestamp"].dt.tz_localize("UTC")  # the session's zone
    pd.testing.assert_frame_equal(collected, on_file, check_exact=True)
    assert spark.conf.get(FEAST_PARSER_CONF, None) is None  # Feast's parser option did not stay on

    ids = labels["subscriber_id"].unique().tolist()
    pd.testing.assert_frame_equal(
        online_features(get_store(s), ids, event_timestamps=True),
        online_features(get_store(trained), ids, event_timestamps=True),
        check_exact=True,
    )


def test_redis_load_from_spark_partitions_equals_feast_materialize(
    trained, copy_trained, make_config, tmp_path, redis_projects, spark
):
    on_spark = copy_trained(
        features={"engine": "spark"}, feast={"project": redis_projects("engine"), "online_store": REDIS}
    )
    shutil.copytree(trained.workdir, tmp_path / "local")
    local = load_settings(
        make_config(tmp_path / "local", feast={"project": redis_projects("local"), "online_store": REDIS})
    )
    assert repo_config_dict(on_spark)["batch_engine"] == {"type": "spark.engine"}
    assert "batch_engine" not in repo_config_dict(local)

    apply_and_materialize(local)
    spark.sparkContext.setJobGroup("feast-load", "the Redis load on the executors")
    try:
        apply_and_materialize(on_spark)
        assert spark.sparkContext.statusTracker().getJobIdsForGroup("feast-load")  # Spark did the load
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)  # what clearJobGroup does
    stores = get_store(local), get_store(on_spark)
    try:
        ids = pd.read_parquet(trained.feature_table)["subscriber_id"].unique().tolist()
        from_spark = online_features(stores[1], [*ids, "NOBODY"], event_timestamps=True)
        from_local = online_features(stores[0], [*ids, "NOBODY"], event_timestamps=True)
        pd.testing.assert_frame_equal(from_spark, from_local, check_exact=True)
        assert from_spark.iloc[:-1].notna().all().all() and from_spark.iloc[-1, 1:].isna().all()
        spark_hashes = _hashes(on_spark.feast.project)
        assert len(spark_hashes) == len(ids) and spark_hashes == _hashes(local.feast.project)  # byte for byte
        assert freshness(on_spark, as_of=trained.features.snapshots[-1]).status == "fresh"
    finally:
        for store in stores:
            store.teardown()
