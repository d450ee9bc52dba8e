"""A second real server: an API key from the environment, and an as-of day that makes the store stale."""

import httpx
import pandas as pd
import pytest
import yaml

from core.config import load_settings
from serving.middleware import API_KEY_ENV
from serving.server import running_server

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def stale_settings(trained, tmp_path_factory):
    """The trained workdir, judged on 2026-09-01: its newest snapshot (2026-06-01) is 92 days old."""
    raw = yaml.safe_load(trained.config_path.read_text())
    raw["serving"] = {**raw["serving"], "as_of": "2026-09-01", "max_feature_age_days": 60}
    path = tmp_path_factory.mktemp("stale") / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_settings(path)


@pytest.fixture(scope="module")
def url(stale_settings, trained):
    with running_server(
        stale_settings, env={API_KEY_ENV: KEY}, log_file=trained.workdir / "server-auth.log"
    ) as u:
        yield u


@pytest.fixture(scope="module")
def client(url):
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


@pytest.fixture(scope="module")
def latest_ids(trained):
    t = pd.read_parquet(trained.feature_table, columns=["subscriber_id", "event_timestamp"])
    return t.loc[t["event_timestamp"] == t["event_timestamp"].max(), "subscriber_id"].tolist()


@pytest.mark.parametrize("route", ["/warn", "/warn/subscriber", "/warn/rows", "/warn/row", "/model"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": "wrong"},
        {"Authorization": KEY},
        {"Authorization": f"Basic {KEY}"},
    ],
)
def test_api_routes_need_the_key(url, route, headers):
    resp = httpx.post(url + route, json={"subscriber_id": "S0000001"}, headers=headers)
    assert resp.status_code == 401
    assert "API key" in resp.json()["error"] and resp.headers["www-authenticate"] == "Bearer"
    assert resp.headers["x-request-id"]


def test_either_header_carries_the_key(url, latest_ids):
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
        assert httpx.post(url + "/model", headers=headers).status_code == 200
        resp = httpx.post(url + "/warn", json={"subscriber_ids": latest_ids[:1]}, headers=headers)
        assert resp.status_code == 200


def test_health_readiness_and_metrics_stay_open(url):
    for path in ("/livez", "/readyz", "/metrics"):
        assert httpx.get(url + path).status_code == 200
    httpx.post(url + "/warn", json={"subscriber_ids": ["x"]})
    assert (
        'churnwarn_requests_total{outcome="unauthorized",route="/warn"}' in httpx.get(url + "/metrics").text
    )


def test_stale_single_subscriber_is_422_naming_the_bound(client, latest_ids):
    resp = client.post("/warn/subscriber", json={"subscriber_id": latest_ids[0]})
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert (
        "stale features" in err
        and "2026-06-01" in err
        and "92 days" in err
        and "max_feature_age_days = 60" in err
    )


def test_stale_ids_in_a_batch_are_per_item(client, latest_ids):
    body = client.post("/warn", json={"subscriber_ids": [latest_ids[0], "S-NOBODY"]}).json()
    assert [w["status"] for w in body] == ["stale", "unknown"]
    assert body[0]["churn_probability"] is None and body[0]["feature_timestamp"].startswith("2026-06-01")
    assert "stale" in body[0]["error"]
    text = client.get("/metrics").text
    assert 'churnwarn_warnings_total{outcome="stale"}' in text
    assert 'churnwarn_requests_total{outcome="stale",route="/warn/subscriber"}' in text
