import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.truth import truth_report


def test_ceilings_latent_above_reachable_above_the_champion_and_the_rules(trained):
    r = truth_report(trained)
    assert (
        0.5
        < r["rules_roc_auc"]
        < r["champion_roc_auc"]
        < r["ceiling_reachable_roc_auc"]
        < r["ceiling_roc_auc"]
        <= 1
    )
    assert r["rules_pr_auc"] < r["champion_pr_auc"] < r["ceiling_reachable_pr_auc"] < r["ceiling_pr_auc"]
    assert r["churners"] > 0


def test_training_logs_both_ceilings_and_the_fidelity_as_truth_reports_them(trained):
    from models.registry import use_tracking

    r = truth_report(trained)
    client = use_tracking(trained)
    exp = client.get_experiment_by_name(trained.mlflow.experiment)
    parent = next(x for x in client.search_runs([exp.experiment_id]) if x.info.run_name == "train")
    m = parent.data.metrics
    for key in ("ceiling_roc_auc", "ceiling_pr_auc", "ceiling_reachable_roc_auc", "ceiling_reachable_pr_auc"):
        assert m[key] == pytest.approx(r[key])
    assert m["reachable_gap_roc_auc"] == pytest.approx(r["ceiling_reachable_roc_auc"] - r["champion_roc_auc"])
    assert m["fidelity_reason_fidelity"] == pytest.approx(r["fidelity"]["reason_fidelity"])


def test_truth_command_prints_the_table(trained):
    result = CliRunner().invoke(app, ["truth", "--config", str(trained.config_path)])
    assert result.exit_code == 0, result.output
    for row in (
        "ground truth, latent",
        "ground truth, reachable",
        "champion",
        "rule checklist",
        "ROC-AUC",
        "below the reachable ceiling",
        "benchmarks/records_ceiling.py",
    ):
        assert row in result.output
