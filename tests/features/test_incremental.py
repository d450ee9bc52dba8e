"""Incremental feature builds (only new snapshots), incremental materialisation and the freshness check.

Each test works on a private copy of the session's trained workdir, whose feature table was built
(with its manifest) by the pipeline itself.
"""

import datetime as dt
import json
import logging
import os

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from core.config import load_settings
from features.catalogue import FEATURE_NAMES
from features.compute import compute_features
from features.manifest import definition_version, manifest_path
from features.store import VIEW, freshness, get_store, online_features
from pipelines.cli import app
from pipelines.errors import ValidationFailed
from pipelines.feature_build import FeatureBuild, build_features

NEW = dt.date(2026, 7, 1)  # the day after the simulated data ends: features complete, labels not


def _snapshots(settings) -> list[str]:
    return [str(s) for s in settings.features.snapshots]


def _with_new_snapshot(copy_trained, trained):
    return copy_trained(features={"snapshots": [*_snapshots(trained), str(NEW)]})


def _intervals(settings) -> list:
    return sorted(get_store(settings).get_feature_view(VIEW).materialization_intervals)


def _row_hashes(df: pd.DataFrame) -> list[int]:
    return pd.util.hash_pandas_object(df, index=False).tolist()


def _files(settings) -> dict:
    return {
        p.name: p.read_bytes()
        for p in (settings.feature_table, settings.label_table, manifest_path(settings))
    }


def _stderr(result) -> str:
    try:
        return result.stderr
    except ValueError:  # click < 8.2 mixes the streams
        return result.output


def test_pipeline_writes_a_manifest(trained):
    m = json.loads(manifest_path(trained).read_text())
    assert m["build"]["mode"] == "full"
    assert list(m["snapshots"]) == _snapshots(trained)
    assert m["online"]["status"] == "done" and m["online"]["mode"] == "full"
    assert m["definition"]["feature_names"] == FEATURE_NAMES
    assert {"cdr", "subscribers.parquet", "churn_events.parquet"} <= set(m["raw_fingerprint"])


def test_a_new_snapshot_is_computed_alone_appended_and_served(trained, copy_trained, caplog):
    s = _with_new_snapshot(copy_trained, trained)
    old_feats, old_labels = pd.read_parquet(s.feature_table), pd.read_parquet(s.label_table)
    intervals_before = _intervals(s)

    with caplog.at_level(logging.INFO):
        summary = build_features(s)

    assert f"features: 1 new snapshot {NEW}, 4 kept" in caplog.text
    m = json.loads(manifest_path(s).read_text())
    assert m["build"] == {
        "mode": "incremental",
        "reason": "same data and definitions",
        "computed": [str(NEW)],
        "kept": _snapshots(trained),
        "dropped": [],
        "recomputed": {},
    }
    assert isinstance(summary, FeatureBuild)
    assert summary.computed == 1 and summary.kept == 4 and summary.materialised == "incremental"
    report = json.loads((s.reports_dir / "features.json").read_text())  # the DVC metrics file
    assert list(report) == [
        "rows",
        "snapshots",
        "churn_rate",
        "build",
        "computed",
        "kept",
        "dropped",
        "materialised",
    ]
    assert report["snapshots"] == _snapshots(s) and report["rows"] == len(pd.read_parquet(s.feature_table))
    assert m["snapshots"][str(NEW)]["labels_complete"] is False  # the horizon runs past the data: as before
    assert m["snapshots"][_snapshots(trained)[0]]["labels_complete"] is True

    # the old rows are exactly the old rows; the whole table is what a full computation gives
    feats, labels = pd.read_parquet(s.feature_table), pd.read_parquet(s.label_table)
    old_part = feats["event_timestamp"] < pd.Timestamp(NEW, tz="UTC")
    assert _row_hashes(feats[old_part]) == _row_hashes(old_feats)
    assert _row_hashes(labels[old_part]) == _row_hashes(old_labels)
    pd.testing.assert_frame_equal(feats[old_part], old_feats, check_exact=True)
    full_feats, full_labels = compute_features(s.raw_dir, s.features.snapshots, s)
    # (DuckDB's parallel float sums are not bit-reproducible between runs: equal to rounding)
    keys = ["subscriber_id", "event_timestamp"]
    pd.testing.assert_frame_equal(feats[keys], full_feats[keys], check_exact=True)
    np.testing.assert_allclose(feats[FEATURE_NAMES], full_feats[FEATURE_NAMES], rtol=1e-12)
    pd.testing.assert_frame_equal(labels, full_labels, check_exact=True)

    # only the new interval was loaded (materialize_incremental), and the online store serves it
    intervals = _intervals(s)
    assert intervals[:-1] == intervals_before
    assert intervals[-1][0] == intervals_before[-1][1]
    assert intervals[-1][1] == dt.datetime(2026, 7, 1, 0, 0, 1, tzinfo=dt.UTC)
    newest = feats[feats["event_timestamp"] == pd.Timestamp(NEW, tz="UTC")].set_index("subscriber_id")
    before = old_feats[old_feats["event_timestamp"] == old_feats["event_timestamp"].max()].set_index(
        "subscriber_id"
    )
    both = newest.index.intersection(before.index)
    a, b = newest.loc[both, FEATURE_NAMES].to_numpy(float), before.loc[both, FEATURE_NAMES].to_numpy(float)
    moved = both[~np.isclose(a, b).all(axis=1)].tolist()  # subscribers whose values changed since June
    assert len(moved) > 10
    ids = moved[:50]
    online = online_features(get_store(s), ids).set_index("subscriber_id")
    np.testing.assert_allclose(online.loc[ids, FEATURE_NAMES], newest.loc[ids, FEATURE_NAMES])

    # a rerun with nothing new computes, writes and loads nothing
    files = _files(s)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = build_features(s)
    assert "features: no new snapshot, 5 kept" in caplog.text
    assert again.materialised == "up to date" and _files(s) == files and _intervals(s) == intervals


def test_changed_ingested_data_forces_a_full_rebuild(copy_trained, caplog):
    s = copy_trained()
    old_labels = pd.read_parquet(s.label_table)
    # one churner of the first snapshot's label window no longer churns in the ingested data
    first = s.features.snapshots[0]
    ts = pd.Timestamp(first, tz="UTC")
    gone = old_labels.loc[
        (old_labels["event_timestamp"] == ts) & (old_labels["churned"] == 1), "subscriber_id"
    ].iloc[0]
    events = pd.read_parquet(s.raw_dir / "churn_events.parquet")
    events[events["subscriber_id"] != gone].to_parquet(s.raw_dir / "churn_events.parquet", index=False)

    with caplog.at_level(logging.INFO):
        summary = build_features(s)

    assert "features: full build of 4 snapshots (ingested data changed: churn_events.parquet)" in caplog.text
    m = json.loads(manifest_path(s).read_text())
    assert m["build"]["mode"] == "full" and m["build"]["computed"] == _snapshots(s)
    assert summary.materialised == "full" and m["online"]["mode"] == "full"
    labels = pd.read_parquet(s.label_table)
    was = old_labels[(old_labels["subscriber_id"] == gone) & (old_labels["event_timestamp"] == ts)]["churned"]
    now = labels[(labels["subscriber_id"] == gone) & (labels["event_timestamp"] == ts)]["churned"]
    assert was.tolist() == [1] and now.tolist() == [0]  # an old snapshot's label was recomputed
    pd.testing.assert_frame_equal(
        labels, compute_features(s.raw_dir, s.features.snapshots, s)[1], check_exact=True
    )


def test_changed_definitions_or_a_dropped_snapshot(copy_trained, caplog):
    s = copy_trained(features={"recent_days": 21})
    with caplog.at_level(logging.INFO):
        build_features(s)
    assert "full build of 4 snapshots (feature definitions changed: features_config)" in caplog.text

    old = pd.read_parquet(s.feature_table)
    dropped, *kept = s.features.snapshots
    s = s.model_copy(update={"features": s.features.model_copy(update={"snapshots": kept})})
    caplog.clear()
    with caplog.at_level(logging.INFO):
        summary = build_features(s)
    assert f"features: no new snapshot, 3 kept, 1 dropped ({dropped}" in caplog.text
    assert summary.materialised == "full"  # the online store is reloaded from what remains
    feats = pd.read_parquet(s.feature_table)
    assert _row_hashes(feats) == _row_hashes(old[old["event_timestamp"] > pd.Timestamp(dropped, tz="UTC")])
    assert list(json.loads(manifest_path(s).read_text())["snapshots"]) == [str(d) for d in kept]


def test_a_duckdb_memory_limit_is_no_change_of_definition(make_config, tmp_path):
    """It bounds the query's memory, not its values: set or changed, it recomputes nothing."""
    plain = load_settings(make_config(tmp_path / "a"))
    bounded = load_settings(make_config(tmp_path / "b", features={"duckdb_memory_limit": "2GB"}))
    assert definition_version(plain) == definition_version(bounded)


def test_failed_validation_of_new_rows_keeps_the_old_table(trained, copy_trained, out_of_range_features):
    s = _with_new_snapshot(copy_trained, trained)
    files, intervals = _files(s), _intervals(s)
    out_of_range_features(3)
    with pytest.raises(ValidationFailed) as err:
        build_features(s)
    assert f"new rows for {NEW}" in str(err.value) and "zero_call_days_30d" in str(err.value)
    assert _files(s) == files  # feature table, labels and manifest byte-identical
    assert _intervals(s) == intervals  # nothing loaded into the online store


def test_freshness_right_after_a_build(trained):
    latest = trained.features.snapshots[-1]
    report = freshness(trained, as_of=latest + dt.timedelta(days=3))
    assert report.status == "fresh" and report.ok
    assert report.latest_snapshot == latest and report.age_days == 3
    assert report.online_sample.found == report.online_sample.at_table_latest > 0

    result = CliRunner().invoke(
        app,
        ["freshness", "--config", str(trained.config_path), "--as-of", str(latest + dt.timedelta(days=3))],
    )
    assert result.exit_code == 0, result.output
    assert "fresh" in result.stdout and f"latest snapshot     {latest}" in result.stdout


def test_freshness_is_stale_far_in_the_future(trained):
    result = CliRunner().invoke(
        app, ["freshness", "--config", str(trained.config_path), "--as-of", "2027-06-01"]
    )
    assert result.exit_code == 1, result.output
    assert "stale" in result.stdout
    latest = trained.features.snapshots[-1]
    age = (dt.date(2027, 6, 1) - latest).days
    assert (
        f"features are stale: the online store's newest snapshot {latest} is {age} days old on 2027-06-01 "
        "(bound features.max_staleness_days = 35)" in _stderr(result)
    )


def test_freshness_when_never_materialised(make_config, tmp_path):
    config = make_config(tmp_path / "empty")
    result = CliRunner().invoke(app, ["freshness", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "never materialised" in result.stdout
    assert "the online store has never been materialised" in _stderr(result)
    assert not (tmp_path / "empty" / "data").exists()  # the check creates nothing


def test_freshness_when_the_online_store_lags_the_table(trained, copy_trained):
    """The table has a snapshot the online store never got (a load that failed after the write)."""
    from features import manifest as mf
    from features.store import apply_and_materialize

    s = _with_new_snapshot(copy_trained, trained)
    feats, labels = compute_features(s.raw_dir, s.features.snapshots, s)
    feats.to_parquet(s.feature_table, index=False)
    labels.to_parquet(s.label_table, index=False)
    report = freshness(s, as_of=NEW)
    assert report.status == "stale" and report.latest_snapshot == s.features.snapshots[-2]
    assert f"the feature table has {NEW}" in report.message
    assert mf.plan(s, mf.read_manifest(s), mf.raw_fingerprint(s), mf.definition_version(s)).mode == "full"
    assert apply_and_materialize(s, incremental=True)["mode"] == "incremental"
    assert freshness(s, as_of=NEW).status == "fresh"


def _late_calls(settings, day: str, n: int = 200) -> pd.DataFrame:
    """``n`` more calls of ``day`` (some of its calls again, 7 s later), as a late delivery brings."""
    part = settings.landing_dir / "cdr" / f"date={day}"
    calls = pd.concat([pd.read_parquet(f) for f in sorted(part.glob("*.parquet"))], ignore_index=True)
    calls = calls.assign(start_time=calls["start_time"] + pd.Timedelta(seconds=7))
    return calls[calls["start_time"].dt.date.astype(str) == day].head(n)


def test_windows_of_the_snapshots(trained):
    """A CDR day recomputes the snapshots T with T - lookback_days <= day < T, no other."""
    from features import manifest as mf

    m, fp = mf.read_manifest(trained), mf.raw_fingerprint(trained)
    definition = mf.definition_version(trained)
    assert mf.plan(trained, m, fp, definition).compute == []
    expect = {  # lookback 90 days: 2026-06-01 reads 2026-03-03 .. 2026-05-31
        "2026-02-28": ["2026-03-01", "2026-04-01", "2026-05-01"],
        "2026-03-01": ["2026-04-01", "2026-05-01"],
        "2026-03-02": ["2026-04-01", "2026-05-01"],
        "2026-03-03": ["2026-04-01", "2026-05-01", "2026-06-01"],
        "2026-05-15": ["2026-06-01"],
        "2026-05-31": ["2026-06-01"],
        "2026-06-01": [],
        "2025-12-01": ["2026-03-01"],
    }
    for day, snapshots in expect.items():
        changed = fp | {"cdr": fp["cdr"] | {day: "other"}}
        p = mf.plan(trained, m, changed, definition)
        assert p.mode == "incremental" and [str(s) for s in p.compute] == snapshots, day
        assert [str(s) for s in p.recompute] == snapshots
        assert all(why == f"cdr day {day} changed" for why in p.recompute.values())
        assert p.materialise == ("full" if snapshots else "incremental")
    added = fp | {"cdr": fp["cdr"] | {"2026-07-01": "new"}}
    assert mf.plan(trained, m, added, definition).describe() == (
        "features: no new snapshot, 4 kept (no changed day in their windows: cdr day 2026-07-01 added)"
    )
    table = fp | {"billing.parquet": "other"}
    assert mf.plan(trained, m, table, definition).describe() == (
        "features: full build of 4 snapshots (ingested data changed: billing.parquet)"
    )


def test_a_late_partition_recomputes_only_the_snapshots_reading_it(copy_trained, caplog):
    s = copy_trained()
    old_feats, old_labels = pd.read_parquet(s.feature_table), pd.read_parquet(s.label_table)
    late = _late_calls(s, "2026-05-15")
    late.to_parquet(s.landing_dir / "cdr" / "date=2026-05-15" / "late.parquet", index=False)

    with caplog.at_level(logging.INFO):
        summary = build_features(s)  # ingests the changed partition alone, then the features

    assert "(1 new or changed: 2026-05-15; 211 unchanged kept, 0 removed)" in caplog.text
    assert (
        "features: no new snapshot, 1 recomputed (2026-06-01: cdr day 2026-05-15 changed), 3 kept "
        "(no changed day in their windows: cdr day 2026-05-15 changed)" in caplog.text
    )
    assert summary.build == "incremental" and summary.computed == 1 and summary.kept == 3
    m = json.loads(manifest_path(s).read_text())
    assert m["build"]["computed"] == ["2026-06-01"]
    assert m["build"]["recomputed"] == {"2026-06-01": "cdr day 2026-05-15 changed"}
    assert summary.materialised == "changed rows"  # the newest snapshot recomputed: its changed rows written

    feats, labels = pd.read_parquet(s.feature_table), pd.read_parquet(s.label_table)
    june = pd.Timestamp("2026-06-01", tz="UTC")
    assert _row_hashes(feats[feats["event_timestamp"] < june]) == _row_hashes(
        old_feats[old_feats["event_timestamp"] < june]
    )  # the other snapshots' rows as they were
    callers = set(late["subscriber_id"])
    now = feats[(feats["event_timestamp"] == june) & feats["subscriber_id"].isin(callers)]
    was = old_feats[(old_feats["event_timestamp"] == june) & old_feats["subscriber_id"].isin(callers)]
    assert (now["minutes_baseline_per_day"].to_numpy() > was["minutes_baseline_per_day"].to_numpy()).any()

    # row for row what a full rebuild from the new data gives
    full_feats, full_labels = compute_features(s.raw_dir, s.features.snapshots, s)
    keys = ["subscriber_id", "event_timestamp"]
    pd.testing.assert_frame_equal(feats[keys], full_feats[keys], check_exact=True)
    np.testing.assert_allclose(feats[FEATURE_NAMES], full_feats[FEATURE_NAMES], rtol=1e-12)
    pd.testing.assert_frame_equal(labels, full_labels, check_exact=True)
    pd.testing.assert_frame_equal(labels, old_labels, check_exact=True)  # labels read no calls


def test_touched_files_with_the_same_bytes_recompute_nothing(copy_trained, caplog):
    s = copy_trained()
    files = _files(s)
    later = (2_000_000_000, 2_000_000_000)
    for f in (
        sorted((s.landing_dir / "cdr" / "date=2026-05-15").glob("*.parquet"))[0],
        sorted((s.raw_dir / "cdr" / "date=2026-04-15").glob("*.parquet"))[0],
        s.raw_dir / "subscribers.parquet",
        s.landing_dir / "billing.parquet",
    ):
        os.utime(f, later)

    with caplog.at_level(logging.INFO):
        summary = build_features(s)

    assert "none new or changed; 212 unchanged kept" in caplog.text  # re-ingestion found nothing new
    assert "features: no new snapshot, 4 kept" in caplog.text
    assert summary.computed == 0 and summary.materialised == "up to date"
    assert _files(s) == files  # feature table, labels and manifest byte-identical
