"""Training on the session pipeline: tracked runs, champion decision, exact SHAP, readable reasons."""

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.catalogue import FEATURE_NAMES
from models.churn_model import ChurnModel
from models.reasons import load_templates, top_reasons
from models.registry import load_registered, use_tracking
from models.scoring import score_with_reasons
from models.train import build_candidates, split_out_of_time


@pytest.fixture(scope="module")
def frames(trained):
    frame = pd.read_parquet(trained.feature_table).merge(pd.read_parquet(trained.label_table))
    return split_out_of_time(frame, trained)


def test_out_of_time_split_keeps_training_labels_before_the_test_snapshot(trained, frames):
    train, test = frames
    test_t = test["event_timestamp"].max()
    assert test["event_timestamp"].nunique() == 1 and test_t == pd.Timestamp(trained.features.snapshots[-1], tz="UTC")
    horizon = pd.Timedelta(days=trained.features.label_horizon_days)
    assert (train["event_timestamp"] + horizon <= test_t).all()


def test_runs_are_tracked_and_the_champion_beats_the_rule_baseline(trained):
    client = use_tracking(trained)
    exp = client.get_experiment_by_name(trained.mlflow.experiment)
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.info.run_name == "train")
    children = {r.data.tags["candidate"]: r for r in runs if r.data.tags.get("parent_run_id") == parent.info.run_id}
    assert set(children) == {"rules", "logistic", "lightgbm"}
    for run in children.values():
        assert {"roc_auc", "pr_auc", "top_decile_lift"} <= set(run.data.metrics)
        assert run.data.params["data_version"] == parent.data.params["data_version"]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id

    mv = client.get_model_version_by_alias(trained.mlflow.registered_model, "champion")
    winner = children[mv.tags["candidate"]]
    assert winner.data.metrics["pr_auc"] > children["rules"].data.metrics["pr_auc"]
    assert parent.data.metrics["rules_pr_auc"] == children["rules"].data.metrics["pr_auc"]


def test_champion_loads_and_scores_like_the_pyfunc(trained, frames):
    _, test = frames
    loaded = load_registered(trained)
    assert loaded.alias == "champion"
    pyfunc = mlflow.pyfunc.load_model(f"models:/{trained.mlflow.registered_model}@champion")
    np.testing.assert_allclose(pyfunc.predict(test[FEATURE_NAMES].head(20))["churn_probability"],
                               loaded.model.predict_proba(test.head(20)))


@pytest.mark.parametrize("kind", ["rules", "logistic", "lightgbm"])
def test_shap_values_add_up_to_the_model_output(trained, frames, kind):
    train, test = frames
    est = build_candidates(trained)[kind].fit(train[FEATURE_NAMES], train["churned"])
    model = ChurnModel(kind, list(FEATURE_NAMES), est, train[FEATURE_NAMES].sample(100, random_state=0))
    x = test.head(40)
    e = model.explain(x)
    assert e.contributions.shape == (40, len(FEATURE_NAMES))
    np.testing.assert_allclose(e.base_values + e.contributions.sum(axis=1), model.predict_logit(x), atol=1e-6)


def test_every_feature_has_a_reason_in_both_languages():
    tpl = load_templates()
    for name in FEATURE_NAMES:
        spec = tpl["reasons"][name]
        assert {"code", "action", "en", "zh"} <= set(spec)
        assert spec["action"] in tpl["actions"]


def test_reasons_name_the_strongest_contributions_in_english_and_chinese(trained, frames):
    _, test = frames
    model = load_registered(trained).model
    x = test.iloc[[int(np.argmax(model.predict_proba(test)))]]
    e = model.explain(x)
    en = top_reasons(e, x, trained, lang="en")[0]
    zh = top_reasons(e, x, trained, lang="zh")[0]
    assert len(en) == 3 and [r.feature for r in en] == [r.feature for r in zh]
    top3 = [FEATURE_NAMES[j] for j in np.argsort(-e.contributions[0])[:3]]
    assert [r.feature for r in en] == top3
    assert en[0].contribution > 0 and en[0].sentence != zh[0].sentence
    assert any("\u4e00" <= ch <= "\u9fff" for ch in zh[0].sentence)  # Chinese characters
    scored = score_with_reasons(model, x, trained)[0]
    assert 0 <= scored["churn_probability"] <= 1 and scored["action"]["code"] != "none"
