"""Feast: the training path (historical) and the serving path (online) return the same values."""

import numpy as np
import pandas as pd

from features.catalogue import FEATURE_NAMES
from features.store import get_store, historical_features, online_features


def test_historical_features_equal_the_feature_table(trained):
    table = pd.read_parquet(trained.feature_table)
    labels = pd.read_parquet(trained.label_table)
    hist = historical_features(trained, labels)
    merged = table.merge(hist, on=["subscriber_id", "event_timestamp"], suffixes=("", "_feast"))
    assert len(merged) == len(table) == len(labels)
    for n in FEATURE_NAMES:
        np.testing.assert_allclose(merged[n], merged[f"{n}_feast"], err_msg=n)


def test_online_features_equal_the_latest_snapshot_and_unknown_ids_are_empty(trained):
    table = pd.read_parquet(trained.feature_table)
    latest = table[table["event_timestamp"] == table["event_timestamp"].max()].set_index("subscriber_id")
    ids = latest.index[:50].tolist() + ["NOT-A-SUBSCRIBER"]
    online = online_features(get_store(trained), ids).set_index("subscriber_id")
    assert online.index.tolist() == ids  # request order kept
    np.testing.assert_allclose(online.loc[ids[:-1], FEATURE_NAMES], latest.loc[ids[:-1], FEATURE_NAMES])
    assert online.loc["NOT-A-SUBSCRIBER"].isna().all()


def test_training_and_serving_see_the_same_values_for_the_same_subscriber_and_date(trained):
    """No skew: Feast's point-in-time join (training) and its online store (serving) agree."""
    table = pd.read_parquet(trained.feature_table)
    latest = table["event_timestamp"].max()
    ids = table.loc[table["event_timestamp"] == latest, "subscriber_id"].sample(40, random_state=3).tolist()
    hist = historical_features(trained, pd.DataFrame({"subscriber_id": ids, "event_timestamp": latest}))
    online = online_features(get_store(trained), ids)
    pd.testing.assert_frame_equal(
        hist.set_index("subscriber_id").loc[ids, FEATURE_NAMES],
        online.set_index("subscriber_id").loc[ids, FEATURE_NAMES],
        check_exact=True,
    )


def test_online_features_can_carry_their_event_timestamps(trained):
    table = pd.read_parquet(trained.feature_table)
    newest = table["event_timestamp"].max()
    ids = table.loc[table["event_timestamp"] == newest, "subscriber_id"].head(3).tolist()
    online = online_features(get_store(trained), [*ids, "S-NOBODY"], event_timestamps=True)
    newest = pd.Timestamp(newest)
    newest = newest.tz_localize("UTC") if newest.tz is None else newest.tz_convert("UTC")
    assert list(online["event_timestamp"][:3]) == [newest] * 3
    assert pd.isna(online["event_timestamp"].iloc[3])
    plain = online_features(get_store(trained), ids)
    assert "event_timestamp" not in plain and plain.equals(online.drop(columns="event_timestamp")[:3])


def test_importing_the_store_leaves_the_process_warning_filters_alone():
    """Feast's import turns every DeprecationWarning back on process-wide; features.store keeps it in."""
    import subprocess
    import sys

    code = (
        "import warnings; before = list(warnings.filters); import features.store; "
        "new = [f for f in warnings.filters if f not in before]; "
        "assert not [f for f in new if f[2] is DeprecationWarning and f[0] != 'ignore'], new"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_online_rows_read_what_get_online_features_reads(trained):
    """The service's read (the OnlineStore's own ``online_read``) against Feast's ``get_online_features``."""
    import numpy as np

    from features.catalogue import FEATURE_NAMES
    from features.store import online_rows

    table = pd.read_parquet(trained.feature_table)
    ids = table["subscriber_id"].drop_duplicates().head(40).tolist()
    ids = [*ids, "S-NOBODY", ids[0]]
    store = get_store(trained)
    names = list(FEATURE_NAMES)
    rows, ref = online_rows(store, ids), online_features(store, ids, event_timestamps=True)
    np.testing.assert_array_equal(rows.values, ref[FEATURE_NAMES].to_numpy(dtype="float64"))
    assert rows.stamps == [None if pd.isna(t) else t.to_pydatetime() for t in ref["event_timestamp"]]
    assert rows.stamps[-2] is None and np.isnan(rows.values[-2]).all()
    assert FEATURE_NAMES == names


def test_a_full_load_in_many_online_writes_holds_every_subscribers_newest_row(trained_copy, monkeypatch):
    """Feast writes a materialisation in batches of ``ONLINE_WRITE_ROWS`` rows (memory bounded at 10^6
    subscribers): split into many, the online store still holds every subscriber's newest values."""
    import features.store as store

    monkeypatch.setattr(store, "ONLINE_WRITE_ROWS", 7)
    (trained_copy.feast_dir / "online_store.db").unlink()
    assert store.apply_and_materialize(trained_copy)["mode"] == "full"
    table = pd.read_parquet(trained_copy.feature_table)
    latest = table[table["event_timestamp"] == table["event_timestamp"].max()].set_index("subscriber_id")
    ids = latest.index.tolist()
    assert len(ids) > 10 * 7
    online = online_features(get_store(trained_copy), ids).set_index("subscriber_id")
    np.testing.assert_allclose(online.loc[ids, FEATURE_NAMES], latest.loc[ids, FEATURE_NAMES])
