"""Readiness: a server whose online store is not loaded yet is alive but not ready, and says so."""

import shutil

import httpx
import pytest

from core.config import load_settings
from serving.server import running_server


@pytest.fixture(scope="module")
def unloaded(trained, tmp_path_factory):
    """A copy of the trained workdir whose online store was never materialised."""
    from conftest import write_config  # noqa: PLC0415 - conftest sits on sys.path under pytest

    dst = tmp_path_factory.mktemp("unloaded") / "work"
    shutil.copytree(trained.workdir, dst)
    settings = load_settings(write_config(dst))
    (settings.feast_dir / "online_store.db").unlink()
    return settings


def test_not_ready_until_the_store_is_loaded(unloaded):
    from features.store import apply_and_materialize

    with running_server(
        unloaded, wait_for="/livez", log_file=unloaded.workdir / "server-unloaded.log"
    ) as url:
        assert httpx.get(url + "/livez").status_code == 200
        ready = httpx.get(url + "/readyz")
        assert ready.status_code == 503
        resp = httpx.post(url + "/warn/subscriber", json={"subscriber_id": "S0000001"})
        assert resp.status_code == 503 and "online feature store is unavailable" in resp.json()["error"]

        apply_and_materialize(unloaded)  # load the store: the same server becomes ready
        assert httpx.get(url + "/readyz").status_code == 200
        resp = httpx.post(url + "/warn/subscriber", json={"subscriber_id": "S0000001"})
        assert resp.status_code == 200 and resp.json()["status"] == "ok"
