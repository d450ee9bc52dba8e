"""A Spark standalone cluster on this machine: one master and N workers from PySpark's own distribution.

For the test and the benchmark that must not rely on the driver's memory or local state: every
executor is a separate JVM started by a worker, as on a real cluster. Nothing else starts it, so
``churn`` never runs a Spark process unless ``features.engine: spark`` points at a master.

    with standalone_cluster(workers=2) as cluster:
        spark_session(SparkConfig(master=cluster.url, conf={...}))

Each process runs in its own process group, so stopping a worker also stops the executors it
launched; on exit the context checks that no process of those groups is left.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


class ClusterError(RuntimeError):
    """The cluster could not start (no Java, a process died, a worker never registered)."""


@dataclass(frozen=True)
class Worker:
    pid: int
    port: int
    web_ui: str
    log: Path


@dataclass(frozen=True)
class StandaloneCluster:
    """What a running cluster is reached by: ``url`` is the master for ``SparkConfig.master``."""

    url: str  # spark://127.0.0.1:<port>
    web_ui: str  # the master's web UI; ``<web_ui>/json`` is its status
    master_pid: int
    workers: tuple[Worker, ...]
    base_dir: Path  # logs, worker dirs, local dirs (removed on exit unless kept)

    @property
    def worker_pids(self) -> tuple[int, ...]:
        return tuple(w.pid for w in self.workers)

    @property
    def worker_ports(self) -> tuple[int, ...]:
        return tuple(w.port for w in self.workers)

    def status(self) -> dict:
        """The master's JSON status (workers, their state, cores and memory used, applications)."""
        return fetch_json(f"{self.web_ui}/json")


def spark_home() -> Path:
    """The pyspark package folder: a Spark distribution (``bin/spark-class``, ``jars/``)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ClusterError("pyspark is not installed (the `spark` extra): no Spark distribution to run")
    return Path(spec.origin).parent


def java_home() -> str | None:
    """``$JAVA_HOME`` if it has a java, else None when ``java`` is on the PATH; raises when neither."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return home
    if shutil.which("java"):
        return None
    raise ClusterError("no Java found: Spark needs a JDK (17 or 21) on the PATH or in $JAVA_HOME")


def free_port() -> int:
    """A TCP port free right now on the loopback interface."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def fetch_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _env(base: Path) -> dict[str, str]:
    """The daemons' environment: this PySpark's home, an empty conf folder (no user settings leak
    in), local dirs in ``base`` and this interpreter for Python workers."""
    conf = base / "conf"
    local = base / "local"
    conf.mkdir(exist_ok=True)
    local.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home()),
        "SPARK_CONF_DIR": str(conf),
        "SPARK_LOCAL_IP": HOST,
        "SPARK_LOCAL_DIRS": str(local),
        "PYSPARK_PYTHON": sys.executable,
    }
    if home := java_home():
        env["JAVA_HOME"] = home
    return env


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """One daemon through ``spark-class`` in a new process group, its output in ``log``."""
    cmd = [str(spark_home() / "bin" / "spark-class"), *args]
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _stop(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    """SIGTERM every group (workers first, so executors go with them), SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_group_members(p.pid) for p in procs):
            for p in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=0.1)
            time.sleep(0.1)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=1)
    left = {p.pid: _group_members(p.pid) for p in procs}
    left = {g: m for g, m in left.items() if m}
    if left:
        raise ClusterError(f"Spark processes still running after SIGKILL (group: pids): {left}")


def _wait_alive(web_ui: str, n: int, procs: list[tuple[str, subprocess.Popen, Path]], timeout: float) -> dict:
    """Poll the master's status until ``n`` workers are ALIVE; fail with a log tail otherwise."""
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        for name, p, log in procs:
            if p.poll() is not None:
                raise ClusterError(f"Spark {name} exited with {p.returncode}; its log:\n{tail(log)}")
        with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
            status = fetch_json(f"{web_ui}/json", timeout=2)
            if sum(w.get("state") == "ALIVE" for w in status.get("workers", [])) >= n:
                return status
        time.sleep(0.5)
    alive = {w.get("webuiaddress") for w in status.get("workers", []) if w.get("state") == "ALIVE"}
    name, _, log = next(((nm, p, lg) for nm, p, lg in procs[1:] if nm.split()[-1] not in alive), procs[0])
    raise ClusterError(
        f"{n} Spark workers not ALIVE at {web_ui} after {timeout:.0f} s ({len(alive)} were); "
        f"log of {name}:\n{tail(log)}"
    )


@contextlib.contextmanager
def standalone_cluster(
    workers: int = 2,
    cores_per_worker: int = 1,
    memory_per_worker: str = "2g",
    *,
    base_dir: Path | None = None,
    keep: bool = False,
    timeout: float = 90.0,
    daemon_memory: str = "512m",
) -> Iterator[StandaloneCluster]:
    """A master and ``workers`` workers on localhost, all ALIVE, stopped (and checked gone) on exit.

    ``memory_per_worker`` is what a worker may give its executors; ``daemon_memory`` the heap of the
    master and worker daemons themselves. Logs and work dirs live in ``base_dir`` (a temporary
    folder by default, removed on exit unless ``keep``).
    """
    java_home()  # fail before making anything
    base = Path(base_dir or tempfile.mkdtemp(prefix="churnwarn-spark-"))
    base.mkdir(parents=True, exist_ok=True)
    env = {**_env(base), "SPARK_DAEMON_MEMORY": daemon_memory}
    started: list[tuple[str, subprocess.Popen, Path]] = []
    try:
        port, ui = free_port(), free_port()
        url, web_ui = f"spark://{HOST}:{port}", f"http://{HOST}:{ui}"
        log = base / "master.log"
        master_args = ["--host", HOST, "--port", str(port), "--webui-port", str(ui)]
        started.append(("master", _start([MASTER_CLASS, *master_args], log, env), log))
        found = []
        for i in range(workers):
            wport, wui = free_port(), free_port()
            work, log = base / f"worker-{i}", base / f"worker-{i}.log"
            work.mkdir(exist_ok=True)
            args = [WORKER_CLASS, "--host", HOST, "--port", str(wport), "--webui-port", str(wui)]
            args += ["--cores", str(cores_per_worker), "--memory", memory_per_worker]
            args += ["--work-dir", str(work), url]
            p = _start(args, log, {**env, "SPARK_WORKER_DIR": str(work)})
            started.append((f"worker {i} at http://{HOST}:{wui}", p, log))
            found.append(Worker(pid=p.pid, port=wport, web_ui=f"http://{HOST}:{wui}", log=log))
        _wait_alive(web_ui, workers, started, timeout)
        yield StandaloneCluster(url, web_ui, started[0][1].pid, tuple(found), base)
    finally:
        # workers first, so the master does not try to relaunch their executors elsewhere
        _stop([p for _, p, _ in reversed(started)])
        if not keep and base_dir is None:
            shutil.rmtree(base, ignore_errors=True)
