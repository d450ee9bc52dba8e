"""Uplift targeting on the small trained workdir: exploring lists -> simulated outcomes -> `churn uplift`
(a T-learner per action, registered with aliases in real MLflow) -> a list chosen by expected net value."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import mlflow
import pytest

from core.config import load_settings
from pipelines.errors import WarnError
from pipelines.outcomes import load_outcomes, simulate_outcomes
from pipelines.uplift import fit_uplift
from pipelines.warn import nightly_list

pytestmark = pytest.mark.slow  # two exploring lists, their outcomes, two fits and a policy list

DATES = ("2026-05-01", "2026-06-01")
D = dt.date(2026, 7, 1)


@pytest.fixture(scope="module")
def explored(trained, tmp_path_factory):
    """A copy of the trained workdir with two experiment lists: every active subscriber, half held out,
    every action drawn at random (explore_share 1); their outcomes; the uplift model fitted on them."""
    from conftest import write_config  # noqa: PLC0415 - conftest sits on sys.path under pytest

    dst = tmp_path_factory.mktemp("uplift") / "work"
    shutil.copytree(trained.workdir, dst)
    wide = {**trained.warnings.model_dump(), "min_probability": 0.0, "orders_per_manager": 1000}
    wide["mass_capacity"] = 100_000
    path = write_config(dst, warnings=wide, retention={"control_share": 0.5, "explore_share": 1.0})
    settings = load_settings(path)
    lists = [nightly_list(settings, d) for d in DATES]
    for d in DATES:
        simulate_outcomes(settings, d)
    return settings, lists, fit_uplift(settings, date_from=DATES[0], date_to=DATES[1])


def _with(settings, **retention):
    from conftest import write_config  # noqa: PLC0415

    base = settings.retention.model_dump(mode="json") | retention
    return load_settings(
        write_config(settings.workdir, warnings=settings.warnings.model_dump(mode="json"), retention=base)
    )


def test_exploring_lists_record_random_actions_and_never_contact_the_control_group(explored):
    settings, lists, _ = explored
    table = lists[0].warnings
    assert lists[0].summary.explored == len(table) > 500
    assert (table["action_source"] == "explore").all()
    assert set(table["planned_action_code"]) == set(settings.retention.explore_actions)
    _, records = load_outcomes(settings, dt.date.fromisoformat(DATES[0]))
    assert not records.loc[records["group"] == "control", "contacted"].any()
    again = nightly_list(settings, DATES[0]).warnings  # the same draws on a re-run
    assert again["planned_action_code"].tolist() == table["planned_action_code"].tolist()
    assert again["group"].tolist() == table["group"].tolist()


def test_the_first_fit_is_registered_as_champion_with_its_qini_curves(explored):
    settings, _, result = explored
    assert (result.version, result.alias, result.decision) == ("1", "champion", "first champion")
    assert set(result.qini) == set(settings.retention.explore_actions)
    assert result.n_train["control"] > 200 and result.n_holdout > 300
    assert (result.folder / "qini.png").stat().st_size > 10_000
    saved = json.loads((result.folder / "uplift.json").read_text())
    assert saved["qini_mean"] == pytest.approx(result.qini_mean)
    mlflow.set_tracking_uri(settings.tracking_uri)
    run = mlflow.get_run(result.run_id)
    assert run.data.metrics["qini_mean"] == pytest.approx(result.qini_mean)
    assert "uplift/qini.png" in {
        a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "uplift")
    }


def test_a_refit_that_does_not_beat_the_champion_on_the_same_rows_is_the_challenger(explored):
    settings, _, first = explored
    second = fit_uplift(settings, date_from=DATES[0], date_to=DATES[1])  # the same rows: a tie
    assert (second.version, second.alias) == ("2", "challenger")
    assert second.previous_qini == pytest.approx(first.qini_mean)
    client = mlflow.MlflowClient(settings.tracking_uri)
    assert str(client.get_model_version_by_alias("churnwarn-uplift", "champion").version) == "1"


def test_the_uplift_policy_lists_by_net_value_with_the_best_action_and_keeps_the_reasons(explored):
    settings, _, _ = explored
    policy = _with(settings, policy="uplift", control_share=0.1, explore_share=0.0)
    result = nightly_list(policy, D)
    s, table = result.summary, result.warnings
    assert s.policy == "uplift" and (s.uplift_model.name, s.uplift_model.version) == ("churnwarn-uplift", "1")
    assert json.loads((result.folder / "summary.json").read_text())["policy"] == "uplift"
    assert len(table) > 0 and (table["policy"] == "uplift").all()
    assert (table["expected_net_value"] > 0).all()
    assert table["expected_net_value"].is_monotonic_decreasing  # ranked by it
    treated = table[table["group"] == "treatment"]
    assert (treated["action_source"] == "uplift").all()
    assert (treated["action_code"] == treated["planned_action_code"]).all()
    assert set(table["planned_action_code"]) <= set(settings.retention.explore_actions)
    assert table["reason_1_code"].notna().all()  # the reasons stay, as the explanation
    assert {t.tier: t.listed <= t.capacity for t in s.tiers} == {t.tier: True for t in s.tiers}


def test_the_default_policy_list_is_unchanged_and_says_so(explored):
    settings, _, _ = explored
    plain = _with(settings, explore_share=0.0)
    table = nightly_list(plain, D).warnings
    assert (table["policy"] == "expected_loss").all() and (table["action_source"] == "reasons").all()
    assert table["expected_net_value"].isna().all()


def test_the_uplift_policy_without_an_uplift_model_is_a_clear_error(explored):
    settings, _, _ = explored
    missing = _with(settings, policy="uplift", uplift={"registered_model": "nobody-uplift"})
    with pytest.raises(WarnError, match="no champion uplift model 'nobody-uplift'.*churn uplift"):
        nightly_list(missing, D)
