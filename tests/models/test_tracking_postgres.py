"""Production tracking store: MLflow on PostgreSQL (localhost) gets the same runs and champion."""

import uuid

import psycopg
import pytest

from models.registry import load_registered, use_tracking
from pipelines.training import train_records

PG = dict(host="127.0.0.1", port=5432, user="postgres")


@pytest.fixture
def pg_database():
    name = f"churnwarn_test_{uuid.uuid4().hex[:8]}"
    conn = psycopg.connect(**PG, dbname="postgres", autocommit=True)
    conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    finally:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.close()


def test_training_tracks_and_promotes_on_postgres(copy_trained, pg_database):
    s = copy_trained(mlflow={"tracking_uri": pg_database})
    decision = train_records(s)
    client = use_tracking(s)
    mv = client.get_model_version_by_alias(s.mlflow.registered_model, "champion")
    assert str(mv.version) == decision.version == "1"
    exp = client.get_experiment_by_name(s.mlflow.experiment)
    assert len(client.search_runs([exp.experiment_id])) == 4  # parent + three candidates
    assert load_registered(s).model.kind == decision.winner
