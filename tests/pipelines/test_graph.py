"""The call graph of the simulator: subscribers call each other, and churn spreads along their ties."""

import numpy as np
import pandas as pd
import pytest

from core.config import load_settings
from pipelines.generate import generate
from pipelines.validate import read_cdr


def _world(tmp_path_factory, name: str, **graph) -> tuple:
    from conftest import write_config  # noqa: PLC0415 - conftest sits on sys.path under pytest

    s = load_settings(write_config(tmp_path_factory.mktemp(name), data={"n_subscribers": 2500, "seed": 3}))
    if graph:
        s = s.model_copy(
            update={"data": s.data.model_copy(update={"graph": s.data.graph.model_copy(update=graph)})}
        )
    generate(s)
    truth = {n: pd.read_parquet(s.truth_dir / f"{n}.parquet") for n in ("intents", "ties")}
    return s, truth


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return _world(tmp_path_factory, "graph")


@pytest.fixture(scope="module")
def calm_world(tmp_path_factory):
    """The same seed with no contagion: the same ties and base intents."""
    return _world(tmp_path_factory, "calm", contagion_hazard_ratio=1.0)


def test_subscribers_call_each_other_in_circles_with_a_few_hubs(world):
    s, truth = world
    ties = truth["ties"]
    subs = pd.read_parquet(s.landing_dir / "subscribers.parquet")
    degree = ties.groupby("subscriber_id").size().reindex(subs["subscriber_id"], fill_value=0)
    assert 4 < degree.mean() < 7 and (degree > 0).mean() > 0.95
    assert degree.max() > 3 * degree.mean()  # hubs
    assert 0.7 < ties["same_community"].mean() < 0.9
    assert abs(ties["strength"].mean() - 1) < 1e-9
    pairs = set(zip(ties["subscriber_id"], ties["contact_id"], strict=True))
    assert all((b, a) in pairs for a, b in list(pairs)[:500])  # listed from both ends

    cdr = read_cdr(s.landing_dir / "cdr")
    number = subs.set_index("subscriber_id")["msisdn"]
    called = cdr.merge(
        subs.rename(columns={"subscriber_id": "callee"})[["callee", "msisdn"]],
        left_on="other_party",
        right_on="msisdn",
    )
    assert 0.2 < len(called) / len(cdr) < 0.45  # calls between subscribers
    seen = set(zip(called["subscriber_id"], called["callee"], strict=True))
    assert seen <= pairs  # only along ties
    strong = ties.sort_values("strength").groupby("subscriber_id").tail(1)
    reached = np.mean([p in seen for p in zip(strong["subscriber_id"], strong["contact_id"], strict=True)])
    assert reached > 0.9
    per_tie = called.groupby(["subscriber_id", "callee"]).size().rename("calls").reset_index()
    per_tie = per_tie.merge(
        ties, left_on=["subscriber_id", "callee"], right_on=["subscriber_id", "contact_id"]
    )
    assert per_tie[["calls", "strength"]].corr(method="spearman").iloc[0, 1] > 0.3  # strong ties call more
    assert number.is_unique


def test_a_dead_number_is_no_longer_called_a_ported_one_is(world):
    s, truth = world
    it = truth["intents"].set_index("subscriber_id")
    subs = pd.read_parquet(s.landing_dir / "subscribers.parquet").set_index("subscriber_id")
    cdr = read_cdr(s.landing_dir / "cdr")
    left = it[it["churns"] & (it["end_date"] < pd.Timestamp(s.data.end_date))]
    calls = cdr.merge(
        pd.DataFrame({"other_party": subs.loc[left.index, "msisdn"].to_numpy(), "callee": left.index}),
        on="other_party",
    ).join(left[["end_date", "churn_cause"]], on="callee")
    after = calls[calls["start_time"] >= calls["end_date"]]
    assert len(after) > 100
    assert (after["churn_cause"] == "competitor").all()  # friends who ported out keep their number


def test_contagion_intents_follow_a_ties_departure_and_are_flagged(world):
    s, truth = world
    it, ties = truth["intents"], truth["ties"]
    spread = it[it["contagion"]]
    assert len(spread) > 30 and 0.03 < len(spread) / (it["churn_cause"] != "none").sum() < 0.3
    assert (spread["churn_cause"] == "competitor").all()
    assert it.loc[~it["contagion"], "contagion_source"].isna().all()
    source = it.set_index("subscriber_id").loc[spread["contagion_source"]]
    assert source["churns"].all()
    assert (spread["onset_date"].to_numpy() >= source["end_date"].to_numpy()).all()  # after the source left
    pairs = set(zip(ties["subscriber_id"], ties["contact_id"], strict=True))
    assert all(p in pairs for p in zip(spread["subscriber_id"], spread["contagion_source"], strict=True))


def _follow_rate(s, truth, days: int = 100) -> tuple[float, int]:
    """Share of ties of a subscriber who left (in the data) that churn within ``days`` after the departure."""
    it = truth["intents"].set_index("subscriber_id")
    ties = truth["ties"]
    gone = it["end_date"].where(it["churns"])
    e = ties.assign(
        left=gone.reindex(ties["contact_id"]).to_numpy(), own=gone.reindex(ties["subscriber_id"]).to_numpy()
    )
    e = e[(e["left"] >= pd.Timestamp(s.data.start_date)) & (e["left"] < pd.Timestamp(s.data.end_date))]
    e = e[~(e["own"] <= e["left"])]  # still a subscriber when the contact left
    follows = (e["own"] > e["left"]) & (e["own"] <= e["left"] + pd.Timedelta(days=days))
    return float(follows.mean()), len(e)


def test_contagion_raises_the_churn_of_contacts_of_churners(world, calm_world):
    (s, truth), (_, calm) = world, calm_world
    pd.testing.assert_frame_equal(truth["ties"], calm["ties"])  # the same graph
    assert not calm["intents"]["contagion"].any()
    p1, n1 = _follow_rate(s, truth)
    p0, n0 = _follow_rate(s, calm)
    se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    assert p1 - p0 > 3 * se, (p1, p0, se)


def test_same_seed_same_graph_and_truth(world, tmp_path_factory):
    s, truth = world
    again, truth2 = _world(tmp_path_factory, "again")
    for name in ("intents", "ties"):
        pd.testing.assert_frame_equal(truth[name], truth2[name])
    pd.testing.assert_frame_equal(
        pd.read_parquet(s.truth_dir / "true_probability.parquet"),
        pd.read_parquet(again.truth_dir / "true_probability.parquet"),
    )


def test_callee_hashes_match_the_subscribers_own_hashed_numbers(trained):
    """After ingestion no number is left, yet a call to a subscriber carries that subscriber's own
    number's hash under the same key: the graph can be rebuilt from pseudonymised records."""
    from pipelines.ingest import pseudonymise, salt  # noqa: PLC0415

    subs = pd.read_parquet(trained.landing_dir / "subscribers.parquet")
    own = pd.Series(pseudonymise(subs["msisdn"], salt(trained), trained), index=subs["subscriber_id"])
    raw = pd.read_parquet(
        trained.raw_dir / "cdr",
        columns=["subscriber_id", "callee_hash", "callee_class"],
        dtype_backend="numpy_nullable",
    )  # nullable: a 60-bit hash read as a float would lose its last bits
    to_subscriber = raw["callee_hash"].isin(set(own))
    assert 0.2 < to_subscriber.mean() < 0.45
    assert (raw.loc[to_subscriber, "callee_class"] == "on_net").all()
    ties = pd.read_parquet(trained.truth_dir / "ties.parquet")
    strongest = ties.sort_values("strength").groupby("subscriber_id").tail(1)
    called = set(zip(raw["subscriber_id"], raw["callee_hash"], strict=True))
    hit = [
        (a, own[b]) in called
        for a, b in zip(strongest["subscriber_id"], strongest["contact_id"], strict=True)
    ]
    assert np.mean(hit) > 0.9
