"""The retention loop on the small trained workdir: list -> simulated outcomes -> evaluation, with real GX
and MLflow; bad outcome files stop the evaluation with a clear error and leave the previous one."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from core.config import load_settings
from pipelines.errors import ValidationFailed, WarnError
from pipelines.evaluate import evaluate
from pipelines.outcomes import load_outcomes, outcome_file, simulate_outcomes
from pipelines.warn import nightly_list

pytestmark = pytest.mark.slow  # a list, its outcomes and their evaluation on a copy of the trained workdir

D = dt.date(2026, 7, 1)  # the default list date: the day after the last simulated day


@pytest.fixture(scope="module")
def loop(trained, tmp_path_factory):
    """A copy of the trained workdir whose list takes nearly everyone at risk (P >= 0.01, every VIP in
    capacity) and holds half of them out, so each action's control group is large enough to compare;
    99% intervals, so six actions' intervals all cover their truth unless something is wrong (a 95%
    interval misses one in twenty by design)."""
    from conftest import write_config  # noqa: PLC0415 - conftest sits on sys.path under pytest

    dst = tmp_path_factory.mktemp("loop") / "work"
    shutil.copytree(trained.workdir, dst)
    settings = load_settings(
        write_config(
            dst,
            warnings={**trained.warnings.model_dump(), "min_probability": 0.01, "orders_per_manager": 200},
            retention={"control_share": 0.5, "confidence": 0.99, "min_group": 20},
        )
    )
    listed = nightly_list(settings, D)
    outcomes = simulate_outcomes(settings, D)
    return settings, listed, outcomes, evaluate(settings, str(D))


def test_outcomes_are_one_checked_record_per_work_order_and_replay_the_same(loop):
    settings, listed, outcomes, _ = loop
    orders, records = load_outcomes(settings, D)
    assert len(records) == outcomes.orders == listed.summary.listed > 100
    assert records["subscriber_id"].tolist() == orders["subscriber_id"].tolist()
    control = records["group"] == "control"
    assert (records.loc[control, "action"] == "control").all()
    assert not records.loc[control, ["contacted", "offer_accepted"]].any().any()
    assert records.loc[~control, "contacted"].mean() == pytest.approx(
        settings.data.treatment.contact_rate, abs=0.1
    )
    assert (records["cost"] == records["contact_cost"] + records["offer_cost"]).all()
    assert (records.loc[records["churned"], "churn_date"] >= pd.Timestamp(D)).all()
    before = pd.read_parquet(outcome_file(settings, D))
    simulate_outcomes(settings, D)
    pd.testing.assert_frame_equal(pd.read_parquet(outcome_file(settings, D)), before)


def test_evaluation_recovers_the_true_uplift_of_each_action_within_its_interval(loop):
    settings, _, _, result = loop
    actions = [g for g in result.groups if g.dimension == "action"]
    assert {g.value for g in actions} >= {"renewal_offer", "care_call"}
    for g in [result.overall, *actions]:
        assert g.true_uplift is not None
        if g.uplift.conclusive:
            assert g.uplift.low <= g.true_uplift <= g.uplift.high, g
        else:
            assert "too small to conclude" in g.uplift.verdict
    assert any(g.uplift.conclusive for g in actions)
    assert {g.dimension for g in result.groups} == {"action", "predicted cause", "VIP tier"}
    m = result.overall.money
    assert m.net == pytest.approx(m.value_retained - m.contact_cost - m.offer_cost)


def test_the_report_and_the_mlflow_run_hold_the_figures(loop):
    settings, _, _, result = loop
    page = (result.folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "summary.html" in page
    saved = json.loads((result.folder / "evaluation.json").read_text())
    assert saved["overall"]["uplift"]["uplift"] == pytest.approx(result.overall.uplift.uplift)
    mlflow.set_tracking_uri(settings.tracking_uri)
    run = mlflow.get_run(result.run_id)
    assert run.data.metrics["uplift_all"] == pytest.approx(result.overall.uplift.uplift)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "evaluation")}
    assert artifacts == {"evaluation/uplift_by_group.png", "evaluation/money_by_action.png"}


def _break(records: pd.DataFrame, how: str) -> pd.DataFrame:
    bad = records.copy()
    if how == "unknown work orders":
        bad.loc[0, "subscriber_id"] = "S9999999"
    elif how == "outcomes before the list date":
        bad.loc[0, ["churned", "churn_date"]] = True, pd.Timestamp(D) - pd.Timedelta(days=3)
    elif how == "duplicate outcomes":
        bad = pd.concat([bad, bad.iloc[[0]]], ignore_index=True)
    elif how == "control subscriber contacted":
        bad.loc[bad.index[bad["group"] == "control"][0], "contacted"] = True
    return bad


@pytest.mark.parametrize(
    "how",
    [
        "unknown work orders",
        "outcomes before the list date",
        "duplicate outcomes",
        "control subscriber contacted",
    ],
)
def test_a_bad_outcome_file_is_a_clear_error_and_the_previous_evaluation_stays(loop, how):
    settings, _, _, result = loop
    path = outcome_file(settings, D)
    good = pd.read_parquet(path)
    before = {p.name: p.read_bytes() for p in result.folder.iterdir()}
    try:
        _break(good, how).to_parquet(path, index=False)
        with pytest.raises(ValidationFailed, match=how) as err:
            evaluate(settings, str(D), log_to_mlflow=False)
        assert str(path) in str(err.value)
    finally:
        good.to_parquet(path, index=False)
    assert {p.name: p.read_bytes() for p in result.folder.iterdir()} == before


def test_cli_checks_outcomes_and_evaluates_a_range_and_exits_2_on_a_missing_list(loop):
    from pipelines.cli import app

    settings, *_ = loop
    runner = CliRunner()
    cfg = str(settings.config_path)
    ok = runner.invoke(app, ["outcomes", "--date", str(D), "-c", cfg])
    assert ok.exit_code == 0 and "work-order outcomes" in ok.output
    span = runner.invoke(
        app, ["evaluate", "--from", "2026-06-01", "--to", "2026-07-31", "-c", cfg, "--no-mlflow"]
    )
    assert span.exit_code == 0, span.output
    assert (settings.evaluations_dir / "2026-06-01_2026-07-31" / "report.html").exists()
    missing = runner.invoke(app, ["evaluate", "--date", "2026-05-01", "-c", cfg])
    assert missing.exit_code == 2 and "no nightly list for 2026-05-01" in missing.output
    with pytest.raises(WarnError, match="give --date"):
        evaluate(settings, str(D), "2026-06-01", "2026-07-01")
    assert np.isfinite(loop[3].overall.uplift.uplift)
