"""``training.sample_rows``: a stratified sample of the training rows (per snapshot and label), taken
after the out-of-time split, recorded on the MLflow run; validation and test rows are never sampled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.registry import use_tracking
from models.training_data import (
    TrainingSet,
    bound_held_out,
    sample_training_set,
    stratified_positions,
    stratified_sample,
)
from pipelines.training import train

SNAPSHOTS = pd.to_datetime(["2026-03-01", "2026-04-01", "2026-05-01"], utc=True)


def _frame(sizes=(900, 1200, 700), churn=(0.04, 0.06, 0.1), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = [
        pd.DataFrame(
            {
                "subscriber_id": [f"s{t.month}-{i}" for i in range(n)],
                "event_timestamp": t,
                "x": rng.normal(size=n),
                "churned": (rng.random(n) < p).astype("int32"),
            }
        )
        for t, n, p in zip(SNAPSHOTS, sizes, churn[: len(sizes)], strict=False)
    ]
    return pd.concat(parts, ignore_index=True)


def _training_set(frame: pd.DataFrame) -> TrainingSet:
    valid, test = _frame((300,), seed=1), _frame((400,), seed=2)
    return TrainingSet(
        X_train=frame[["x"]],
        y_train=frame["churned"].to_numpy(),
        X_valid=valid[["x"]],
        y_valid=valid["churned"].to_numpy(),
        X_test=test[["x"]],
        y_test=test["churned"].to_numpy(),
        features=["x"],
        data_version="v",
        params={"n_train": len(frame)},
        held_out="test",
        split="out of time",
        keys_train=frame[["subscriber_id", "event_timestamp"]],
    )


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 400), min_size=1, max_size=3),
    churn=st.floats(0.0, 0.5),
    share=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**31),
)
def test_every_snapshot_and_label_keeps_its_share_within_one_row(sizes, churn, share, seed):
    frame = _frame(tuple(sizes), (churn,) * len(sizes), seed=seed % 1000)
    n = max(1, int(share * len(frame)))
    rows, sample = stratified_sample(frame, n, seed)
    assert len(rows) == sample.rows_sampled == n
    before = frame.groupby(["event_timestamp", "churned"]).size()
    after = rows.groupby(["event_timestamp", "churned"]).size().reindex(before.index, fill_value=0)
    assert (abs(after - n * before / len(frame)) < 1).all()
    assert not rows.duplicated(["subscriber_id", "event_timestamp"]).any()
    assert rows.merge(frame).shape[0] == n  # every sampled row is a training row as it was


def test_the_sample_is_deterministic_for_a_seed():
    frame = _frame()
    strata = frame[["event_timestamp", "churned"]]
    one, again = stratified_positions(strata, 500, 7), stratified_positions(strata, 500, 7)
    np.testing.assert_array_equal(one, again)
    assert not np.array_equal(one, stratified_positions(strata, 500, 8))
    a, b = (
        sample_training_set(_training_set(frame), 500, 7),
        sample_training_set(_training_set(frame), 500, 7),
    )
    pd.testing.assert_frame_equal(a.keys_train, b.keys_train)
    pd.testing.assert_frame_equal(a.X_train, b.X_train)


def test_only_the_training_rows_are_sampled_and_described():
    data = _training_set(_frame())
    out = sample_training_set(data, 500, 7)
    assert len(out.X_train) == len(out.y_train) == len(out.keys_train) == 500
    assert out.X_valid is data.X_valid and out.X_test is data.X_test
    np.testing.assert_array_equal(out.y_test, data.y_test)
    np.testing.assert_array_equal(out.y_valid, data.y_valid)
    # features, labels and keys stay aligned row by row
    joined = out.keys_train.assign(x=out.X_train["x"].to_numpy(), churned=out.y_train)
    assert joined.merge(_frame()).shape[0] == 500
    s = out.sample
    assert (s.requested, s.rows_total, s.rows_sampled, s.strata) == (
        500,
        2800,
        500,
        ("event_timestamp", "churned"),
    )
    assert s.churn_rate_total == pytest.approx(data.y_train.mean())
    assert s.churn_rate_sampled == pytest.approx(out.y_train.mean())
    assert abs(s.churn_rate_sampled - s.churn_rate_total) < s.n_strata / 500
    assert out.params["n_train"] == 500


def test_null_keeps_every_row():
    frame = _frame()
    rows, sample = stratified_sample(frame, None, 7)
    pd.testing.assert_frame_equal(rows, frame)
    assert sample.fraction == 1.0 and sample.params()["sample_rows"] == "all"
    data = _training_set(frame)
    out = sample_training_set(data, None, 7)
    pd.testing.assert_frame_equal(out.X_train, data.X_train)
    assert out.sample.rows_sampled == out.sample.rows_total == len(frame)
    assert sample_training_set(data, 10**6, 7).sample.rows_sampled == len(frame)  # more than there are: all


def test_a_training_run_records_its_sample_on_mlflow(copy_trained):
    """A real training run (Feast rows, MLflow on SQLite in the copied workdir) with sample_rows set."""
    s = copy_trained(training={"sample_rows": 600})
    result = train(s)
    assert result.n_train == 600
    client = use_tracking(s)
    parent = client.get_run(result.parent_run_id)
    p = parent.data.params
    assert (p["sample_rows"], p["train_rows_sampled"], p["n_train"]) == ("600", "600", "600")
    assert int(p["train_rows_total"]) > 600 and p["sample_strata"] == "event_timestamp,churned"
    assert 0 < float(p["train_churn_rate_sampled"]) < 0.5
    assert abs(float(p["train_churn_rate_sampled"]) - float(p["train_churn_rate_total"])) < 4 / 600
    assert int(p["n_test"]) == result.n_test > 600  # the held-out snapshot is whole
    child = client.get_run(result.candidates["lightgbm"].run_id)
    assert child.data.params["train_rows_sampled"] == "600"
    (inp,) = parent.inputs.dataset_inputs
    assert inp.dataset.name == "train_sample" and '"num_rows": 600' in inp.dataset.profile
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"


def test_eval_rows_bound_each_held_out_part_by_label():
    data = _training_set(_frame())
    out = bound_held_out(data, 100, 7)
    assert len(out.y_valid) == len(out.X_valid) == 100 and len(out.y_test) == 100
    assert abs(out.y_test.mean() - data.y_test.mean()) < 2 / 100  # the churn rate kept within a row
    assert (out.params["valid_rows_total"], out.params["test_rows_total"]) == (300, 400)
    assert out.X_train is data.X_train and bound_held_out(data, None, 7) is data


@pytest.mark.slow  # a JVM, Feast's Spark offline store and a training run
def test_on_spark_only_the_sample_reaches_the_driver(trained, copy_trained, spark, driver_results_limit):
    """The Spark engine samples on the executors: the training set (~600 KiB) would break a 384 KiB
    limit on what jobs return to the driver; the per-stratum counts are the DuckDB path's."""
    from features.store import apply_and_materialize, historical_features

    s = copy_trained(features={"engine": "spark"}, training={"sample_rows": 300, "eval_rows": 250})
    apply_and_materialize(s)  # the copied registry holds the DuckDB FileSource: register the SparkSource
    with driver_results_limit("384k"):
        with pytest.raises(Exception, match="maxResultSize"):  # the control: the training set collected
            spark.read.parquet(str(s.feature_table)).toPandas()
        result = train(s)
    p = use_tracking(s).get_run(result.parent_run_id).data.params
    assert (p["sample_rows"], p["train_rows_sampled"], p["n_train"]) == ("300", "300", "300")
    assert (p["eval_rows"], p["n_valid"], p["n_test"]) == ("250", "250", "250")
    assert int(p["test_rows_total"]) == len(
        pd.read_parquet(trained.label_table).query("event_timestamp == event_timestamp.max()")
    )

    frame = historical_features(trained, pd.read_parquet(trained.label_table))  # the DuckDB path's rows
    train_rows = frame[
        frame["event_timestamp"].isin(pd.to_datetime(p["train_snapshots"].split(","), utc=True))
    ]
    _, duck = stratified_sample(train_rows, 300, 7)
    assert int(p["train_rows_total"]) == duck.rows_total
    assert float(p["train_churn_rate_sampled"]) == pytest.approx(duck.churn_rate_sampled, abs=1e-6)


@pytest.mark.slow  # a JVM
def test_the_spark_sample_keeps_the_duckdb_strata_and_is_deterministic(spark):
    from models.training_data_spark import stratified_sample as spark_sample

    frame = _frame(sizes=(900, 1200, 700), churn=(0.04, 0.06, 0.1))
    lazy = spark.createDataFrame(frame).repartition(3)
    rows, drawn = spark_sample(lazy, 500, 7)
    duck_rows, duck = stratified_sample(frame, 500, 7)
    strata = ["event_timestamp", "churned"]
    rows["event_timestamp"] = rows["event_timestamp"].dt.tz_localize("UTC")
    pd.testing.assert_series_equal(rows.groupby(strata).size(), duck_rows.groupby(strata).size())
    assert drawn == duck  # the same description: sizes, strata, churn rates
    again, _ = spark_sample(spark.createDataFrame(frame).repartition(5), 500, 7)
    assert again["subscriber_id"].tolist() == rows["subscriber_id"].tolist()  # seeded, not by partition
    other, _ = spark_sample(lazy, 500, 8)
    assert other["subscriber_id"].tolist() != rows["subscriber_id"].tolist()
    everything, all_of_them = spark_sample(lazy, None, 7)
    assert len(everything) == all_of_them.rows_sampled == len(frame)
