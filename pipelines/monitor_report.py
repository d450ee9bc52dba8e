"""Where ``churn monitor``'s findings go: ``monitoring/reports/<D>/`` (report.json, a static
report.html with its figures inline) and an MLflow run tagged with the model version."""

from __future__ import annotations

import base64
import html
import io
import os
import shutil
import tempfile
from pathlib import Path

import mlflow
import numpy as np

from core.config import Settings
from core.io import remove_dead_leftovers, replace_dir_atomic, write_json_atomic
from models.drift import ColumnDrift
from models.plots import plt
from models.registry import LoadedModel, use_tracking

SHOWN = 6  # features whose bins the report draws: the drifted, then the highest PSI


def figures(result) -> dict[str, plt.Figure]:
    """The report's figures by file name: PSI per feature, the score's and the top features' bins,
    and the matured performance over dates."""
    return {
        "psi_per_feature.png": _psi_plot(result),
        "distributions.png": _bins_plot([result.score, *_shown(result)]),
        "matured_performance.png": _trend_plot(result),
    }


def _shown(result) -> list[ColumnDrift]:
    return sorted(result.features, key=lambda d: (not d.drifted, -d.psi))[:SHOWN]


def _psi_plot(result):
    cols = sorted([*result.features, result.score], key=lambda d: d.psi)
    fig, ax = plt.subplots(figsize=(7.5, 0.2 * len(cols) + 1.5))
    ax.barh(
        [d.name for d in cols], [d.psi for d in cols], color=["#c33" if d.drifted else "#9bb" for d in cols]
    )
    ax.scatter(
        [d.threshold for d in cols], [d.name for d in cols], marker="|", s=120, c="k", label="its threshold"
    )
    ax.set(xlabel="PSI vs the training reference", title=f"Drift on {result.date} (red: alarm)")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _bins_plot(cols: list[ColumnDrift]):
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.2), squeeze=False)
    for ax, d in zip(axes[0], cols, strict=True):
        x = np.arange(len(d.reference_shares))
        ax.bar(x - 0.2, d.reference_shares, width=0.4, color="#9bb", label="training")
        ax.bar(x + 0.2, d.current_shares, width=0.4, color="#c33" if d.drifted else "#555", label="scored")
        ax.set_title(f"{d.name}\nPSI {d.psi:.2f}", fontsize=8)
        ax.set_xlabel("reference quantile bin", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("share")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _trend_plot(result):
    fig, ax = plt.subplots(figsize=(7, 3.6))
    dates = [m.date for m in result.matured]
    for key, color in (("roc_auc", "tab:blue"), ("pr_auc", "tab:orange")):
        ax.plot(dates, [getattr(m.figures, key) for m in result.matured], marker="o", c=color, label=key)
        ax.axhline(getattr(result.training, key), ls=":", c=color, label=f"{key} (training)")
    ax.set(ylim=(0, 1), title="Matured-label performance by feature date", xlabel="feature date")
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def report_html(result, pngs: dict[str, str]) -> str:
    """One static page: the verdict, the drift table, the matured performance, the figures inline."""
    e = html.escape
    rows = "".join(
        f"<tr{' class=alarm' if d.drifted else ''}><td>{e(d.name)}</td><td>{d.psi:.3f}</td><td>{d.threshold:.2f}</td>"
        f"<td>{d.test}</td>"
        f"<td>{d.p_value:.1e}</td><td>{d.missing_current:.1%}</td><td>{d.out_of_range:.1%}</td>"
        f"<td>{e('; '.join(d.reasons) or ('expected: ' + '; '.join(d.expected) if d.expected else ''))}</td></tr>"
        for d in (result.score, *sorted(result.features, key=lambda d: -d.psi))
    )
    perf = "".join(
        f"<tr><td>{m.date}</td><td>{m.rows:,}</td><td>{m.churners:,}</td><td>{m.figures.roc_auc:.3f}</td>"
        f"<td>{m.figures.pr_auc:.3f}</td><td>{m.figures.top_decile_lift:.2f}</td><td>{m.figures.ece:.3f}</td>"
        f"<td>{'-' if m.list_precision is None else f'{m.list_precision:.2f}'}</td></tr>"
        for m in result.matured
    )
    t = result.training
    imgs = "".join(
        f'<figure><img alt="{e(n)}" src="data:image/png;base64,{b}"></figure>' for n, b in pngs.items()
    )
    verdict = e(", ".join(result.drifted) or "none")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Model monitoring {result.date}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:75em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left}}tr.alarm{{background:#fdd}}figure{{margin:.5em 0}}</style>
</head><body>
<h1>Model monitoring as of {result.date}</h1>
<p>Model {e(result.model_name)} v{e(result.model_version)}: {result.scored_rows:,} scores against
{result.reference_rows:,} rows of its training reference. Drift alarms: <b id="drifted">{verdict}</b>.</p>
<p id="advice"><b>{e(result.advice.text())}</b></p>
<h2>Matured-label performance</h2>
<table><tr><th>feature date</th><th>rows</th><th>churners</th><th>ROC-AUC</th><th>PR-AUC</th><th>lift top 10%</th>
<th>ECE</th><th>list precision</th></tr>
<tr><td>training (held out)</td><td></td><td></td><td>{t.roc_auc:.3f}</td><td>{t.pr_auc:.3f}</td>
<td>{t.top_decile_lift:.2f}</td><td>{t.ece:.3f}</td><td></td></tr>{perf}</table>
<h2>Drift per column</h2>
<table><tr><th>column</th><th>PSI</th><th>threshold</th><th>test</th><th>p</th><th>missing</th><th>out of range</th><th>alarm</th></tr>
{rows}</table>
{imgs}
</body></html>
"""


def write_report(settings: Settings, result) -> Path:
    """``report.json`` and ``report.html`` into ``monitoring/reports/<D>/``, swapped in whole."""
    root = settings.workdir / "monitoring" / "reports"
    root.mkdir(parents=True, exist_ok=True)
    remove_dead_leftovers(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{result.date}.{os.getpid()}.", suffix=".partial", dir=root))
    try:
        figs = figures(result)
        pngs = {name: _png(fig) for name, fig in figs.items()}
        for fig in figs.values():
            plt.close(fig)
        write_json_atomic(result.as_json(), tmp / "report.json")
        (tmp / "report.html").write_text(report_html(result, pngs), encoding="utf-8")
        return replace_dir_atomic(tmp, root / str(result.date))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def log_run(settings: Settings, result, loaded: LoadedModel) -> str:
    """An MLflow run ``monitor <D>`` tagged with the model version: every PSI, the matured figures,
    the verdict and the figures; the version itself gets tags pointing at it."""
    client = use_tracking(settings)
    exp = client.get_experiment_by_name(settings.mlflow.experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(settings.mlflow.experiment)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"monitor {result.date}") as run:
        mlflow.set_tags(
            {
                "churnwarn.monitor_date": str(result.date),
                "registered_model": loaded.name,
                "model_version": loaded.version,
                "model_run_id": loaded.run_id,
                "drifted": ",".join(result.drifted),
                "advice": result.advice.text(),
            }
        )
        metrics = {f"psi_{d.name}": d.psi for d in (*result.features, result.score)}
        metrics["drifted_columns"] = len(result.drifted)
        if result.matured:
            last = result.matured[-1].figures
            metrics |= {f"matured_{k}": v for k, v in vars(last).items() if np.isfinite(v)}
        mlflow.log_metrics(metrics)
        for name, fig in figures(result).items():
            mlflow.log_figure(fig, f"monitoring/{name}")
            plt.close(fig)
    client.set_model_version_tag(loaded.name, loaded.version, "monitoring.last_date", str(result.date))
    client.set_model_version_tag(loaded.name, loaded.version, "monitoring.last_run_id", run.info.run_id)
    return run.info.run_id
