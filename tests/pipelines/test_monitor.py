"""``churn monitor`` on a trained workdir: every score kept, no drift alarm on unshifted dates, the
matured metrics equal the ones computed from the churn events, and a competitor campaign
(``data.campaign``) raises the alarm on the features it touches on the first scored date after it."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import mlflow
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from core.config import load_settings
from features.catalogue import FEATURE_NAMES
from models.score_store import read_scores
from pipelines.cli import app
from pipelines.monitor import monitor
from pipelines.stages import RECORD_STAGES, run_stage
from pipelines.warn import nightly_list

D = dt.date
CAMPAIGN = D(2026, 5, 10)
AFTER = D(2026, 5, 15)  # the first scored date after the campaign starts
# what the campaign changes: competitor intents (hotline calls, usage drop, off-net lean, top-ups
# stopping) and stayers ringing the competitor's hotline; the score follows them
TOUCHED_SIGNALS = {"usage", "usage_drop", "zero_call_streak", "competitor_hotline", "social", "recharge"}


def _copy(trained, tmp_path_factory, name: str, **changes):
    from conftest import write_config  # noqa: PLC0415 - conftest sits on sys.path under pytest

    dst = tmp_path_factory.mktemp(name) / "work"
    shutil.copytree(trained.workdir, dst)
    return load_settings(write_config(dst, **changes))


def _churned_directly(settings, day: D) -> pd.Series:
    """The label from the churn events themselves: a churn event in the horizon from ``day`` on."""
    events = pd.read_parquet(settings.raw_dir / "churn_events.parquet")
    first = events.groupby("subscriber_id")["event_date"].min().dt.date
    end = day + dt.timedelta(days=settings.features.label_horizon_days)
    return (first >= day) & (first < end)


@pytest.fixture(scope="module")
def unshifted(trained, tmp_path_factory):
    settings = _copy(trained, tmp_path_factory, "monitor")
    for day in (D(2026, 5, 8), D(2026, 5, 15), D(2026, 6, 12)):
        nightly_list(settings, day)
    return settings


def test_every_active_subscriber_is_scored_and_kept(unshifted):
    scores = read_scores(unshifted, D(2026, 5, 15))
    listed = pd.read_parquet(unshifted.workdir / "warnings" / "2026-05-15" / "warnings.parquet")
    assert scores["subscriber_id"].is_unique and len(scores) > 10 * len(listed)
    assert set(scores.loc[scores["listed"], "subscriber_id"]) == set(listed["subscriber_id"])
    assert scores["model_version"].nunique() == 1 and set(FEATURE_NAMES) <= set(scores.columns)


def test_no_alarm_on_unshifted_dates_and_the_report_is_written(unshifted):
    """2026-05-08 follows the May holiday week: its 7-day features shift, as expected, not alarmed."""
    results = [
        monitor(unshifted, day, log_to_mlflow=day == D(2026, 6, 12))
        for day in (D(2026, 5, 8), D(2026, 5, 15), D(2026, 6, 12))
    ]
    assert [r.drifted for r in results] == [[], [], []]
    assert "zero_call_days_7d" in [d.name for d in results[0].features if d.expected]
    last = results[-1]
    report = json.loads((last.folder / "report.json").read_text())
    assert report["drifted"] == [] and len(report["features"]) == len(FEATURE_NAMES)
    assert "Model monitoring as of 2026-06-12" in (last.folder / "report.html").read_text()
    run = mlflow.MlflowClient(unshifted.tracking_uri).get_run(last.mlflow_run_id)
    assert run.data.tags["model_version"] == last.model_version
    assert "psi_churn_probability" in run.data.metrics
    assert {a.path for a in mlflow.MlflowClient().list_artifacts(last.mlflow_run_id, "monitoring")} >= {
        "monitoring/psi_per_feature.png",
        "monitoring/matured_performance.png",
    }


def test_matured_metrics_equal_the_ones_from_the_churn_events(unshifted):
    result = monitor(unshifted, D(2026, 5, 15), log_to_mlflow=False)
    # 2026-05-08 and 2026-05-15 have matured; 2026-06-12's horizon runs past the data
    assert [m.date for m in result.matured] == [D(2026, 5, 8), D(2026, 5, 15)]
    for m in result.matured:
        scores = read_scores(unshifted, m.date)
        y = (
            _churned_directly(unshifted, m.date)
            .reindex(scores["subscriber_id"], fill_value=False)
            .to_numpy(int)
        )
        p = scores["churn_probability"].to_numpy()
        assert m.churners == y.sum() > 0
        assert m.figures.roc_auc == pytest.approx(roc_auc_score(y, p))
        assert m.figures.pr_auc == pytest.approx(average_precision_score(y, p))
        assert m.list_precision == pytest.approx(y[scores["listed"].to_numpy()].mean())


def test_cli_exits_2_on_a_date_never_scored(unshifted):
    out = CliRunner().invoke(app, ["monitor", "--date", "2026-04-20", "--config", str(unshifted.config_path)])
    assert out.exit_code == 2 and "churn warn --date 2026-04-20" in out.output


@pytest.mark.slow
def test_a_competitor_campaign_raises_the_alarm_on_what_it_touched(trained, unshifted, tmp_path_factory):
    from features.catalogue import BY_NAME

    shifted = _copy(
        trained, tmp_path_factory, "campaign", data={"campaign": {"start": str(CAMPAIGN), "reach": 0.4}}
    )
    for name in ("generate", "validate", "ingest"):  # the champion stays the one trained before the shift
        run_stage(next(s for s in RECORD_STAGES if s.name == name), shifted)
    nightly_list(shifted, AFTER)
    out = CliRunner().invoke(
        app, ["monitor", "--date", str(AFTER), "--no-mlflow", "--config", str(shifted.config_path)]
    )
    assert out.exit_code == 1, out.output
    result = monitor(shifted, AFTER, log_to_mlflow=False)
    assert "competitor_hotline_calls_7d" in result.drifted
    assert all(d == "churn_probability" or BY_NAME[d].signal in TOUCHED_SIGNALS for d in result.drifted)
    assert "DRIFT competitor_hotline_calls_7d" in out.output
    before = monitor(unshifted, AFTER, log_to_mlflow=False).matured[0].figures
    after = result.matured[0].figures
    assert after.roc_auc < before.roc_auc - 0.05 and after.pr_auc < before.pr_auc
    assert result.advice.retrain


@pytest.mark.slow
def test_the_server_exposes_the_latest_report_as_gauges(unshifted):
    import httpx

    from serving.server import running_server

    result = monitor(unshifted, D(2026, 6, 12), log_to_mlflow=False)  # the newest report: the one served
    with running_server(unshifted, log_file=unshifted.workdir / "server-monitor.log") as url:
        text = httpx.get(f"{url}/metrics", timeout=60).text
    psi = next(d.psi for d in result.features if d.name == "tenure_days")
    line = next(x for x in text.splitlines() if x.startswith('churnwarn_drift_psi{feature="tenure_days"}'))
    assert float(line.split()[-1]) == pytest.approx(psi)
    assert 'churnwarn_drift_alarm{feature="competitor_hotline_calls_7d"} 0.0' in text
    assert f"churnwarn_matured_roc_auc {result.matured[-1].figures.roc_auc}" in text


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium (apt-get install chromium)")
def test_the_html_report_opens_in_headless_chromium(unshifted, tmp_path):
    import subprocess

    from PIL import Image

    folder = monitor(unshifted, D(2026, 5, 15), log_to_mlflow=False).folder
    shot, dom = tmp_path / "report.png", tmp_path / "report.html"
    base = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = (folder / "report.html").as_uri()
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1200,1600", url], check=True, timeout=120)
    dom.write_text(
        subprocess.run(
            [*base, "--dump-dom", url], check=True, timeout=120, capture_output=True, text=True
        ).stdout
    )
    assert Image.open(shot).size == (1200, 1600)
    assert len(set(Image.open(shot).convert("L").getdata())) > 20  # text and figures, not a blank page
    assert 'id="drifted">none<' in dom.read_text() and dom.read_text().count("<img") == 3
