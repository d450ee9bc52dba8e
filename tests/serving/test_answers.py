"""The service's numpy request path answers what the pandas path answers (floats to the last bits the
BLAS product rounds), and logs one line.

The reference is the path the service took before issue 15, in-process: Feast's
``get_online_features`` into a frame (``features.store.online_features``), ``score_with_reasons`` on
it, a ``ChurnWarning`` per id with the status and error the service gave. Two real servers: one judging
age on the demo's day (known, unknown, batched ids, feature rows), one on a day that makes the whole
store stale. Both run with every deprecation and future warning shown, so a warning raised while
answering would reach the log.
"""

import json
import time

import httpx
import pandas as pd
import pytest
import yaml

from core.config import load_settings
from features.catalogue import FEATURE_NAMES
from features.store import get_store, online_features
from models.registry import load_registered
from models.scoring import score_with_reasons
from serving.schemas import ChurnWarning, ModelInfo
from serving.server import running_server

SHOW_WARNINGS = {"PYTHONWARNINGS": "always::DeprecationWarning,always::FutureWarning"}


def within_rounding(answer):
    """``answer`` with every float as ``pytest.approx`` to 1e-12 relative: the BLAS product in the
    logistic model's predict rounds its last bits by batch shape and memory alignment, so one row
    scored alone and the same row scored among twelve may differ by ~1e-17."""
    if isinstance(answer, float):
        return pytest.approx(answer, rel=1e-12, abs=1e-15)
    if isinstance(answer, dict):
        return {k: within_rounding(v) for k, v in answer.items()}
    if isinstance(answer, list):
        return [within_rounding(v) for v in answer]
    return answer


def reference(settings, info: dict, ids: list[str], lang: str = "en") -> list[dict]:
    """What the service answered for ``ids`` before issue 15 (its pandas path), as JSON."""
    rows = online_features(get_store(settings), ids, event_timestamps=True)
    known = rows[FEATURE_NAMES].notna().all(axis=1).to_numpy()
    stamps = [ts.to_pydatetime() if k else None for ts, k in zip(rows["event_timestamp"], known, strict=True)]
    cfg = settings.serving
    day = cfg.reference_day()
    ages = [None if ts is None else (day - ts.date()).days for ts in stamps]
    status = [
        "unknown" if not k else "stale" if age > cfg.max_feature_age_days else "ok"
        for k, age in zip(known, ages, strict=True)
    ]
    good = [s == "ok" for s in status]
    scored = iter(score_with_reasons(load_registered(settings).model, rows[good], settings, lang))
    model, out = ModelInfo(**info), []
    for sid, ts, age, st in zip(ids, stamps, ages, status, strict=True):
        if st == "ok":
            out.append(ChurnWarning(subscriber_id=sid, model=model, feature_timestamp=ts, **next(scored)))
            continue
        error = (
            f"unknown subscriber {sid!r}: no features in the online store"
            if st == "unknown"
            else f"stale features for {sid!r}: computed {ts:%Y-%m-%d}, {age} days before {day} "
            f"(bound serving.max_feature_age_days = {cfg.max_feature_age_days})"
        )
        out.append(ChurnWarning(subscriber_id=sid, status=st, model=model, feature_timestamp=ts, error=error))
    return [json.loads(w.model_dump_json()) for w in out]


@pytest.fixture(scope="module")
def latest_ids(trained):
    t = pd.read_parquet(trained.feature_table, columns=["subscriber_id", "event_timestamp"])
    return t.loc[t["event_timestamp"] == t["event_timestamp"].max(), "subscriber_id"].tolist()


@pytest.fixture(scope="module")
def older_ids(trained, latest_ids):
    """Ids the online store holds only from an older snapshot (subscribers gone since)."""
    t = pd.read_parquet(trained.feature_table, columns=["subscriber_id"])
    return sorted(set(t["subscriber_id"]) - set(latest_ids))[:3]


@pytest.fixture(scope="module")
def server(trained):
    log = trained.workdir / "server-answers.log"
    with running_server(trained, log_file=log, env=SHOW_WARNINGS) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client


@pytest.fixture(scope="module")
def stale_settings(trained, tmp_path_factory):
    raw = yaml.safe_load(trained.config_path.read_text())
    raw["serving"] = {**raw["serving"], "as_of": "2026-09-01", "max_feature_age_days": 60}
    path = tmp_path_factory.mktemp("stale-answers") / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_settings(path)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_known_unknown_and_batched_ids_answer_as_the_pandas_path(
    server, trained, latest_ids, older_ids, lang
):
    info = server.post("/model").json()
    ids = [*latest_ids[:40], "S-NOBODY", latest_ids[0], *older_ids]
    resp = server.post("/warn", json={"subscriber_ids": ids, "lang": lang})
    assert resp.status_code == 200
    assert resp.json() == within_rounding(reference(trained, info, ids, lang))
    for sid in [latest_ids[0], latest_ids[7]]:
        one = server.post("/warn/subscriber", json={"subscriber_id": sid, "lang": lang})
        assert one.status_code == 200 and one.json() == within_rounding(
            reference(trained, info, [sid], lang)[0]
        )
    for sid, code in [("S-NOBODY", 404), *((s, 422) for s in older_ids[:1])]:  # unknown; stale (gone)
        refused = server.post("/warn/subscriber", json={"subscriber_id": sid, "lang": lang})
        expected = reference(trained, info, [sid])[0]
        assert refused.status_code == code
        assert refused.json() == {"error": expected["error"], "detail": []}


def test_feature_rows_answer_as_the_pandas_path(server, trained):
    info = server.post("/model").json()
    t = pd.read_parquet(trained.feature_table)
    t = t.loc[t["event_timestamp"] == t["event_timestamp"].max()].head(12).reset_index(drop=True)
    rows = [
        {
            "subscriber_id": r["subscriber_id"],
            "features": {f: float(r[f]) for f in FEATURE_NAMES},
            "feature_timestamp": r["event_timestamp"].isoformat(),
        }
        for _, r in t.iterrows()
    ]
    scored = score_with_reasons(load_registered(trained).model, t, trained, "zh")
    expected = [
        json.loads(
            ChurnWarning(
                subscriber_id=r["subscriber_id"],
                model=ModelInfo(**info),
                feature_timestamp=r["feature_timestamp"],
                **w,
            ).model_dump_json()
        )
        for r, w in zip(rows, scored, strict=True)
    ]
    assert server.post("/warn/rows", json={"rows": rows, "lang": "zh"}).json() == within_rounding(expected)
    assert server.post("/warn/row", json={"row": rows[3], "lang": "zh"}).json() == within_rounding(
        expected[3]
    )


def test_stale_ids_answer_as_the_pandas_path(stale_settings, trained, latest_ids):
    log = trained.workdir / "server-answers-stale.log"
    with running_server(stale_settings, log_file=log, env=SHOW_WARNINGS) as url:
        info = httpx.post(f"{url}/model").json()
        ids = [*latest_ids[:5], "S-NOBODY"]
        resp = httpx.post(f"{url}/warn", json={"subscriber_ids": ids}, timeout=60)
        expected = reference(stale_settings, info, ids)
        assert [w["status"] for w in expected] == ["stale"] * 5 + ["unknown"]
        assert resp.json() == expected
        one = httpx.post(f"{url}/warn/subscriber", json={"subscriber_id": latest_ids[0]}, timeout=60)
        assert one.status_code == 422 and one.json() == {"error": expected[0]["error"], "detail": []}


def test_one_log_line_per_request_and_no_warnings(server, trained, latest_ids):
    log = trained.workdir / "server-answers.log"
    bodies = [
        ("/warn/subscriber", {"subscriber_id": latest_ids[0]}),
        ("/warn/subscriber", {"subscriber_id": "S-NOBODY"}),
        ("/warn", {"subscriber_ids": [*latest_ids[:3], "S-NOBODY"]}),
        ("/warn/rows", {"rows": []}),
        ("/model", {}),
    ] * 4
    before = log.read_text().splitlines()
    rids = [f"one-line-{i}" for i in range(len(bodies))]
    for rid, (route, body) in zip(rids, bodies, strict=True):
        server.post(route, json=body, headers={"X-Request-ID": rid})
    for _ in range(100):  # the workers write their lines as they answer: wait for the last one
        if rids[-1] in log.read_text():
            break
        time.sleep(0.1)
    new = log.read_text().splitlines()[len(before) :]
    assert len(new) == len(rids), "\n".join(new[:12])
    assert [sum(f'"request_id": "{rid}"' in line for line in new) for rid in rids] == [1] * len(rids)
