from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.truth import truth_report


def test_ceiling_is_above_the_rules_and_the_champion(trained):
    r = truth_report(trained)
    assert 0.5 < r["rules_roc_auc"] < r["ceiling_roc_auc"] <= 1
    assert r["champion_roc_auc"] < r["ceiling_roc_auc"]
    assert r["churners"] > 0


def test_truth_command_prints_the_table(trained):
    result = CliRunner().invoke(app, ["truth", "--config", str(trained.config_path)])
    assert result.exit_code == 0, result.output
    for row in ("ground truth", "champion", "rule checklist", "ROC-AUC"):
        assert row in result.output
