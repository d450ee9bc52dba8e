"""The Spark feature engine on a real standalone cluster: a master and two workers on this machine.

The job runs in a subprocess (this process holds the local[2] session of the other Spark tests), on
executors in their own JVMs started by the workers; its written feature table must equal DuckDB's
on the same raw data, and nothing the cluster started may outlive it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import psutil
import pytest

from core.config import REPO_ROOT, load_settings
from features.catalogue import FEATURE_NAMES
from features.compute import compute_features
from features.spark_cluster import ClusterError, fetch_json, standalone_cluster
from pipelines.generate import generate
from pipelines.ingest import ingest

pytestmark = pytest.mark.slow  # three JVMs for the cluster, one for the driver: ~1 min

# argv: config, master url, output folder. Prints one JSON line: the app id, the driver JVM's pid,
# the executor JVMs seen while the session was alive (pid, parent pid) and tasks per executor.
JOB = """
import json, sys
from pathlib import Path
from urllib.request import urlopen
import psutil
from core.config import SparkConfig, load_settings
from features.spark_engine import spark_session, write_features

s = load_settings(sys.argv[1])
conf = {"spark.executor.memory": "1g", "spark.executor.cores": "1", "spark.cores.max": "2",
        "spark.driver.host": "127.0.0.1", "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s", "spark.locality.wait": "0s", "spark.sql.shuffle.partitions": "2"}
spark = spark_session(SparkConfig(master=sys.argv[2], app_name="cluster-test", conf=conf))
sc = spark.sparkContext
write_features(spark, s.raw_dir, list(s.features.snapshots), s, Path(sys.argv[3]))
app = sc.applicationId
execs = [p for p in psutil.process_iter(["pid", "ppid", "cmdline"])
         if "CoarseGrainedExecutorBackend" in " ".join(p.info["cmdline"] or []) and app in p.info["cmdline"]]
drivers = [c.pid for c in psutil.Process().children() if c.name() == "java"]
tasks = {e["id"]: e["totalTasks"] for e in json.load(urlopen(f"{sc.uiWebUrl}/api/v1/applications/{app}/executors"))}
print(json.dumps({"app": app, "driver_pids": drivers, "tasks": tasks,
                  "executors": [[p.info["pid"], p.info["ppid"]] for p in execs]}))
spark.stop()
"""


@pytest.fixture
def raw_settings(tmp_path, make_config):
    """A tiny generated and ingested workdir of its own (CI runs on a clean clone)."""
    work = tmp_path / "work"
    snapshots = {"snapshots": ["2026-04-01", "2026-06-01"]}  # two: the job's cost is per snapshot
    settings = load_settings(make_config(work, data={"n_subscribers": 200, "seed": 5}, features=snapshots))
    generate(settings)
    ingest(settings, skip_validation=True)  # the data was just generated: validation is not under test
    return settings


def _spark_table(out) -> pd.DataFrame:
    df = pd.read_parquet(out).drop(columns=["snapshot"])
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True).astype("datetime64[us, UTC]")
    return df.sort_values(["event_timestamp", "subscriber_id"], ignore_index=True)


def _assert_equal(duck: pd.DataFrame, spark: pd.DataFrame) -> None:
    """Same subscribers and snapshots; whole-number features exact, the rest within 1e-9 relative."""
    assert list(duck["subscriber_id"]) == list(spark["subscriber_id"])
    assert (duck["event_timestamp"].to_numpy() == spark["event_timestamp"].to_numpy()).all()
    for name in [*FEATURE_NAMES, "churned"]:
        a, b = duck[name].to_numpy(dtype="float64"), spark[name].to_numpy(dtype="float64")
        exact = np.all(a == np.round(a))
        bad = np.flatnonzero(a != b) if exact else np.flatnonzero(~np.isclose(a, b, rtol=1e-9, atol=0))
        assert not len(bad), f"{name}: {len(bad)} rows differ, e.g. {a[bad[:3]]} vs {b[bad[:3]]}"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_features_on_a_two_worker_cluster_equal_duckdb(raw_settings, tmp_path):
    s, out = raw_settings, tmp_path / "features"
    with standalone_cluster(workers=2, cores_per_worker=1, memory_per_worker="1g") as cluster:
        script = (
            tmp_path / "job.py"
        )  # a file, not `python -c`: PySpark takes a __main__ without one for doctests
        script.write_text(JOB)
        job = subprocess.run(
            [sys.executable, str(script), str(s.workdir / "config.yaml"), cluster.url, str(out)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=900,  # ~1 min on an idle machine; Spark's fixed costs stretch under load
        )
        assert job.returncode == 0, job.stderr[-3000:]
        seen = json.loads(job.stdout.strip().splitlines()[-1])
        status = cluster.status()
        finished = [fetch_json(f"{w.web_ui}/json")["finishedexecutors"] for w in cluster.workers]
        daemons = [cluster.master_pid, *cluster.worker_pids]
    # the job ran on two executors, one per worker, each a JVM of its own beside the driver's
    assert [a["id"] for a in status["completedapps"]] == [seen["app"]]
    assert all(any(e["appid"] == seen["app"] for e in f) for f in finished)
    executors = seen["executors"]
    assert len(executors) == 2 and {ppid for _, ppid in executors} == set(cluster.worker_pids)
    assert len(seen["driver_pids"]) == 1 and seen["driver_pids"][0] not in {p for p, _ in executors}
    assert all(n > 0 for e, n in seen["tasks"].items() if e != "driver") and len(seen["tasks"]) == 3
    # nothing the cluster started is left
    assert not [p for p in [*daemons, *(p for p, _ in executors)] if _alive(p)]
    # the written table is DuckDB's, row for row
    feats, labels = compute_features(s.raw_dir, list(s.features.snapshots), s)
    duck = feats.merge(labels, on=["subscriber_id", "event_timestamp"])
    duck = duck.sort_values(["event_timestamp", "subscriber_id"], ignore_index=True)
    spark = _spark_table(out).rename(columns={"churned_within_horizon": "churned"})
    assert duck["event_timestamp"].nunique() == len(s.features.snapshots) and len(duck) > 300
    _assert_equal(duck, spark)


def test_no_java_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ClusterError, match="no Java found"), standalone_cluster():
        pass


def test_a_worker_that_dies_is_reported_with_its_log(tmp_path):
    """A worker refused at start (memory it cannot parse): the error names it and shows its log."""
    with pytest.raises(ClusterError, match=r"exited with .*its log:\n(.|\n)*memory") as err:
        with standalone_cluster(workers=1, memory_per_worker="lots", base_dir=tmp_path / "c"):
            pass
    assert str(err.value).startswith("Spark worker 0 at http://127.0.0.1:")
    assert not [
        p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
