"""The records ceiling is only a ceiling if its learner sees what a model could: nothing at or after T."""

import importlib.util
import sys

import numpy as np
import pandas as pd

from core.config import REPO_ROOT as ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their shared _report helper
spec = importlib.util.spec_from_file_location("records_ceiling", ROOT / "benchmarks" / "records_ceiling.py")
records_ceiling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(records_ceiling)


def test_record_features_never_see_a_day_or_a_bill_at_or_after_the_snapshot(trained):
    work = records_ceiling.Workdir(trained)  # changed in memory only
    t = work.snapshots[-2]  # a snapshot with data after it
    _, before = work.frame(t)
    day = (pd.Timestamp(t) - work.start).days
    for series in work.series.values():
        series[:, day:] += 3  # every kind of record, on T and after
    late = work.bills.drop_duplicates("subscriber_id").assign(
        bill_date=pd.Timestamp(t), charge=9999.0, arrears=500.0
    )
    work.bills = pd.concat([work.bills, late])
    _, after = work.frame(t)
    pd.testing.assert_frame_equal(before, after)

    work.series["calls"][:, day - 1] += 3  # the day before T is seen: the test can catch a leak
    _, seen = work.frame(t)
    assert (seen["calls_1d"] == before["calls_1d"] + 3).all()


def test_graph_records_see_only_calls_and_departures_before_the_snapshot(trained):
    """The call graph's records: contacts who leave on T or later, and calls on T or later, change nothing."""
    work = records_ceiling.Workdir(trained)
    t = work.snapshots[-2]
    T = (pd.Timestamp(t) - work.start).days
    rows = work.labels.loc[work.labels["t"] == t, "subscriber_id"]
    r = work.index.loc[rows].to_numpy()
    g = work.graph
    before = g.features(r, T)
    assert before["graph_contacts"].mean() > 2 and before["graph_contacts_left_ever"].sum() > 0
    g.gone[g.gone >= T] = T  # everyone still here leaves on T
    g.a, g.b = np.concatenate([g.a, g.a]), np.concatenate([g.b, g.b])
    g.d, g.n = np.concatenate([g.d, np.maximum(g.d, T)]), np.concatenate([g.n, g.n * 5])
    pd.testing.assert_frame_equal(before, g.features(r, T))
    g.gone[g.gone == T] = T - 1  # ... or the day before: now seen
    assert (g.features(r, T)["graph_contacts_left_ever"] >= before["graph_contacts_left_ever"]).all()
    assert g.features(r, T)["graph_contacts_left_ever"].sum() > before["graph_contacts_left_ever"].sum()
