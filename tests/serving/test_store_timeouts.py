"""A Redis online store that accepts connections and never answers: the server stays alive and says so.

The store is a local socket started here (it accepts and stays silent); the server is the real
BentoML server with one worker, so the requests below all meet the same event loop.
"""

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pandas as pd
import pytest

from features.catalogue import FEATURE_NAMES
from serving.server import running_server

STORE_TIMEOUT_S = 1.5  # serving.store_timeout_s of the server below
SLACK_S = 1.5  # HTTP and scheduling on a busy test machine, beyond the configured timeout


@pytest.fixture
def silent_redis():
    """The port of a socket that accepts every connection and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


@pytest.fixture
def hanging_store(copy_trained, silent_redis):
    """A copy of the trained workdir whose online store is the silent Redis."""
    online = {"type": "redis", "redis_connection": f"127.0.0.1:{silent_redis}"}
    return copy_trained(
        feast={"project": "churnwarn", "online_store": online | {"socket_timeout": 1.0}},
        serving={"store_timeout_s": STORE_TIMEOUT_S, "workers": 1},
    )


def _row(settings) -> dict:
    t = pd.read_parquet(settings.feature_table)
    r = t.loc[t["event_timestamp"] == t["event_timestamp"].max()].iloc[0]
    return {"subscriber_id": r["subscriber_id"], "features": {f: float(r[f]) for f in FEATURE_NAMES}}


def test_a_silent_redis_gets_503_in_time_and_never_holds_up_the_rest(hanging_store):
    log_file = hanging_store.workdir / "server-hanging.log"
    with running_server(hanging_store, wait_for="/livez", log_file=log_file) as url:
        with ThreadPoolExecutor(3) as pool:
            by_id = [
                pool.submit(httpx.post, f"{url}/warn/subscriber", json={"subscriber_id": f"S{i}"}, timeout=60)
                for i in range(3)
            ]
            ready = pool.submit(httpx.get, f"{url}/readyz", timeout=60)
            time.sleep(0.3)  # the reads are under way
            # while those wait on the store: liveness within a second, metrics and feature rows too
            for _ in range(3):
                assert httpx.get(f"{url}/livez", timeout=1.0).status_code == 200
            assert httpx.get(f"{url}/metrics", timeout=5).status_code == 200
            row = httpx.post(f"{url}/warn/row", json={"row": _row(hanging_store)}, timeout=30)
            assert row.status_code == 200 and row.json()["status"] == "ok"
            for answer in [f.result() for f in by_id]:
                assert answer.status_code == 503, answer.text
                assert "no answer within serving.store_timeout_s" in answer.json()["error"]
                assert answer.elapsed.total_seconds() < STORE_TIMEOUT_S + SLACK_S
            assert ready.result().status_code == 503
            assert ready.result().elapsed.total_seconds() < STORE_TIMEOUT_S + SLACK_S
        batch = httpx.post(f"{url}/warn", json={"subscriber_ids": ["S1", "S2"]}, timeout=60)
        assert batch.status_code == 503 and batch.elapsed.total_seconds() < STORE_TIMEOUT_S + SLACK_S
