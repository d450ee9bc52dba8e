"""Where ``churn evaluate``'s findings go: ``evaluations/<D>/`` (evaluation.json, a static report.html
with its figures inline, beside the list's own summary) and an MLflow run ``evaluate <D>``."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from core.config import Settings
from core.io import remove_dead_leftovers, replace_dir_atomic, write_json_atomic
from models.plots import plt
from models.registry import use_tracking


def figures(result) -> dict[str, plt.Figure]:
    """The report's figures by file name: uplift with its interval per group (truth beside it), and the
    money per action."""
    return {"uplift_by_group.png": _uplift_plot(result), "money_by_action.png": _money_plot(result)}


def _uplift_plot(result):
    dims = list(dict.fromkeys(g.dimension for g in result.groups))
    sizes = [sum(g.dimension == d for g in result.groups) + 1 for d in dims]
    fig, axes = plt.subplots(
        len(dims),
        1,
        figsize=(8, 0.38 * sum(sizes) + 1.8),
        squeeze=False,
        gridspec_kw={"height_ratios": sizes},
    )
    for ax, dim in zip(axes[:, 0], dims, strict=True):
        est = [result.overall, *[g for g in result.groups if g.dimension == dim]]
        y = np.arange(len(est))[::-1]
        for yi, e in zip(y, est, strict=True):
            color = "#c33" if e.uplift.conclusive else "#aaa"
            ax.errorbar(
                e.uplift.uplift,
                yi,
                xerr=[[e.uplift.uplift - e.uplift.low], [e.uplift.high - e.uplift.uplift]],
                fmt="o",
                color=color,
                capsize=3,
            )
            if e.true_uplift is not None:
                ax.plot(e.true_uplift, yi, marker="x", color="k", ms=8)
        ax.set_yticks(
            y, [f"{e.value} (n={e.uplift.n_treated}/{e.uplift.n_control})" for e in est], fontsize=8
        )
        ax.axvline(0, color="#666", lw=0.8)
        ax.set_title(f"Retention uplift by {dim}", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    axes[-1, 0].set_xlabel("uplift: retention treated - control, with its interval")
    fig.suptitle("red: conclusive, grey: too small to conclude; x: the simulator's true uplift", fontsize=8)
    fig.tight_layout()
    return fig


def _money_plot(result):
    est = [g for g in result.groups if g.dimension == "action"]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    x = np.arange(len(est))
    m = [e.money for e in est]
    ax.bar(
        x - 0.27, [v.value_retained for v in m], width=0.27, color="#9bb", label="value retained (estimate)"
    )
    ax.bar(
        x,
        [-(v.contact_cost + v.offer_cost) for v in m],
        width=0.27,
        color="#888",
        label="- cost (contact + offer)",
    )
    ax.bar(x + 0.27, [v.net for v in m], width=0.27, color="#c33", label="net")
    truth = [e.true_value_retained for e in est]
    if all(t is not None for t in truth):
        ax.scatter(x - 0.27, truth, marker="x", color="k", zorder=3, label="value retained (truth)")
    ax.axhline(0, color="#666", lw=0.8)
    ax.set_xticks(x, [e.value for e in est], fontsize=8)
    ax.set(ylabel="CNY", title="Money by action (treated work orders)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(v, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _row(e) -> str:
    u, m = e.uplift, e.money
    cls = "" if u.conclusive else " class=small"
    return (
        f"<tr{cls}><td>{html.escape(e.dimension)}</td><td>{html.escape(e.value)}</td><td>{u.n_treated:,}</td>"
        f"<td>{u.n_control:,}</td><td>{_fmt(u.retention_treated, '.3f')}</td><td>{_fmt(u.retention_control, '.3f')}</td>"
        f"<td>{_fmt(u.uplift, '+.3f')} [{_fmt(u.low, '+.3f')}, {_fmt(u.high, '+.3f')}]</td>"
        f"<td>{_fmt(e.true_uplift, '+.3f')}</td><td>{_fmt(m.value_retained, ',.0f')}</td>"
        f"<td>{m.contact_cost + m.offer_cost:,.0f}</td><td>{_fmt(m.net, ',.0f')}</td><td>{_fmt(m.roi, '.2f')}</td>"
        f"<td>{html.escape(u.verdict)}</td></tr>"
    )


def _list_summaries(settings: Settings, result) -> str:
    """Each evaluated list's own summary (its counts, and a link to its page)."""
    items = []
    for d in result.dates:
        folder = settings.workdir / "warnings" / str(d)
        s = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").exists() else {}
        rel = os.path.relpath(folder / "summary.html", settings.evaluations_dir / result.label)
        items.append(
            f'<li><a href="{html.escape(rel)}">list of {d}</a>: {s.get("listed", 0):,} work orders of '
            f"{s.get('active', 0):,} active subscribers, {s.get('control', 0):,} held out as control; model "
            f"{html.escape(str(s.get('model', {}).get('version', '?')))}</li>"
        )
    return "<ul>" + "".join(items) + "</ul>"


def report_html(settings: Settings, result, pngs: dict[str, str]) -> str:
    """One static page: the verdict, the lists evaluated, the table per group, the figures."""
    cfg = settings.retention
    rows = _row(result.overall) + "".join(_row(g) for g in result.groups)
    imgs = "".join(
        f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,{b}"></figure>'
        for n, b in pngs.items()
    )
    skipped = ", ".join(str(d) for d in result.lists_without_outcomes) or "none"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Retention evaluation {result.label}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left}}tr.small{{color:#888}}figure{{margin:.5em 0}}</style>
</head><body>
<h1>Retention evaluation {html.escape(result.label)}</h1>
<p id="verdict"><b>{html.escape(result.verdict())}</b></p>
<p>Uplift = retention of the contacted (treatment) minus retention of the randomised control group, with
its {cfg.confidence:.0%} interval (Newcombe). Groups with fewer than {cfg.min_group} treated or control work
orders are grey: too small to conclude anything. Value retained = uplift x the treated subscribers' monthly
value x {cfg.value_months:g} months; net = value retained - contact and offer cost; ROI = net / cost. "true"
is the simulator's own uplift of the same work orders (blank on real outcomes). Work orders without an
outcome: {result.without_outcome:,}; lists without outcomes (skipped): {html.escape(skipped)}.</p>
<h2>The lists</h2>{_list_summaries(settings, result)}
<table><tr><th>by</th><th>group</th><th>treated</th><th>control</th><th>retention treated</th>
<th>retention control</th><th>uplift [interval]</th><th>true uplift</th><th>value retained</th><th>cost</th>
<th>net</th><th>ROI</th><th>verdict</th></tr>{rows}</table>
{imgs}
</body></html>
"""


def write_report(settings: Settings, result, rows: pd.DataFrame) -> Path:
    """``evaluation.json`` and ``report.html`` into ``evaluations/<label>/``, swapped in whole."""
    root = settings.evaluations_dir
    root.mkdir(parents=True, exist_ok=True)
    remove_dead_leftovers(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{result.label}.{os.getpid()}.", suffix=".partial", dir=root))
    try:
        final = root / result.label
        pngs = {name: _png(fig) for name, fig in figures(result).items()}
        write_json_atomic(result.as_json() | {"folder": str(final)}, tmp / "evaluation.json")
        (tmp / "report.html").write_text(report_html(settings, result, pngs), encoding="utf-8")
        return replace_dir_atomic(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def log_run(settings: Settings, result, rows: pd.DataFrame) -> str:
    """An MLflow run ``evaluate <label>``: the overall and per-action uplift, interval and money, the figures."""
    client = use_tracking(settings)
    exp = client.get_experiment_by_name(settings.mlflow.experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(settings.mlflow.experiment)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"evaluate {result.label}") as run:
        mlflow.set_tags({"churnwarn.evaluate_dates": ",".join(str(d) for d in result.dates)})
        metrics = {}
        for e in [result.overall, *[g for g in result.groups if g.dimension == "action"]]:
            key = "all" if e is result.overall else e.value
            vals = {
                "uplift": e.uplift.uplift,
                "uplift_low": e.uplift.low,
                "uplift_high": e.uplift.high,
                "net_cny": e.money.net,
                "roi": e.money.roi,
                "true_uplift": e.true_uplift,
            }
            metrics |= {f"{k}_{key}": float(v) for k, v in vals.items() if v is not None and math.isfinite(v)}
        mlflow.log_metrics(metrics)
        for name, fig in figures(result).items():
            mlflow.log_figure(fig, f"evaluation/{name}")
            plt.close(fig)
    return run.info.run_id
