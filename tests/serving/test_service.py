"""The real BentoML server on 127.0.0.1, spoken to over HTTP."""

import httpx
import pandas as pd
import pytest

from serving.server import running_server


@pytest.fixture(scope="module")
def server(trained):
    with running_server(trained, log_file=trained.workdir / "server-test.log") as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client


@pytest.fixture(scope="module")
def latest_ids(trained):
    t = pd.read_parquet(trained.feature_table, columns=["subscriber_id", "event_timestamp"])
    return t.loc[t["event_timestamp"] == t["event_timestamp"].max(), "subscriber_id"].tolist()


def test_warnings_for_known_ids(server, trained, latest_ids):
    from models.registry import use_tracking

    ids = latest_ids[:20]
    resp = server.post("/warn", json={"subscriber_ids": ids})
    assert resp.status_code == 200
    body = resp.json()
    assert [w["subscriber_id"] for w in body] == ids
    champion = use_tracking(trained).get_model_version_by_alias(trained.mlflow.registered_model, "champion")
    for w in body:
        assert w["error"] is None
        assert 0 <= w["churn_probability"] <= 1
        assert w["model"]["version"] == str(champion.version) and w["model"]["alias"] == "champion"
        assert len(w["reasons"]) == 3
        assert all(r["sentence"] and r["code"] for r in w["reasons"])
        contribs = [r["contribution"] for r in w["reasons"]]
        assert contribs == sorted(contribs, reverse=True)


def test_chinese_reasons(server, latest_ids):
    w = server.post("/warn", json={"subscriber_ids": latest_ids[:1], "lang": "zh"}).json()[0]
    assert any("\u4e00" <= ch <= "\u9fff" for r in w["reasons"] for ch in r["sentence"])


def test_unknown_id_gets_a_per_item_error_and_no_score(server, latest_ids):
    resp = server.post("/warn", json={"subscriber_ids": [latest_ids[0], "S-NOBODY"]})
    assert resp.status_code == 200
    known, unknown = resp.json()
    assert known["churn_probability"] is not None
    assert unknown["churn_probability"] is None and unknown["reasons"] == []
    assert "unknown subscriber" in unknown["error"] and "S-NOBODY" in unknown["error"]


@pytest.mark.parametrize(
    "body, needle",
    [
        (b'{"subscriber_ids": ', "Invalid JSON"),
        (b'{"subscriber_ids": "S0000001"}', "valid array"),
        (b'{"subscriber_ids": []}', "at least 1"),
        (b'{"ids": ["S0000001"]}', "subscriber_ids"),
        (b'{"subscriber_ids": ["S0000001"], "lang": "fr"}', "lang"),
        (b'{"subscriber_ids": [" "]}', "non-empty"),
    ],
)
def test_malformed_requests_get_a_4xx_with_a_message(server, body, needle):
    resp = server.post("/warn", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert needle in resp.text


def test_too_large_batch_is_refused(server, trained):
    resp = server.post("/warn", json={"subscriber_ids": [f"S{i}" for i in range(trained.serving.max_batch + 1)]})
    assert resp.status_code == 400 and "max_batch" in resp.text


def test_model_endpoint_names_the_version(server):
    info = server.post("/model").json()
    assert info["alias"] == "champion" and info["version"]
