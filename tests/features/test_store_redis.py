"""Production online store: Redis on localhost serves the same values as the SQLite default."""

import uuid

import numpy as np
import pandas as pd
import redis

from features.catalogue import FEATURE_NAMES
from features.store import apply_and_materialize, get_store, online_features, online_rows


def test_redis_online_store_matches_sqlite(trained, copy_trained):
    redis.Redis(host="127.0.0.1", port=6379).ping()  # a clear error if the server is not running
    project = f"churnwarn_test_{uuid.uuid4().hex[:8]}"
    s = copy_trained(
        feast={"project": project, "online_store": {"type": "redis", "redis_connection": "127.0.0.1:6379"}}
    )
    apply_and_materialize(s)
    store = get_store(s)
    try:
        table = pd.read_parquet(trained.feature_table)
        ids = table.loc[table["event_timestamp"] == table["event_timestamp"].max(), "subscriber_id"].tolist()[
            :100
        ]
        from_redis = online_features(store, ids + ["NOBODY"]).set_index("subscriber_id")
        from_sqlite = online_features(get_store(trained), ids).set_index("subscriber_id")
        np.testing.assert_allclose(from_redis.loc[ids, FEATURE_NAMES], from_sqlite.loc[ids, FEATURE_NAMES])
        assert from_redis.loc["NOBODY"].isna().all()
        rows = online_rows(store, [*ids, "NOBODY"])  # the service's read: Feast's Redis online_read
        np.testing.assert_array_equal(rows.values[:-1], from_redis.loc[ids, FEATURE_NAMES].to_numpy())
        assert np.isnan(rows.values[-1]).all() and rows.stamps[-1] is None and None not in rows.stamps[:-1]
        assert "_ts:subscriber_features" not in FEATURE_NAMES  # Feast appends it to the list it is given
    finally:
        store.teardown()
