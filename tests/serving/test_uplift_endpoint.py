"""With an uplift model deployed (retention.policy: uplift) the real BentoML server's warnings carry the
recommended action and its expected net value, the same as the uplift list's; without one, none."""

from __future__ import annotations

import datetime as dt
import shutil

import httpx
import numpy as np
import pytest

from core.config import load_settings
from features import engine
from features.catalogue import FEATURE_NAMES
from models.registry import load_uplift
from pipelines.outcomes import simulate_outcomes
from pipelines.uplift import fit_uplift
from pipelines.warn import nightly_list
from serving.server import running_server

pytestmark = pytest.mark.slow  # two exploring lists, a fit and a server start

DATES = ("2026-05-01", "2026-06-01")


@pytest.fixture(scope="module")
def uplift_workdir(trained, tmp_path_factory):
    """A copy of the trained workdir with an uplift champion fitted on two exploring lists, configured
    to serve it."""
    from conftest import write_config  # noqa: PLC0415 - conftest sits on sys.path under pytest

    dst = tmp_path_factory.mktemp("uplift-serving") / "work"
    shutil.copytree(trained.workdir, dst)
    wide = {**trained.warnings.model_dump(mode="json"), "min_probability": 0.0, "orders_per_manager": 1000}
    wide["mass_capacity"] = 100_000
    settings = load_settings(
        write_config(dst, warnings=wide, retention={"control_share": 0.5, "explore_share": 1.0})
    )
    for d in DATES:
        nightly_list(settings, d)
        simulate_outcomes(settings, d)
    fit_uplift(settings, date_from=DATES[0], date_to=DATES[1])
    return load_settings(write_config(dst, retention={"policy": "uplift"}))


@pytest.fixture(scope="module")
def server(uplift_workdir):
    with running_server(uplift_workdir, log_file=uplift_workdir.workdir / "server-uplift.log") as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client


def test_warnings_carry_the_uplift_models_best_action_and_its_net_value(server, uplift_workdir):
    s = uplift_workdir
    asof = dt.date.fromisoformat(str(s.features.snapshots[-1]))
    feats, _ = engine.compute_features(s.raw_dir, [asof], s)
    ids = feats["subscriber_id"].head(15).tolist()
    body = server.post("/warn", json={"subscriber_ids": [*ids, "S-NOBODY"]}).json()
    uplift = load_uplift(s)
    assert [w["subscriber_id"] for w in body[:-1]] == ids
    for w in body[:-1]:
        rec = w["recommended_action"]
        assert rec["model"] == f"{uplift.name} v{uplift.version}"
        assert rec["code"] in uplift.model.actions and rec["text"]
        assert np.isfinite(rec["expected_net_value"]) and -1 <= rec["uplift"] <= 1
        assert w["action"]["code"]  # the reasons' action stays beside it
    assert body[-1]["status"] == "unknown" and body[-1]["recommended_action"] is None
    row = {"subscriber_id": "R1", "features": {f: float(feats[f].iloc[0]) for f in FEATURE_NAMES}}
    one = server.post("/warn/row", json={"row": row}).json()
    want = uplift.model.best(feats.iloc[[0]], np.array([one["value_at_stake"]]), s.retention.value_months)
    assert one["recommended_action"]["code"] == want.action[0]
    assert one["recommended_action"]["expected_net_value"] == pytest.approx(want.net_value[0], rel=1e-6)
