"""The simulator: seeded, churn in the operator's range, signals and confounders where configured."""

import numpy as np
import pandas as pd
import pytest

from core.config import load_settings
from pipelines.generate import generate
from pipelines.validate import read_cdr


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """One generated data set (2000 subscribers, seven months), read back from the landing zone."""
    from conftest import write_config  # noqa: PLC0415 - conftest sits on sys.path under pytest

    s = load_settings(
        write_config(
            tmp_path_factory.mktemp("sim"), data={"n_subscribers": 2000, "seed": 3, "chunk_subscribers": 700}
        )
    )
    summary = generate(s)
    t = {
        n: pd.read_parquet(s.landing_dir / f"{n}.parquet")
        for n in ("subscribers", "complaints", "churn_events", "recharges")
    }
    t["cdr"] = read_cdr(s.landing_dir / "cdr")
    t["intents"] = pd.read_parquet(s.truth_dir / "intents.parquet").set_index("subscriber_id")
    t["truth_p"] = pd.read_parquet(s.truth_dir / "true_probability.parquet")
    return s, summary, t


def test_same_seed_same_data(sim, tmp_path, make_config):
    s, _, t = sim
    again = load_settings(make_config(tmp_path, data=s.data.model_dump(mode="json")))
    generate(again)
    pd.testing.assert_frame_equal(
        pd.read_parquet(again.landing_dir / "churn_events.parquet"), t["churn_events"]
    )
    pd.testing.assert_frame_equal(pd.read_parquet(again.landing_dir / "recharges.parquet"), t["recharges"])
    cdr = read_cdr(again.landing_dir / "cdr")
    pd.testing.assert_frame_equal(
        cdr.sort_values(list(cdr.columns), ignore_index=True),
        t["cdr"].sort_values(list(cdr.columns), ignore_index=True),
    )


def test_churn_rate_in_the_operators_range(sim):
    s, summary, t = sim
    months = s.data.n_days / 30.4
    monthly = 1 - (1 - len(t["churn_events"]) / summary.subscribers) ** (1 / months)
    half_year = 1 - (1 - monthly) ** 6
    assert 0.15 <= half_year <= 0.30, half_year


def test_signals_are_more_common_among_churners_with_that_cause(sim):
    s, _, t = sim
    it, cdr = t["intents"], t["cdr"]
    inside = (it["onset_date"] >= pd.Timestamp(s.data.start_date)) & (
        it["end_date"] < pd.Timestamp(s.data.end_date)
    )
    it = it[inside | (it["churn_cause"] == "none")]  # lead-ups that lie wholly inside the data
    callers = set(cdr.loc[cdr["other_party"].isin(["10086", "10010"]), "subscriber_id"])
    share = lambda ids, group: np.mean([i in group for i in ids])  # noqa: E731
    comp = it.index[(it["churn_cause"] == "competitor") & ~it["weak_signal"]]
    stay = it.index[it["churn_cause"] == "none"]
    assert share(comp, callers) > 0.8
    assert 0.01 < share(stay, callers) < 0.1  # loyal subscribers who ring a competitor once: a confounder
    complainers = set(t["complaints"]["subscriber_id"])
    diss = it.index[(it["churn_cause"] == "dissatisfaction") & ~it["weak_signal"]]
    assert share(diss, complainers) > 3 * share(stay, complainers) > 0


def test_confounders_and_recoveries_exist(sim):
    s, _, t = sim
    it = t["intents"]
    recovered = it[(it["churn_cause"] != "none") & ~it["churns"]]
    assert 0.05 < len(recovered) / max((it["churn_cause"] != "none").sum(), 1) < 0.3  # 1 - intent_churn_share
    # stayers with a silent week: travel or holidays; their calls resume
    cdr = t["cdr"]
    days = cdr.assign(day=cdr["start_time"].dt.normalize()).groupby("subscriber_id")["day"].unique()
    stay = [i for i in it.index[it["churn_cause"] == "none"] if i in days.index]
    gaps = [np.diff(np.sort(days[i])).max() / np.timedelta64(1, "D") for i in stay]
    assert np.mean(np.array(gaps) >= 5) > 0.05


def test_no_activity_after_churn(sim):
    _, _, t = sim
    last_call = t["cdr"].groupby("subscriber_id")["start_time"].max()
    ev = t["churn_events"].set_index("subscriber_id")["event_date"]
    common = ev.index.intersection(last_call.index)
    assert (last_call[common] < ev[common]).all()


def test_only_prepaid_subscribers_recharge(sim):
    s, _, t = sim
    r, subs = t["recharges"], t["subscribers"]
    assert list(r.columns) == ["subscriber_id", "recharge_time", "amount"]
    assert str(r["recharge_time"].dtype) == "datetime64[ns]" and r["amount"].dtype == "float64"
    prepaid = set(subs.loc[subs["plan"] == "prepaid", "subscriber_id"])
    assert set(r["subscriber_id"]) <= prepaid
    assert np.mean([i in set(r["subscriber_id"]) for i in prepaid]) > 0.85  # the rest left early in the data
    assert (r["amount"] > 0).all() and r["amount"].isin([10, 20, 30, 50, 100, 200, 300, 500]).all()
    assert (
        r["recharge_time"]
        .between(pd.Timestamp(s.data.start_date), pd.Timestamp(s.data.end_date), inclusive="left")
        .all()
    )
    assert not r.duplicated(["subscriber_id", "recharge_time"]).any()
    per_sub = r.groupby("subscriber_id").size() / (s.data.n_days / 30.4)
    assert 1 < per_sub.median() < 4  # a top-up every 7-30 days


def test_no_recharge_after_churn(sim):
    _, _, t = sim
    last = t["recharges"].groupby("subscriber_id")["recharge_time"].max()
    ev = t["churn_events"].set_index("subscriber_id")["event_date"]
    common = ev.index.intersection(last.index)
    assert len(common) > 50
    assert (last[common] < ev[common]).all()


def test_churners_stop_recharging_in_the_lead_up_and_some_stayers_pause(sim):
    s, _, t = sim
    it, r = t["intents"], t["recharges"]
    start, end = pd.Timestamp(s.data.start_date), pd.Timestamp(s.data.end_date)
    last = r.groupby("subscriber_id")["recharge_time"].max()
    ev = t["churn_events"].set_index("subscriber_id")["event_date"]
    prepaid = set(t["subscribers"].loc[t["subscribers"]["plan"] == "prepaid", "subscriber_id"])
    it = it[it.index.isin(prepaid)]
    leavers = it.index[
        it["churns"]
        & it["churn_cause"].isin(["competitor", "dissatisfaction", "disengagement"])
        & (it["onset_date"] >= start)
        & it.index.isin(ev.index)
        & it.index.isin(last.index)
    ]
    stayers = it.index[(it["churn_cause"] == "none") & it.index.isin(last.index)]
    days = lambda ids, at: (at - last[ids]).dt.total_seconds().to_numpy() / 86_400  # noqa: E731
    before_leaving, stayer_gap = days(leavers, ev[leavers]), days(stayers, end)
    assert len(leavers) > 30 and len(stayers) > 300
    assert before_leaving.mean() > 2 * stayer_gap.mean()
    assert before_leaving.min() >= s.data.lead_days[0] - 1  # no top-up in the whole lead-up
    assert 0.005 < np.mean(stayer_gap > 30) < 0.15  # loyal subscribers who pause: a confounder


def test_truth_probability_ranks_churners_well_but_not_perfectly(sim):
    from sklearn.metrics import roc_auc_score

    s, _, t = sim
    p = t["truth_p"]
    last = p[p["snapshot"] == p["snapshot"].max()]
    ev = t["churn_events"]
    t0 = last["snapshot"].iloc[0]
    churned = ev[(ev["event_date"] >= t0) & (ev["event_date"] < t0 + pd.Timedelta(days=30))]["subscriber_id"]
    y = last["subscriber_id"].isin(set(churned))
    auc = roc_auc_score(y, last["true_probability"])
    assert 0.85 < auc < 1.0
    assert last["true_probability"].between(0, 1).all()


def test_reachable_ceiling_sees_only_visible_lead_ups(sim):
    from sklearn.metrics import roc_auc_score

    s, _, t = sim
    p, it, ev = t["truth_p"], t["intents"], t["churn_events"]
    assert p["reachable_probability"].between(0, 1).all()
    last = p[p["snapshot"] == p["snapshot"].max()].join(it, on="subscriber_id")
    t0 = last["snapshot"].iloc[0]
    shows = (last["churn_cause"] != "silent") & (
        last["onset_date"] < t0
    )  # at least a day of lead-up before T
    assert shows.sum() > 50
    # a visible lead-up under way is read exactly; everyone else gets their indistinguishable pool's rate
    under_way = shows & (last["end_date"] >= t0)
    np.testing.assert_allclose(
        last.loc[under_way, "reachable_probability"], last.loc[under_way, "true_probability"]
    )
    # one that is over: only the contagion from ties who leave from T on is hidden
    over = last[shows & ~under_way]
    assert (over["reachable_probability"] <= over["true_probability"] + 1e-12).all()
    hidden = last[~shows]
    assert hidden["reachable_probability"].max() < 0.1 < last.loc[shows, "reachable_probability"].max()
    churned = ev[(ev["event_date"] >= t0) & (ev["event_date"] < t0 + pd.Timedelta(days=30))]["subscriber_id"]
    y = last["subscriber_id"].isin(set(churned))
    latent, reachable = (
        roc_auc_score(y, last["true_probability"]),
        roc_auc_score(y, last["reachable_probability"]),
    )
    assert 0.8 < reachable < latent


def test_competitor_lead_ups_lean_off_net_and_the_unhappy_ring_the_service_line(sim):
    s, _, t = sim
    it, cdr = t["intents"], t["cdr"]
    start = pd.Timestamp(s.data.start_date)
    is_mobile = (cdr["other_party"].str.len() == 11) & cdr["other_party"].str.startswith("1")
    mobile = cdr[is_mobile].join(it[["churn_cause", "onset_date", "end_date"]], on="subscriber_id")
    mobile["off"] = mobile["other_party"].str[:3].isin(s.data.off_net_prefixes)
    lead = (mobile["start_time"] >= mobile["onset_date"]) & (mobile["start_time"] < mobile["end_date"])
    late = lead & (
        mobile["start_time"] >= mobile["onset_date"] + (mobile["end_date"] - mobile["onset_date"]) / 2
    )
    comp = (mobile["churn_cause"] == "competitor") & (mobile["onset_date"] >= start)
    before = mobile.loc[comp & (mobile["start_time"] < mobile["onset_date"]), "off"].mean()
    assert mobile.loc[comp & late, "off"].mean() > before + 0.15  # the second half of the lead-up
    assert abs(mobile.loc[mobile["churn_cause"] == "none", "off"].mean() - before) < 0.05
    ringers = set(cdr.loc[cdr["other_party"] == s.data.own_hotline, "subscriber_id"])
    diss = it.index[
        (it["churn_cause"] == "dissatisfaction")
        & ~it["weak_signal"]
        & (it["onset_date"] >= start)
        & (it["end_date"] < pd.Timestamp(s.data.end_date))
    ]
    stay = it.index[it["churn_cause"] == "none"]
    assert np.mean([i in ringers for i in diss]) > 0.8 > 0.1 > np.mean([i in ringers for i in stay])


def test_calls_to_one_number_at_one_second_are_one_call():
    """Two contacts that are the same service number, rung at the same (clipped) second: one call."""
    from pipelines.generate import Calls, drop_duplicate_calls

    pool = np.array(["12306", "13800138000", "12306"])
    calls = Calls(
        sub_idx=np.array([0, 0, 0, 1]),
        day_idx=np.array([4, 4, 4, 4]),
        seconds=np.array([86_399, 86_399, 86_399, 86_399]),
        other=np.array([0, 1, 2, 2]),
        pool=pool,
    )
    kept = drop_duplicate_calls(calls, n_days=10)
    assert list(zip(kept.sub_idx, pool[kept.other], strict=True)) == [
        (0, "12306"),
        (0, "13800138000"),
        (1, "12306"),
    ]
