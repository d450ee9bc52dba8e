"""Feast on Spark: the training frame from its Spark offline store equals the file store's, and the
Redis load from Spark partitions is what Feast's own materialise writes, key for key (in local mode,
and on a standalone cluster whose executors are JVMs and Python workers of their own)."""

import json
import shutil
import subprocess
import sys
import uuid

import pandas as pd
import pytest
import redis

from core.config import REPO_ROOT, load_settings
from features.spark_cluster import standalone_cluster
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


# argv: config, master url. Prints one JSON line: tasks per executor id of the load's application.
# Adaptive execution would coalesce the tiny table's shuffle into one task, and the load's stages could
# then all land on one executor by chance (1 in 8): without coalescing, its 4 shuffle tasks spread.
JOB = """
import json, sys
from urllib.request import urlopen
from core.config import SparkConfig, load_settings
from features.spark_engine import spark_session
from features.store import apply_and_materialize

s = load_settings(sys.argv[1])
conf = {"spark.executor.memory": "1g", "spark.executor.cores": "1", "spark.cores.max": "2",
        "spark.driver.host": "127.0.0.1", "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s", "spark.locality.wait": "0s", "spark.sql.shuffle.partitions": "4",
        "spark.sql.adaptive.coalescePartitions.enabled": "false", "spark.pyspark.python": sys.executable}
spark = spark_session(SparkConfig(master=sys.argv[2], app_name="feast-load-test", conf=conf))
apply_and_materialize(s)
sc = spark.sparkContext
tasks = {e["id"]: e["totalTasks"] for e in
         json.load(urlopen(f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/executors"))}
print(json.dumps({"master": sc.master, "tasks": tasks}))
spark.stop()
"""


@pytest.mark.slow  # three JVMs for the cluster, one for the driver of the load
def test_redis_load_on_a_two_worker_cluster_equals_feast_materialize(
    trained, copy_trained, make_config, tmp_path, redis_projects
):
    on_cluster = copy_trained(
        features={"engine": "spark"}, feast={"project": redis_projects("cluster"), "online_store": REDIS}
    )
    shutil.copytree(trained.workdir, tmp_path / "local")
    local = load_settings(
        make_config(tmp_path / "local", feast={"project": redis_projects("local"), "online_store": REDIS})
    )
    try:
        with standalone_cluster(workers=2, cores_per_worker=1, memory_per_worker="1g") as cluster:
            job = subprocess.run(
                [sys.executable, "-c", JOB, str(on_cluster.workdir / "config.yaml"), cluster.url],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=600,
            )
        assert job.returncode == 0, job.stderr[-3000:]
        seen = json.loads(job.stdout.strip().splitlines()[-1])
        assert seen["master"] == cluster.url
        executors = {e: n for e, n in seen["tasks"].items() if e != "driver"}
        assert len(executors) == 2 and all(n > 0 for n in executors.values())  # both ran tasks of the load

        apply_and_materialize(local)  # Feast's local engine, on the driver: the reference
        ids = pd.read_parquet(trained.feature_table)["subscriber_id"].unique().tolist()
        hashes = _hashes(on_cluster.feast.project)
        assert len(hashes) == len(ids) and hashes == _hashes(local.feast.project)
        pd.testing.assert_frame_equal(
            online_features(get_store(on_cluster), ids, event_timestamps=True),
            online_features(get_store(local), ids, event_timestamps=True),
            check_exact=True,
        )
    finally:
        get_store(local).teardown()
