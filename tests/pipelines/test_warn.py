"""The nightly warning list: capacity per tier, ranking, who is explained, files, failures, endpoint parity."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from core.config import RetentionConfig, VipTier, WarningConfig
from pipelines.errors import WarnError
from pipelines.warn import capacities, choose, control_mask, explore_draws, nightly_list, with_exploration


def _cfg(**kw) -> WarningConfig:
    return WarningConfig(
        **{
            "vip_tiers": [
                VipTier(name="diamond", min_value=200, subscribers_per_manager=2),
                VipTier(name="gold", min_value=100, subscribers_per_manager=3),
            ],
            "orders_per_manager": 1,
            "mass_capacity": 1,
            "min_probability": 0.2,
            **kw,
        }
    )


def _scored(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["subscriber_id", "churn_probability", "value_at_stake", "vip_tier"])
    df["expected_loss"] = df["churn_probability"] * df["value_at_stake"]
    return df


def test_capacity_is_managers_times_orders_and_the_mass_quota():
    vip = np.array(["diamond"] * 3 + ["gold"] * 3 + ["mass"] * 4, dtype=object)
    caps = {t.tier: (t.active, t.managers, t.capacity) for t in capacities(vip, _cfg(orders_per_manager=2))}
    # diamond: ceil(3/2) = 2 managers x 2; gold: ceil(3/3) = 1 x 2; mass: the call centre's quota
    assert caps == {"diamond": (3, 2, 4), "gold": (3, 1, 2), "mass": (4, None, 1)}


def test_hand_computed_list_top_expected_loss_per_tier_within_capacity_ranked_overall():
    scored = _scored(
        [
            # diamond: 3 active -> 2 managers x 1 = capacity 2; d3 is below min probability
            ("d1", 0.30, 300, "diamond"),  # EL 90
            ("d2", 0.50, 250, "diamond"),  # EL 125
            ("d3", 0.10, 900, "diamond"),  # EL 90 but P < 0.2: never listed
            # gold: 3 active -> 1 manager -> capacity 1; g2 has the higher EL
            ("g1", 0.90, 100, "gold"),  # EL 90
            ("g2", 0.60, 180, "gold"),  # EL 108
            ("g3", 0.25, 150, "gold"),  # EL 37.5
            # mass: quota 1, m2 wins on EL though m1 is likelier
            ("m1", 0.95, 20, "mass"),  # EL 19
            ("m2", 0.50, 45, "mass"),  # EL 22.5
        ]
    )
    listed, tiers = choose(scored, _cfg())
    assert listed["subscriber_id"].tolist() == ["d2", "g2", "d1", "m2"]  # by expected loss overall
    assert {t.tier: (t.candidates, t.capacity, t.listed) for t in tiers} == {
        "diamond": (2, 2, 2),
        "gold": (3, 1, 1),
        "mass": (2, 1, 1),
    }


def test_ties_break_on_probability_then_id_so_the_list_is_deterministic():
    scored = _scored([("b", 0.5, 100, "mass"), ("a", 0.5, 100, "mass"), ("c", 0.25, 200, "mass")])
    listed, _ = choose(scored, _cfg(mass_capacity=3))
    assert listed["subscriber_id"].tolist() == ["a", "b", "c"]


def test_the_probability_policy_ranks_by_probability_and_the_uplift_policy_by_net_value():
    scored = _scored([("m1", 0.95, 20, "mass"), ("m2", 0.50, 45, "mass"), ("m3", 0.05, 300, "mass")])
    assert choose(scored, _cfg(mass_capacity=1))[0]["subscriber_id"].tolist() == ["m2"]  # EL 22.5
    assert choose(scored, _cfg(mass_capacity=1), "probability")[0]["subscriber_id"].tolist() == ["m1"]
    # the uplift policy: any probability, only a positive net value, the highest first
    scored["expected_net_value"] = [-5.0, 12.0, 40.0]
    listed, tiers = choose(scored, _cfg(mass_capacity=5), "uplift")
    assert listed["subscriber_id"].tolist() == ["m3", "m2"]
    assert {t.tier: t.candidates for t in tiers}["mass"] == 2


def _orders(n=2000):
    return pd.DataFrame(
        {
            "subscriber_id": [f"S{i:07d}" for i in range(n)],
            "action_code": "care_call",
            "action_text": "Care call to find the cause",
            "vip_tier": "mass",
            "feature_date": pd.Timestamp("2026-07-01"),
            "lang": "en",
            "action_source": "reasons",
            "expected_net_value": np.nan,
        }
    )


def test_exploration_draws_a_share_of_random_actions_the_same_way_on_every_run():
    cfg = RetentionConfig(explore_share=0.3)
    table = _orders()
    out = with_exploration(table, cfg)
    explored = out["action_source"] == "explore"
    assert explored.mean() == pytest.approx(0.3, abs=0.04)
    assert (out.loc[~explored, "action_code"] == "care_call").all()
    shares = out.loc[explored, "action_code"].value_counts(normalize=True)
    assert set(shares.index) == set(cfg.explore_actions) and shares.min() > 0.12  # about 1/5 each
    pd.testing.assert_frame_equal(with_exploration(table.iloc[::-1], cfg).loc[out.index], out)
    again, drawn = explore_draws(table["subscriber_id"], dt.date(2026, 7, 1), cfg)
    assert (again == explored.to_numpy()).all()
    assert with_exploration(table, RetentionConfig()).equals(table)  # explore_share 0: untouched


# On the trained demo workdir ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def champion(trained):
    from models.registry import load_registered

    return load_registered(trained)


@pytest.fixture(scope="module")
def last_snapshot(trained) -> dt.date:
    return trained.features.snapshots[-1]


def _with(settings, **warnings):
    return settings.model_copy(update={"warnings": settings.warnings.model_copy(update=warnings)})


class _Spy:
    """Wraps the model's ``explain`` to record how many rows each call explains."""

    def __init__(self, loaded, monkeypatch):
        self.rows: list[int] = []
        original = loaded.model.explain

        def explain(X):
            self.rows.append(len(X))
            return original(X)

        monkeypatch.setattr(loaded.model, "explain", explain)


@pytest.fixture(scope="module")
def day_list(trained, champion, last_snapshot, tmp_path_factory):
    """One list for the last snapshot, written to a private folder."""
    return nightly_list(trained, last_snapshot, model=champion, out_root=tmp_path_factory.mktemp("warnings"))


def test_files_are_written_readable_and_ranked_by_expected_loss(day_list, trained):
    folder = day_list.folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["warnings.parquet", "warnings.csv", "summary.html", "summary.json"]
    )
    pq, csv = pd.read_parquet(folder / "warnings.parquet"), pd.read_csv(folder / "warnings.csv")
    assert len(pq) == len(csv) == day_list.summary.listed > 0
    assert pq["rank"].tolist() == list(range(1, len(pq) + 1))
    assert csv["subscriber_id"].tolist() == pq["subscriber_id"].tolist()
    el = pq["expected_loss"].to_numpy()
    assert (np.diff(el) <= 0).all()
    assert np.allclose(el, pq["churn_probability"] * pq["value_at_stake"])
    assert (pq["churn_probability"] >= trained.warnings.list_min_probability).all()
    assert pq["action_code"].notna().all() and pq["reason_1_sentence"].str.len().gt(0).all()
    assert (pq["reasons"].map(len) == trained.serving.top_reasons).all()
    assert pq["model_version"].nunique() == 1 and str(pq["feature_date"].iloc[0].date()) == str(day_list.date)
    summary = json.loads((folder / "summary.json").read_text())
    for t in summary["tiers"]:
        assert t["listed"] == min(t["candidates"], t["capacity"])
        assert (pq["vip_tier"] == t["tier"]).sum() == t["listed"]
    assert set(summary["timings_s"]) >= {"features", "predict", "choose", "explain", "write", "total"}
    assert set(summary["cpu_s"]) == set(summary["timings_s"])
    assert summary == day_list.summary.as_json()  # the typed summary is what the file holds
    assert list(summary) == [
        *("date", "created_at", "model", "lang", "active", "listed", "min_probability"),
        *("orders_per_manager", "tiers", "expected_loss_listed", "files", "cpu_s", "timings_s", "control"),
        *("policy", "uplift_model", "explored"),
    ]
    assert (summary["policy"], summary["uplift_model"], summary["explored"]) == ("expected_loss", None, 0)
    assert list(summary["model"]) == ["name", "version", "alias", "kind", "run_id"]


# Control groups (retention.control_share) --------------------------------------------------------
CONTACT_ACTIONS = {
    "renewal_offer",
    "competitive_offer",
    "care_call",
    "service_recovery",
    "tariff_review",
    "none",
}


def test_control_mask_holds_out_the_share_of_each_tier_whatever_the_row_order():
    cfg = RetentionConfig(control_share=0.2)
    ids = np.array([f"S{i:07d}" for i in range(1000)])
    tiers = np.where(np.arange(1000) < 100, "gold", "mass")
    mask = control_mask(ids, tiers, dt.date(2026, 7, 1), cfg)
    assert mask[:100].sum() == 20 and mask[100:].sum() == 180
    order = np.random.default_rng(0).permutation(1000)
    assert (control_mask(ids[order], tiers[order], dt.date(2026, 7, 1), cfg) == mask[order]).all()
    assert (control_mask(ids, tiers, dt.date(2026, 7, 2), cfg) != mask).any()  # a new draw every list
    assert not control_mask(ids, tiers, dt.date(2026, 7, 1), RetentionConfig(control_share=0)).any()


def test_control_work_orders_are_stable_across_reruns_and_never_contacted(
    day_list, trained, champion, tmp_path
):
    table = day_list.warnings
    control = table[table["group"] == "control"]
    assert len(control) == day_list.summary.control > 0
    assert (control["action_code"] == "control").all() and not control["action_code"].isin(
        CONTACT_ACTIONS
    ).any()
    assert control["planned_action_code"].isin(CONTACT_ACTIONS).all()
    treated = table[table["group"] == "treatment"]
    assert (treated["action_code"] == treated["planned_action_code"]).all()
    for _, rows in table.groupby("vip_tier"):
        assert (rows["group"] == "control").sum() == np.floor(
            len(rows) * trained.retention.control_share + 0.5
        )
    again = nightly_list(trained, day_list.date, model=champion, out_root=tmp_path)
    written = pd.read_parquet(again.folder / "warnings.parquet")
    pd.testing.assert_series_equal(written["group"], table["group"].reset_index(drop=True), check_names=False)


def test_summary_page_holds_the_three_plots(day_list):
    page = (day_list.folder / "summary.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3
    for name in ("score distribution", "reasons mix", "tier mix"):
        assert f'alt="{name}"' in page


def test_everyone_active_is_scored_but_only_the_listed_are_explained(
    trained, champion, last_snapshot, tmp_path, monkeypatch
):
    spy = _Spy(champion, monkeypatch)
    small = _with(trained, orders_per_manager=1, mass_capacity=3)
    result = nightly_list(small, last_snapshot, model=champion, out_root=tmp_path)
    assert result.summary.active > 100 * result.summary.listed > 0
    assert sum(spy.rows) == result.summary.listed


def test_a_night_without_candidates_writes_an_empty_list_and_its_summary(
    trained, champion, last_snapshot, tmp_path
):
    # not 0.999: a Platt-calibrated logistic champion gives an extreme subscriber 0.99994 on the session data
    result = nightly_list(
        _with(trained, min_probability=1 - 1e-9), last_snapshot, model=champion, out_root=tmp_path
    )
    assert result.summary.listed == 0 and result.summary.active > 0
    assert len(pd.read_parquet(result.folder / "warnings.parquet")) == 0
    assert (result.folder / "summary.html").read_text().count("data:image/png;base64,") == 3


def test_subscribers_who_left_before_the_date_are_not_warned(trained, champion, last_snapshot, tmp_path):
    everyone = _with(trained, min_probability=0.0, mass_capacity=10**6, orders_per_manager=10**6)
    result = nightly_list(everyone, last_snapshot, model=champion, out_root=tmp_path)
    subs = pd.read_parquet(trained.raw_dir / "subscribers.parquet")
    churn = pd.read_parquet(trained.raw_dir / "churn_events.parquet")
    left = set(churn.loc[pd.to_datetime(churn["event_date"]).dt.date < last_snapshot, "subscriber_id"])
    joined = set(subs.loc[pd.to_datetime(subs["activation_date"]).dt.date < last_snapshot, "subscriber_id"])
    listed = set(result.warnings["subscriber_id"])
    assert left and not listed & left
    assert listed == joined - left  # everyone active was scored, and with unlimited capacity listed


@pytest.mark.parametrize(
    "date, message",
    [
        ("2026-13-01", "not a date"),
        ("yesterday", "not a date"),
        ("2025-06-01", "first ingested day"),
        ("2026-08-01", "last ingested day"),
    ],
)
def test_a_bad_date_is_a_clear_error(trained, champion, date, message, tmp_path):
    with pytest.raises(WarnError, match=message):
        nightly_list(trained, date, model=champion, out_root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_the_latest_list_is_for_the_day_after_the_last_ingested_day(trained):
    from pipelines.warn import resolve_date

    assert resolve_date(trained, None) == trained.data.end_date  # end_date is exclusive: last day + 1
    with pytest.raises(WarnError, match="last ingested day"):
        resolve_date(trained, trained.data.end_date + dt.timedelta(days=1))


def test_a_failed_run_leaves_the_previous_list_untouched(
    trained, champion, last_snapshot, tmp_path, monkeypatch
):
    import pipelines.warn as warn

    first = nightly_list(trained, last_snapshot, model=champion, out_root=tmp_path)
    before = {p.name: p.read_bytes() for p in first.folder.iterdir()}

    def broken(*a, **k):
        raise RuntimeError("disk full while drawing")

    monkeypatch.setattr(warn, "summary_html", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        nightly_list(_with(trained, mass_capacity=1), last_snapshot, model=champion, out_root=tmp_path)
    monkeypatch.undo()
    no_model = trained.model_copy(
        update={"mlflow": trained.mlflow.model_copy(update={"registered_model": "nobody"})}
    )
    with pytest.raises(WarnError, match="run `churn train`"):
        nightly_list(no_model, last_snapshot, out_root=tmp_path)
    with pytest.raises(WarnError, match="last ingested day"):
        nightly_list(trained, "2030-01-01", model=champion, out_root=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [str(last_snapshot)]  # no half-written folder beside it
    assert {p.name: p.read_bytes() for p in first.folder.iterdir()} == before


def test_bad_features_stop_the_run_before_anything_is_written(
    trained, champion, last_snapshot, tmp_path, monkeypatch
):
    import features.compute as fc

    original = fc.compute_features

    def broken(*a, **k):
        feats, labels = original(*a, **k)
        feats.loc[feats.index[-1], "arpu_3m"] = float(
            "inf"
        )  # beyond the suite's sample: caught by the full check
        return feats, labels

    monkeypatch.setattr(fc, "compute_features", broken)
    with pytest.raises(
        WarnError, match=r"1 subscriber\(s\) with missing or infinite inputs in \['arpu_3m'\]"
    ):
        nightly_list(_with(trained, validate_sample=10), last_snapshot, model=champion, out_root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_cli_writes_the_list_and_exits_2_on_a_bad_date(trained_copy, last_snapshot):
    from pipelines.cli import app

    cfg = str(trained_copy.config_path)
    bad = CliRunner().invoke(app, ["warn", "--config", cfg, "--date", "2026-02-30"])
    assert bad.exit_code == 2 and "not a date" in bad.output
    ok = CliRunner().invoke(app, ["warn", "--config", cfg, "--date", str(last_snapshot), "--lang", "zh"])
    assert ok.exit_code == 0, ok.output
    out = trained_copy.workdir / "warnings" / str(last_snapshot)
    table = pd.read_parquet(out / "warnings.parquet")
    assert "work orders" in ok.output and len(table) > 0
    assert any("\u4e00" <= ch <= "\u9fff" for ch in table["reason_1_sentence"].iloc[0])


# The endpoint and the batch job agree --------------------------------------------------------------
def test_endpoint_and_nightly_list_give_the_same_probability_reasons_and_action(day_list, trained):
    """D = the last snapshot, so the online store holds the same features the batch job computes."""
    import httpx

    from serving.server import running_server

    listed = day_list.warnings.head(25)
    ids = listed["subscriber_id"].tolist()
    with running_server(trained, log_file=trained.workdir / "server-warn-test.log") as url:
        body = httpx.post(f"{url}/warn", json={"subscriber_ids": ids, "lang": "en"}, timeout=120).json()
    assert [w["subscriber_id"] for w in body] == ids
    keys = ("code", "feature", "value", "contribution", "sentence")
    for row, w in zip(listed.itertuples(), body, strict=False):
        assert w.get("error") is None
        assert w["churn_probability"] == pytest.approx(row.churn_probability, rel=1e-9, abs=1e-12)
        online = [{k: r[k] for k in keys} for r in w["reasons"]]
        batch = [{k: r[k] for k in keys} for r in row.reasons]
        assert [r["code"] for r in online] == [r["code"] for r in batch]
        assert [r["sentence"] for r in online] == [r["sentence"] for r in batch]
        for a, b in zip(online, batch, strict=False):
            assert a["feature"] == b["feature"]
            assert a["value"] == pytest.approx(b["value"], rel=1e-9, abs=1e-9)
            assert a["contribution"] == pytest.approx(b["contribution"], rel=1e-9, abs=1e-12)
        assert (
            w["action"]["code"] == row.planned_action_code and w["action"]["text"] == row.planned_action_text
        )


def test_config_min_probability_defaults_to_medium_risk_and_tier_names_differ():
    assert WarningConfig(medium_risk=0.3).list_min_probability == 0.3
    assert WarningConfig(min_probability=0.05).list_min_probability == 0.05
    with pytest.raises(ValueError, match="tier names must differ"):
        WarningConfig(non_vip_tier="gold")
