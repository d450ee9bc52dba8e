"""Versioned deploys against the real registry, real Bento builds and the real server over HTTP."""

import json
import shutil
from pathlib import Path

import httpx
import mlflow
import pytest
import yaml
from conftest import write_config  # conftest sits on sys.path under pytest
from typer.testing import CliRunner

from core.config import load_settings
from models.registry import use_tracking
from pipelines.cli import app
from serving.deploy import DeployError, bento_dir, current_bento, deploy, read_record, rollback
from serving.server import running_server


def register_again(settings) -> str:
    """A new registry version of the champion's artefact: a second version without a second training."""
    champion = use_tracking(settings).get_model_version_by_alias(settings.mlflow.registered_model, "champion")
    return str(mlflow.register_model(champion.source, settings.mlflow.registered_model).version)


@pytest.fixture(scope="module")
def two_deploys(trained, tmp_path_factory):
    """A private copy of the trained workdir with versions 1 (champion) and 2, both deployed, 2 current."""
    dst = tmp_path_factory.mktemp("deploy") / "work"
    shutil.copytree(trained.workdir, dst, ignore=shutil.ignore_patterns("bentoml", "deployments.json"))
    settings = load_settings(write_config(dst))
    assert register_again(settings) == "2"
    first = deploy(settings)  # @champion: version 1
    second = deploy(settings, version="2")
    return settings, first, second


def bento_yaml(settings, tag: str) -> dict:
    return yaml.safe_load((bento_dir(settings, tag) / "bento.yaml").read_text())


def model_info(settings) -> dict:
    with running_server(
        settings, bento=current_bento(settings), log_file=settings.workdir / "server-deploy.log"
    ) as url:
        info = httpx.post(f"{url}/model", timeout=60).json()
        ids = ["S0000001"]
        warned = httpx.post(f"{url}/warn", json={"subscriber_ids": ids}, timeout=60).json()
    assert warned[0]["model"] == info
    return info


def test_deploy_records_both_versions_and_makes_the_last_current(two_deploys):
    settings, first, second = two_deploys
    assert (first["model_version"], first["deployed_alias"]) == ("1", "champion")
    assert (second["model_version"], second["deployed_alias"]) == ("2", None)
    record = read_record(settings)
    assert [d["bento"] for d in record["deployments"]] == [first["bento"], second["bento"]]
    assert record["stack"] == [1, 2] and current_bento(settings) == second["bento"]


def test_bento_labels_record_model_version_run_and_features(two_deploys):
    settings, first, second = two_deploys
    run_id = use_tracking(settings).get_model_version(settings.mlflow.registered_model, "2").run_id
    info = bento_yaml(settings, second["bento"])
    labels = info["labels"]
    assert labels["model_version"] == "2" and labels["run_id"] == run_id
    assert labels["registered_model"] == settings.mlflow.registered_model
    features = labels["features"].split(",")
    assert len(features) == int(labels["n_features"]) == second["n_features"] > 10
    assert "competitor_hotline_calls_30d" in features
    # the Bento names its model under the alias the service loads: no code differs between versions
    assert [(m["tag"], m["alias"]) for m in info["models"]] == [(second["model"], "churn-model")]
    requirements = (
        (bento_dir(settings, second["bento"]) / "env" / "python" / "requirements.txt").read_text().split()
    )
    assert all("==" in r for r in requirements) and any(r.startswith("lightgbm==") for r in requirements)


def test_unknown_version_or_alias_is_refused_and_nothing_recorded(two_deploys):
    settings = two_deploys[0]
    before = settings.deployments_file.read_bytes()
    bentos = sorted((settings.bentoml_home / "bentos" / "churnwarn").iterdir())
    with pytest.raises(DeployError, match=r"no version 99 .*versions: \[1, 2\]"):
        deploy(settings, version="99")
    with pytest.raises(DeployError, match="no alias @nope"):
        deploy(settings, alias="nope")
    assert settings.deployments_file.read_bytes() == before
    assert sorted((settings.bentoml_home / "bentos" / "churnwarn").iterdir()) == bentos


def test_failed_build_leaves_the_record_and_the_current_bento(two_deploys, tmp_path):
    settings = two_deploys[0]
    version = register_again(settings)
    raw = yaml.safe_load(settings.config_path.read_text())
    raw["deploy"] = {**raw.get("deploy", {}), "include": ["serving/*.py", "../outside/*.py"]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))  # same workdir, a build that cannot succeed
    bad = load_settings(tmp_path / "bad.yaml")
    assert bad.workdir == settings.workdir
    before, current = settings.deployments_file.read_bytes(), current_bento(settings)
    with pytest.raises(
        DeployError, match=f"version {version} failed, nothing was deployed: .*outside of the build context"
    ):
        deploy(bad, version=version)
    assert settings.deployments_file.read_bytes() == before and current_bento(settings) == current
    stored = [p.name for p in (settings.bentoml_home / "models" / "churnwarn").iterdir()]
    assert not any(name.startswith(f"v{version}-") for name in stored)  # the half-done import was removed


def test_cli_lists_deployments(two_deploys):
    settings, first, second = two_deploys
    result = CliRunner().invoke(app, ["deployments", "--config", str(settings.config_path)])
    assert result.exit_code == 0, result.output
    lines = {
        next(t for t in line.split() if t.startswith("churnwarn:")): line
        for line in result.output.splitlines()
        if "churnwarn:" in line
    }
    assert lines[second["bento"]].startswith("*") and not lines[first["bento"]].startswith("*")


def test_rollback_with_nothing_deployed_is_a_clear_error(trained_copy):
    result = CliRunner().invoke(app, ["rollback", "--config", str(trained_copy.config_path)])
    assert result.exit_code == 2 and "nothing is deployed" in result.output
    assert not trained_copy.deployments_file.exists()


def test_serve_switches_version_and_rolls_back_over_http(two_deploys):
    """Last: it rolls the shared workdir back."""
    settings, first, second = two_deploys
    info = model_info(settings)
    assert (info["version"], info["bento"], info["alias"]) == ("2", second["bento"], None)

    assert rollback(settings)["bento"] == first["bento"]
    info = model_info(settings)
    assert (info["version"], info["bento"], info["alias"]) == ("1", first["bento"], "champion")
    assert info["run_id"] == first["run_id"]

    before = settings.deployments_file.read_bytes()
    with pytest.raises(DeployError, match="is the first; there is no previous Bento"):
        rollback(settings)
    assert settings.deployments_file.read_bytes() == before
    assert read_record(settings)["deployments"][1]["bento"] == second["bento"]  # history is kept


def _bentos(settings) -> list[str]:
    """What the workdir's Bento store holds (a server started on the workdir may have created it empty)."""
    store = settings.bentoml_home / "bentos"
    return sorted(str(p.relative_to(store)) for p in store.rglob("*")) if store.exists() else []


def test_a_corrupt_record_is_reported_and_left_alone(trained_copy):
    built_before = _bentos(trained_copy)
    trained_copy.deployments_file.write_text('{"deployments": ')
    for command in (["deployments"], ["rollback"], ["deploy", "--version", "1"]):
        result = CliRunner().invoke(app, [*command, "--config", str(trained_copy.config_path)])
        assert result.exit_code == 2 and "is not a deployment record" in result.output, (
            command,
            result.output,
        )
    assert trained_copy.deployments_file.read_text() == '{"deployments": '
    assert _bentos(trained_copy) == built_before  # nothing was built


def test_rollback_to_a_bento_gone_from_the_store_is_refused(trained_copy):
    entry = {
        "registered_model": "churnwarn",
        "deployed_alias": None,
        "model_kind": "lightgbm",
        "run_id": "r",
        "deployed_at": "2026-07-01T00:00:00+00:00",
        "model": "churnwarn:v1-r",
        "n_features": 1,
    }
    record = {
        "deployments": [
            entry | {"id": 1, "bento": "churnwarn:gone", "model_version": "1"},
            entry | {"id": 2, "bento": "churnwarn:current", "model_version": "2"},
        ],
        "stack": [1, 2],
        "events": [],
    }
    trained_copy.deployments_file.write_text(json.dumps(record))
    with pytest.raises(DeployError, match="churnwarn:gone is no longer in"):
        rollback(trained_copy)
    assert json.loads(trained_copy.deployments_file.read_text()) == record


# -- a killed deploy leaves nothing that looks deployed ------------------------------------------


def _store(settings, kind: str) -> set[str]:
    root = settings.bentoml_home / kind
    return {f"{p.parent.name}:{p.name}" for p in root.glob("*/*") if p.is_dir()} if root.exists() else set()


def _latest(settings) -> str | None:
    path = settings.bentoml_home / "bentos" / "churnwarn" / "latest"
    return f"churnwarn:{path.read_text().strip()}" if path.exists() else None


@pytest.fixture(scope="module")
def killed_deploy(trained, tmp_path_factory):
    """A workdir with one deployment, then a `churn deploy` killed (-9) while its Bento build runs; the
    build, left without its parent, runs on and stores a Bento no deployment records."""
    import os
    import subprocess
    import sys
    import time

    import psutil

    from core.config import REPO_ROOT

    dst = tmp_path_factory.mktemp("killed") / "work"
    shutil.copytree(trained.workdir, dst, ignore=shutil.ignore_patterns("bentoml", "deployments.json"))
    settings = load_settings(write_config(dst))
    first = deploy(settings)
    churn = [str(Path(sys.executable).with_name("churn")), "deploy", "--config", str(settings.config_path)]
    proc = subprocess.Popen(churn, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    builds: list = []
    while not builds or "pending" not in read_record(settings):
        assert proc.poll() is None and time.monotonic() < deadline, "the deploy never started its build"
        builds = psutil.Process(proc.pid).children(recursive=True)
        time.sleep(0.2)
    time.sleep(3)  # into the build
    os.kill(proc.pid, 9)
    proc.wait()
    psutil.wait_procs(builds, timeout=300)
    return settings, first


def test_a_killed_deploy_leaves_latest_on_a_recorded_bento_and_the_next_cleans_up(killed_deploy):
    settings, first = killed_deploy
    record = read_record(settings)
    assert [d["bento"] for d in record["deployments"]] == [first["bento"]]
    assert current_bento(settings) == first["bento"]
    pending = f"churnwarn:{record['pending']['bento_version']}"
    assert _store(settings, "bentos") == {first["bento"], pending}  # the build ran on: an orphan Bento
    assert _latest(settings) in {first["bento"], pending}  # never a Bento the record does not name

    second = deploy(settings)
    record = read_record(settings)
    assert "pending" not in record and current_bento(settings) == second["bento"]
    assert _store(settings, "bentos") == {first["bento"], second["bento"]}
    assert _store(settings, "models") == {first["model"], second["model"]}
    assert _latest(settings) == second["bento"]


def test_deploy_waits_for_no_one_and_sweeps_nothing_from_under_a_running_build(trained_copy):
    from core.io import workdir_lock

    bentos = _store(trained_copy, "bentos")
    for lock, message in (("deploy", "cannot deploy: .*already running"), ("deploy-build", "still running")):
        with workdir_lock(trained_copy.workdir, lock):
            with pytest.raises(DeployError, match=message):
                deploy(trained_copy)
        assert not trained_copy.deployments_file.exists() and _store(trained_copy, "bentos") == bentos
    with workdir_lock(trained_copy.workdir, "deploy"):
        with pytest.raises(DeployError, match="cannot roll back: .*already running"):
            rollback(trained_copy)
