"""The customer-table path trained on the real wa_churn table: tracked runs, registry, exact SHAP per
original column, generic reasons for categoricals, and the held-out ROC-AUC.

``churn run --config <wa_churn config>`` runs once per session into a temporary workdir (LightGBM
kept small); the other tests read what it left behind.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from core.config import REPO_ROOT, Settings, load_settings

WA_CONFIG = REPO_ROOT / "configs" / "wa_churn.yaml"
SMALL_LGBM = {
    "lightgbm": {"n_estimators": 100, "learning_rate": 0.05, "num_leaves": 7, "min_child_samples": 50}
}


def wa_config(workdir, **sections) -> str:
    raw = yaml.safe_load(WA_CONFIG.read_text())
    raw["workdir"] = str(workdir)
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


@pytest.fixture(scope="session")
def wa_run(tmp_path_factory) -> tuple[Settings, str]:
    """``churn run`` on wa_churn once, as a user runs it (its own process): the settings and what it printed."""
    path = wa_config(tmp_path_factory.mktemp("wa_churn"), training=SMALL_LGBM)
    res = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--config", path], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return load_settings(path), res.stdout + res.stderr


@pytest.fixture(scope="session")
def wa_trained(wa_run) -> Settings:
    """Settings of a workdir where ``churn run`` trained wa_churn once."""
    return wa_run[0]


def test_the_run_prints_no_third_party_warning(wa_run):
    _, printed = wa_run
    assert "champion: lightgbm" in printed or "champion: logistic" in printed
    noise = [line for line in printed.splitlines() if re.search(r"warning|\bhint\b", line, re.IGNORECASE)]
    assert noise == []


@pytest.fixture(scope="module")
def wa_split(wa_trained):
    from features.customer_table import split
    from pipelines.customer_table import read_table

    return split(read_table(wa_trained.source), wa_trained.source)


def _runs(settings: Settings):
    from models.registry import use_tracking

    client = use_tracking(settings)
    exp = client.get_experiment_by_name(settings.mlflow.experiment)
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.info.run_name == "train")
    children = {
        r.data.tags["candidate"]: r for r in runs if r.data.tags.get("parent_run_id") == parent.info.run_id
    }
    return client, parent, children


def test_runs_are_grouped_under_a_parent_with_metrics_and_data_version(wa_trained):
    from features.customer_table import fingerprint

    client, parent, children = _runs(wa_trained)
    assert set(children) == {"logistic", "lightgbm"}  # the CDR rules baseline does not apply to this table
    version = fingerprint(wa_trained.source)
    assert parent.data.tags["data_version"] == version and parent.data.params["data_version"] == version
    assert parent.data.params["split"] == "stratified random" and parent.data.tags["source"] == "wa_churn"
    for run in children.values():
        assert {"roc_auc", "pr_auc", "top_decile_lift"} <= set(run.data.metrics)
        assert run.data.params["data_version"] == version
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert "candidates_roc_pr.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_winner_is_registered_under_its_own_name_as_champion(wa_trained):
    client, parent, children = _runs(wa_trained)
    assert wa_trained.mlflow.registered_model == "churnwarn_wa_churn"
    mv = client.get_model_version_by_alias("churnwarn_wa_churn", "champion")
    winner = mv.tags["candidate"]
    assert mv.run_id == children[winner].info.run_id and parent.data.tags["winner"] == winner
    metric = wa_trained.mlflow.selection_metric
    assert children[winner].data.metrics[metric] == max(r.data.metrics[metric] for r in children.values())
    assert [m.name for m in client.search_registered_models()] == ["churnwarn_wa_churn"]


def test_held_out_roc_auc_on_wa_churn(wa_trained):
    """Stratified random 80/20 split, seed 7 (the table has no time dimension)."""
    report = json.loads((wa_trained.reports_dir / "train.json").read_text())
    assert report["n_test"] == 1409 and report["split"] == "stratified random, test_fraction 0.2, seed 7"
    _, _, children = _runs(wa_trained)
    for kind, run in children.items():
        m = run.data.metrics
        print(
            f"wa_churn {kind}: held-out ROC-AUC {m['roc_auc']:.3f}, PR-AUC {m['pr_auc']:.3f}, "
            f"top-decile lift {m['top_decile_lift']:.2f}"
        )
        assert m["roc_auc"] >= 0.80
    assert report[f"{report['winner']}_roc_auc"] >= 0.80


def test_champion_loads_and_scores_raw_rows_like_the_pyfunc(wa_trained, wa_split):
    from models.registry import load_registered

    _, test = wa_split
    loaded = load_registered(wa_trained)
    assert loaded.name == "churnwarn_wa_churn" and loaded.alias == "champion"
    rows = test[wa_trained.source.features].head(25)
    assert rows["contract"].dtype == object  # categoricals go in as text
    pyfunc = mlflow.pyfunc.load_model("models:/churnwarn_wa_churn@champion")
    np.testing.assert_allclose(pyfunc.predict(rows)["churn_probability"], loaded.model.predict_proba(rows))


@pytest.fixture(scope="module")
def fitted(wa_trained, wa_split):
    """Both candidates fitted on the training split, as ChurnModels."""
    from features.customer_table import categories, labels
    from models.candidates import build_table_candidates
    from models.churn_model import ChurnModel

    cfg = wa_trained.source
    train, _ = wa_split
    cats = categories(pd.concat(wa_split), cfg)
    out = {}
    for kind, est in build_table_candidates(wa_trained, cfg.numeric_columns, cfg.categorical_columns).items():
        bg = train[cfg.features].sample(100, random_state=0)
        out[kind] = ChurnModel(kind, list(cfg.features), est, bg, categories=cats).fit(
            train[cfg.features], labels(train, cfg)
        )
    return out


@pytest.mark.parametrize("kind", ["logistic", "lightgbm"])
def test_shap_per_original_column_adds_up_to_the_logit(wa_trained, wa_split, fitted, kind):
    _, test = wa_split
    model = fitted[kind]
    x = test.head(60)
    e = model.explain(x)
    assert e.features == wa_trained.source.features  # one contribution per ORIGINAL column
    assert e.contributions.shape == (60, len(wa_trained.source.features))
    np.testing.assert_allclose(e.base_values + e.contributions.sum(axis=1), model.predict_logit(x), atol=1e-6)


def test_one_hot_contributions_are_summed_back_to_their_column(wa_trained, wa_split, fitted):
    """Logistic: a categorical's contribution is the sum over its indicators of coef * (x - background mean)."""
    _, test = wa_split
    model = fitted["logistic"]
    x = test.head(30)
    prep, lr = model.estimator[:-1], model.estimator[-1]
    enc = prep.transform(model._x(x))
    ref = prep.transform(model._x(model.background)).mean(axis=0)
    names = list(prep.get_feature_names_out())
    j = wa_trained.source.features.index("contract")
    cols = [i for i, n in enumerate(names) if n.startswith("cat__contract_")]
    assert len(cols) == 3
    manual = ((enc[:, cols] - ref[cols]) * lr.coef_[0, cols]).sum(axis=1)
    np.testing.assert_allclose(model.explain(x).contributions[:, j], manual, atol=1e-9)


def test_categorical_reasons_use_the_generic_sentence_in_english_and_chinese(wa_trained, wa_split):
    from models.reasons import top_reasons
    from models.registry import load_registered
    from models.scoring import score_with_reasons
    from serving.schemas import ReasonOut

    _, test = wa_split
    model = load_registered(wa_trained).model
    x = test[test["contract"] == "Month-to-month"].head(200)
    x = x.iloc[[int(np.argmax(model.predict_proba(x)))]]
    e = model.explain(x)
    full = model.complete(x)  # with the derived columns, whose values the reasons report too
    en = top_reasons(e, full, wa_trained, k=len(e.features), lang="en")[0]
    zh = top_reasons(e, full, wa_trained, k=len(e.features), lang="zh")[0]
    contract_en = next(r for r in en if r.feature == "contract")
    contract_zh = next(r for r in zh if r.feature == "contract")
    assert contract_en.value == "Month-to-month" and contract_en.code == "CONTRACT"
    assert contract_en.contribution > 0  # month-to-month is the classic churn signal in this table
    assert contract_en.sentence == "contract = Month-to-month raises the risk"
    assert contract_zh.sentence == "contract = Month-to-month（提高风险）"
    tenure = next(r for r in en if r.feature == "tenure")
    assert isinstance(tenure.value, float) and tenure.sentence.startswith(f"tenure = {tenure.value:.0f} ")
    lowers = [r for r in en if r.contribution <= 0]
    assert all(r.sentence.endswith("lowers the risk") and r.action == "none" for r in lowers)

    scored = score_with_reasons(model, x, wa_trained)[0]
    assert 0 <= scored["churn_probability"] <= 1 and len(scored["reasons"]) == wa_trained.serving.top_reasons
    assert scored["action"]["code"] == "none"  # generic reasons suggest no specific action
    for r in scored["reasons"]:
        assert ReasonOut(**r).value == r["value"]  # the API schema takes text values for categoricals
    json.dumps(scored)


def test_unseen_category_scores_as_missing(wa_trained, wa_split):
    from models.registry import load_registered

    _, test = wa_split
    model = load_registered(wa_trained).model
    x = test.head(3).copy()
    x["payment_method"] = "Cryptocurrency"
    p = model.predict_proba(x)
    assert np.isfinite(p).all()
    e = model.explain(x)
    np.testing.assert_allclose(e.base_values + e.contributions.sum(axis=1), model.predict_logit(x), atol=1e-6)


def test_churn_train_command_prints_the_champion_line(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    tiny = {"lightgbm": {"n_estimators": 30, "learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 50}}
    res = CliRunner().invoke(app, ["train", "--config", wa_config(tmp_path, training=tiny)])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("champion:"))
    assert " v1 roc_auc=" in line


# -- honest uncertainty: intervals, repeated CV, decision noise ---------------------------------------


def test_the_run_prints_the_interval_and_the_cv_figure(wa_run):
    settings, printed = wa_run
    u = settings.source.uncertainty
    champion = next(ln for ln in printed.splitlines() if ln.startswith("champion:"))
    assert re.search(
        rf"roc_auc=0\.\d{{3}} \(95% CI \[0\.\d{{3}}, 0\.\d{{3}}\]; "
        rf"{u.cv_folds}-fold x {u.cv_repeats} CV 0\.\d{{3}} ± 0\.\d{{3}}",
        champion,
    )
    log_line = next(ln for ln in printed.splitlines() if "held out ROC-AUC" in ln)
    assert (
        "bootstrap CI" in log_line and "cross-validation of the 5634 training customers ROC-AUC" in log_line
    )
    margins = [
        ln
        for ln in printed.splitlines()
        if "decision margin lightgbm vs logistic" in ln or "decision margin logistic vs lightgbm" in ln
    ]
    assert len(margins) == 1 and "CI of the paired difference" in margins[0]
    inside = "inside the noise" in margins[0].rsplit(":", 1)[1]
    assert ("the champion decision is inside the noise" in printed) == inside


def test_mlflow_and_train_json_hold_the_interval_and_the_cv_figure(wa_trained):
    _, parent, children = _runs(wa_trained)
    report = json.loads((wa_trained.reports_dir / "train.json").read_text())
    u = report["uncertainty"]
    assert u["ci_method"] == "bootstrap percentile" and u["ci_level"] == 0.95 and u["cv_rows"] == 5634
    for kind, run in children.items():
        m, p = run.data.metrics, run.data.params
        assert m["roc_auc_ci_low"] < m["roc_auc"] < m["roc_auc_ci_high"]
        assert m["roc_auc_ci_high"] - m["roc_auc_ci_low"] < 0.1  # ~±0.02 on 1409 customers
        assert 0.75 < m["cv_roc_auc_mean"] < 0.95 and 0 < m["cv_roc_auc_sd"] < 0.05
        assert {"cv_pr_auc_mean", "cv_top_decile_lift_sd", "pr_auc_ci_low"} <= set(m)
        assert p["cv"] == "repeated stratified 5-fold x 2" and p["bootstrap_resamples"] == "1000"
        figures = u["candidates"][kind]["roc_auc"]
        assert figures["held_out"] == pytest.approx(m["roc_auc"])
        assert figures["ci"] == pytest.approx([m["roc_auc_ci_low"], m["roc_auc_ci_high"]])
        assert figures["cv_mean"] == pytest.approx(m["cv_roc_auc_mean"])
    (margin,) = u["margins"]  # the first run: the winner against the other candidate only
    assert margin["winner"] == report["winner"] and margin["metric"] == "roc_auc"
    assert margin["inside_noise"] == (margin["ci"][0] <= 0 <= margin["ci"][1])
    assert u["decision_inside_noise"] == margin["inside_noise"]
    other = margin["other"]
    assert parent.data.metrics[f"margin_vs_{other}"] == pytest.approx(margin["difference"])
    assert parent.data.params["decision_inside_noise"] == str(margin["inside_noise"])
    assert parent.data.tags["decision_inside_noise"] == str(margin["inside_noise"]).lower()


# -- derived columns: SQL over the mapped columns, computed by the model wherever it scores --------------


def test_derived_columns_are_model_inputs_computed_from_the_mapped_ones(wa_trained):
    from models.registry import load_registered

    cfg = wa_trained.source
    model = load_registered(wa_trained).model
    assert list(cfg.derived_columns) == [d.name for d in model.derived]
    assert {"charges_per_tenure_month", "total_vs_expected"} <= set(cfg.derived_columns)
    assert model.features == [*cfg.numeric_columns, *cfg.derived_columns, *cfg.categorical_columns]
    assert model.inputs == [*cfg.numeric_columns, *cfg.categorical_columns]
    _, parent, _ = _runs(wa_trained)
    assert parent.data.params["n_derived"] == str(len(cfg.derived_columns))
    assert (
        "charges_per_tenure_month = total_charges / NULLIF(tenure, 0)"
        in parent.data.params["derived_columns"]
    )


def test_a_derived_column_is_a_reason_with_its_value(wa_trained, wa_split):
    from models.reasons import top_reasons
    from models.registry import load_registered

    _, test = wa_split
    model = load_registered(wa_trained).model
    x = test[wa_trained.source.features].head(40)  # the mapped columns only, as a caller sends them
    e = model.explain(x)
    reasons = top_reasons(e, model.complete(x), wa_trained, k=len(e.features))
    expected = (x["total_charges"] / x["tenure"].where(x["tenure"] != 0)).to_numpy()
    for i, row in enumerate(reasons):
        r = next(r for r in row if r.feature == "charges_per_tenure_month")
        assert r.code == "CHARGES_PER_TENURE_MONTH" and r.value == pytest.approx(expected[i])
        verb = "raises" if r.contribution > 0 else "lowers"
        assert r.sentence == f"charges_per_tenure_month = {r.value:.2f} {verb} the risk"
    j = e.features.index("charges_per_tenure_month")
    assert np.abs(e.contributions[:, j]).max() > 0  # the model uses it


def test_feature_rows_get_the_derived_columns_computed(wa_trained, wa_split):
    """What the service does with feature rows (``models.scoring.score_with_reasons``): the caller sends
    the mapped columns; a derived value it sends too is recomputed, never trusted."""
    from models.registry import load_registered
    from models.scoring import score_with_reasons

    _, test = wa_split
    model = load_registered(wa_trained).model
    rows = test[wa_trained.source.features].head(10)
    sent = score_with_reasons(model, rows, wa_trained)
    forged = score_with_reasons(model, rows.assign(charges_per_tenure_month=1e9), wa_trained)
    assert sent == forged
    np.testing.assert_allclose([s["churn_probability"] for s in sent], model.predict_proba(rows))
    json.dumps(sent)
