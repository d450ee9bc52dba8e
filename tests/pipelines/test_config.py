import pytest
from pydantic import ValidationError

from core.config import REPO_ROOT, load_settings


def test_default_config_loads_with_paths_under_the_repo():
    s = load_settings()
    assert s.workdir == REPO_ROOT
    assert s.tracking_uri.startswith("sqlite:///")
    assert s.features.snapshots == sorted(s.features.snapshots)
    assert s.bentoml_home == REPO_ROOT / "bentoml" and s.deployments_file == REPO_ROOT / "deployments.json"


def test_a_relative_workdir_follows_churnwarn_root(tmp_path, monkeypatch):
    """A server running a Bento's copy of the code is pointed back at the checkout it serves."""
    monkeypatch.setenv("CHURNWARN_ROOT", str(tmp_path))
    assert load_settings().workdir == tmp_path.resolve()


def test_unknown_key_is_rejected(tmp_path, make_config):
    path = make_config(tmp_path, data={"n_subscribrs": 5})
    with pytest.raises(ValidationError, match="n_subscribrs"):
        load_settings(path)


def test_snapshots_must_increase(tmp_path, make_config):
    path = make_config(tmp_path, features={"snapshots": ["2026-04-01", "2026-03-01"]})
    with pytest.raises(ValidationError, match="strictly increasing"):
        load_settings(path)


def test_the_production_example_names_spark_redis_and_postgres():
    s = load_settings(REPO_ROOT / "configs" / "production.example.yaml")
    assert s.features.engine == "spark" and s.spark.master.startswith("spark://")
    assert s.feast.online_store.type == "redis" and s.tracking_uri.startswith("postgresql")
    assert s.serving.as_of is None


def test_the_embedded_default_engine_is_duckdb():
    assert load_settings().features.engine == "duckdb"
