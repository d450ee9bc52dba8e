"""Start and stop the BentoML server as a real process (used by the CLI, the demo and the tests)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from core.config import CONFIG_ENV, REPO_ROOT, Settings
from serving.deploy import bentoml_env

log = logging.getLogger(__name__)
SERVICE = "serving.service:ChurnWarningService"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(settings: Settings, port: int | None = None, bento: str | None = None) -> list[str]:
    """``bentoml serve`` of a Bento tag (``churn deploy``), else of the working tree's service."""
    bentoml = Path(sys.executable).with_name("bentoml")
    return [
        str(bentoml),
        "serve",
        bento or SERVICE,
        "--host",
        settings.serving.host,
        "--port",
        str(port or settings.serving.port),
    ]


def serve_env(settings: Settings, model_version: str | None = None) -> dict[str, str]:
    """The server's environment: config path, this workdir's BentoML home (where deployed Bentos live)."""
    env = bentoml_env(settings, dict(os.environ, **{CONFIG_ENV: str(settings.config_path)}))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if model_version:
        env["CHURNWARN_MODEL_VERSION"] = str(model_version)
    return env


@contextlib.contextmanager
def running_server(
    settings: Settings,
    port: int | None = None,
    model_version: str | None = None,
    timeout: float = 180,
    log_file: Path | None = None,
    bento: str | None = None,
    env: dict[str, str] | None = None,
    wait_for: str = "/readyz",
):
    """Run ``bentoml serve`` until the block ends; yields the base URL once ``wait_for`` answers 200.

    ``bento``: serve that Bento tag from the workdir's BentoML home (e.g. ``current_bento(settings)``).
    ``env``: extra environment for the server (e.g. ``CHURNWARN_API_KEY``); ``wait_for="/livez"``
    yields as soon as the process serves HTTP, ready or not.
    """
    port = port or free_port()
    url = f"http://{settings.serving.host}:{port}"
    log_file = log_file or settings.reports_dir / "server.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as out:
        proc = subprocess.Popen(
            serve_command(settings, port, bento),
            cwd=REPO_ROOT,
            env={**serve_env(settings, model_version), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {proc.returncode}; see {log_file}:\n"
                        + log_file.read_text()[-3000:]
                    )
                try:
                    if httpx.get(f"{url}{wait_for}", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server not ready after {timeout}s; see {log_file}")
                time.sleep(0.5)
            log.info("server ready at %s (log: %s)", url, log_file)
            yield url
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
