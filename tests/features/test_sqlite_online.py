"""The bulk read of and write into Feast's SQLite online store: what Feast reads and writes."""

import sqlite3
import warnings

import numpy as np
import pandas as pd

from core.config import load_settings
from features.catalogue import FEATURE_NAMES
from features.sqlite_online import decode_values
from features.store import (
    VIEW,
    definitions,
    get_store,
    online_features,
    online_rows,
    online_rows_now,
    write_online_rows,
)

with warnings.catch_warnings():  # Feast's modules turn deprecation warnings on when imported
    from feast.protos.feast.types.Value_pb2 import Null
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto


def test_decode_values_reads_doubles_in_bulk_and_any_other_proto_as_feast_does():
    protos = [
        ValueProto(double_val=1.5),
        ValueProto(double_val=0.0),
        ValueProto(double_val=-2.25e9),
        ValueProto(null_val=Null.NULL),
        ValueProto(),
        ValueProto(int64_val=7),
        ValueProto(float_val=0.5),
        ValueProto(double_val=float("nan")),
    ]
    got = decode_values([p.SerializeToString() for p in protos])
    np.testing.assert_array_equal(got, [1.5, 0.0, -2.25e9, np.nan, np.nan, 7.0, 0.5, np.nan])
    assert decode_values([]).shape == (0,)


def _table(settings) -> str:
    """Feast's SQLite table of the view (``<project>_<view>``)."""
    return f"{settings.feast.project}_{VIEW}"


def test_rows_with_a_null_or_missing_value_read_what_get_online_features_reads(trained_copy):
    """A subscriber whose protos are not all 9-byte doubles is read row by row, as Feast parses them."""
    table = pd.read_parquet(trained_copy.feature_table)
    ids = table.loc[table["event_timestamp"] == table["event_timestamp"].max(), "subscriber_id"].tolist()[:6]
    db = sqlite3.connect(trained_copy.feast_dir / "online_store.db")
    with db:
        null = ValueProto(null_val=Null.NULL).SerializeToString()
        db.execute(
            f"UPDATE {_table(trained_copy)} SET value = ? WHERE feature_name = ?", (null, FEATURE_NAMES[3])
        )
        db.execute(f"DELETE FROM {_table(trained_copy)} WHERE feature_name = ?", (FEATURE_NAMES[5],))
    db.close()
    store = get_store(trained_copy)
    ask = [*ids, "S-NOBODY", ids[0]]
    rows, ref = online_rows(store, ask), online_features(store, ask, event_timestamps=True)
    expected, known = ref[FEATURE_NAMES].to_numpy(dtype="float64"), [a != "S-NOBODY" for a in ask]
    # a null value is missing here (NaN: the id is then unknown to the service), as Feast's online_read
    # parses it; get_online_features reports it as 0.0, a value the subscriber never had
    assert (expected[known, 3] == 0).all()
    expected[known, 3] = np.nan
    np.testing.assert_array_equal(rows.values, expected)
    assert rows.stamps == [None if pd.isna(t) else t.to_pydatetime() for t in ref["event_timestamp"]]
    assert np.isnan(rows.values[known][:, [3, 5]]).all()
    assert not np.isnan(np.delete(rows.values[known], [3, 5], axis=1)).any()


def test_the_unwaiting_read_gives_way_to_a_writer(trained):
    """On the event loop the service reads only when no load holds the file; else None, at once."""
    store = get_store(trained)
    ids = pd.read_parquet(trained.feature_table)["subscriber_id"].head(3).tolist()
    now = online_rows_now(store, ids)
    np.testing.assert_array_equal(now.values, online_rows(store, ids).values)
    writer = sqlite3.connect(trained.feast_dir / "online_store.db")
    try:
        writer.execute("BEGIN EXCLUSIVE")
        assert online_rows_now(store, ids) is None
    finally:
        writer.rollback()
        writer.close()
    assert online_rows_now(store, ids) is not None


def _frame(n: int, seed: int) -> pd.DataFrame:
    values = np.random.default_rng(seed).random((n, len(FEATURE_NAMES))) * 100
    values[::7, 3] = np.nan  # Feast writes NaN as an empty (null) value
    values[:4, 4] = [0.0, -0.0, 3.0, 1e300]
    df = pd.DataFrame(values, columns=FEATURE_NAMES)
    df.insert(0, "subscriber_id", [f"S{i:05d}" for i in range(n)])
    df.insert(1, "event_timestamp", pd.Timestamp("2026-03-31", tz="UTC"))
    return df


def _store_table(settings) -> list[tuple]:
    db = sqlite3.connect(settings.feast_dir / "online_store.db")
    try:
        return db.execute(
            "SELECT entity_key, feature_name, value, value_text, event_ts, typeof(event_ts), created_ts "
            f"FROM {_table(settings)} ORDER BY entity_key, feature_name"
        ).fetchall()
    finally:
        db.close()


def test_the_bulk_write_leaves_the_table_feasts_own_write_leaves(make_config, tmp_path):
    """Whole rows, then some values of some rows and a subscriber new to the store: byte for byte as
    ``write_to_online_store`` leaves it, which writes whole rows."""
    old = _frame(300, 1)
    new = pd.concat([old, _frame(303, 2).tail(3).assign(subscriber_id=["N1", "N2", "N3"])], ignore_index=True)
    new.loc[::5, FEATURE_NAMES[6]] += 1
    new.loc[1::9, FEATURE_NAMES[9]] = np.nan
    new.loc[::11, FEATURE_NAMES[3]] = 5.0
    a, b = new[FEATURE_NAMES].to_numpy(), old[FEATURE_NAMES].reindex(new.index).to_numpy()
    cells = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    cells[len(old) :] = True
    rows = cells.any(axis=1)
    tables = {}
    for how in ("feast", "bulk"):
        settings = load_settings(make_config(tmp_path / how))
        store = get_store(settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            store.apply(definitions(settings))
            if how == "feast":
                store.write_to_online_store(VIEW, df=old)
                store.write_to_online_store(VIEW, df=new[rows].reset_index(drop=True))
            else:
                assert write_online_rows(store, old) == old[FEATURE_NAMES].size
                assert write_online_rows(store, new[rows].reset_index(drop=True), cells[rows]) == cells.sum()
        tables[how] = _store_table(settings)
    assert tables["bulk"] == tables["feast"]
    assert len(tables["feast"]) == len(new) * len(FEATURE_NAMES)
