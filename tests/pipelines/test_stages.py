"""One stage declaration: the CLI, run_all and dvc.yaml follow from it."""

import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from core.config import REPO_ROOT, load_settings
from pipelines import dvc_yaml
from pipelines.cli import app
from pipelines.stages import RECORD_STAGES, TABLE_STAGES, stages_for


def test_committed_dvc_yaml_is_generated_from_the_declaration():
    assert (REPO_ROOT / "dvc.yaml").read_text() == dvc_yaml.render(), "run `churn dvc-yaml`"
    assert CliRunner().invoke(app, ["dvc-yaml", "--check"]).exit_code == 0


def test_every_declared_stage_is_a_command_and_a_dvc_stage():
    out = CliRunner().invoke(app, ["--help"]).output
    import yaml

    declared = yaml.safe_load(dvc_yaml.render())["stages"]
    assert list(declared) == [s.name for s in RECORD_STAGES]
    for stage in (*RECORD_STAGES, *TABLE_STAGES):
        assert stage.name in out
        assert callable(stage.function())
    assert "warn" in declared  # run_all and dvc repro run the same stages


def test_the_config_picks_the_data_path_once(make_config, tmp_path):
    records = load_settings(make_config(tmp_path / "r"))
    table = load_settings(REPO_ROOT / "configs" / "wa_churn.yaml")
    assert stages_for(records) == RECORD_STAGES and stages_for(table) == TABLE_STAGES


def test_train_depends_on_every_module_it_imports():
    deps = next(e for n, e in yaml_stages().items() if n == "train")["deps"]
    for folder in ("core", "features", "models"):
        assert folder in deps  # models/calibration.py, imported by models/candidates.py, is inside
    assert "pipelines/training.py" in deps and "pipelines/truth.py" in deps
    assert "models.calibration" in dvc_yaml.closure("pipelines.training")


def yaml_stages() -> dict:
    import yaml

    return yaml.safe_load(dvc_yaml.render())["stages"]


@pytest.mark.slow
def test_editing_a_module_train_imports_makes_dvc_status_report_train(tmp_path):
    """A copy of the repo's code and dvc.yaml with train's inputs stubbed and committed to a dvc.lock:
    dvc status is clean, then editing models/calibration.py (not named in any stage) marks train changed."""
    repo = tmp_path / "repo"
    for item in ("core", "features", "models", "serving", "pipelines", "configs"):
        shutil.copytree(
            REPO_ROOT / item, repo / item, ignore=shutil.ignore_patterns("__pycache__", "datasets")
        )
    shutil.copy(REPO_ROOT / "dvc.yaml", repo / "dvc.yaml")
    (repo / "data" / "features").mkdir(parents=True)
    (repo / "data" / "features" / "f.parquet").write_text("stub")
    (repo / "reports").mkdir()
    (repo / "reports" / "train.json").write_text("{}")

    def dvc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True)

    assert dvc("init", "--no-scm").returncode == 0
    res = dvc("commit", "--force", "train")
    assert res.returncode == 0, res.stderr
    assert "changed" not in dvc("status", "train").stdout
    with open(repo / "models" / "calibration.py", "a") as fh:
        fh.write("\n# an edit\n")
    status = dvc("status", "train").stdout
    assert "train:" in status and "modified:" in status and "models" in status, status
