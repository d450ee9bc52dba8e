"""A training process killed mid-run leaves its MLflow runs RUNNING; the next training marks them FAILED."""

import os
import signal
import socket
import subprocess
import sys
import textwrap

import mlflow

from models.tracking import HOST_TAG, PID_TAG, end_abandoned_runs


def _killed_run(uri: str, exp_id: str) -> str:
    """A process that starts a run tagged as training does, then is killed with SIGKILL."""
    code = textwrap.dedent(
        f"""
        import os, socket, time, mlflow
        mlflow.set_tracking_uri({uri!r})
        run = mlflow.start_run(experiment_id={exp_id!r})
        mlflow.set_tags({{{PID_TAG!r}: str(os.getpid()), {HOST_TAG!r}: socket.gethostname()}})
        print(run.info.run_id, flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        run_id = proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return run_id


def test_runs_of_dead_processes_are_marked_failed_live_and_foreign_ones_kept(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp_id = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    dead = _killed_run(uri, exp_id)
    alive = client.create_run(exp_id, tags={PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()})
    foreign = client.create_run(exp_id, tags={PID_TAG: "1", HOST_TAG: "another-host"})

    assert client.get_run(dead).info.status == "RUNNING"
    assert end_abandoned_runs(client, exp_id) == [dead]

    assert client.get_run(dead).info.status == "FAILED"
    assert "died" in client.get_run(dead).data.tags["churnwarn.abandoned"]
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert client.get_run(foreign.info.run_id).info.status == "RUNNING"
    assert end_abandoned_runs(client, exp_id) == []  # nothing twice
