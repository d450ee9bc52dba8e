import pytest
from typer.testing import CliRunner

from core.config import REPO_ROOT
from pipelines.cli import app


def test_help_lists_every_stage():
    out = CliRunner().invoke(app, ["--help"]).output
    for cmd in (
        "generate",
        "validate",
        "ingest",
        "features",
        "freshness",
        "train",
        "warn",
        "run",
        "truth",
        "serve",
        "demo",
    ):
        assert cmd in out


@pytest.mark.parametrize(
    "command", ["generate", "ingest", "features", "freshness", "warn", "truth", "serve", "demo"]
)
def test_operator_stages_refuse_a_customer_table_config_clearly(command):
    result = CliRunner().invoke(app, [command, "--config", str(REPO_ROOT / "configs" / "wa_churn.yaml")])
    assert result.exit_code == 2
    assert "customer table" in result.output and f"churn {command}" in result.output
