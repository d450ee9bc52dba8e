"""The demo's client side: ask the running service for warnings and print those with most at stake.

Ranked like the nightly work-order list (``churn warn``): by expected loss, probability x monthly
value (DOMAIN.md: rank by what is at stake, not just by probability), ties by probability.
"""

from __future__ import annotations

import httpx
import pandas as pd
from rich.console import Console
from rich.table import Table

from core.config import Settings

UNKNOWN_ID = "S9999999"


def request_all_warnings(settings: Settings, url: str, lang: str = "en") -> tuple[list[dict], list[dict]]:
    """POST every subscriber of the latest snapshot (and one unknown id) to ``/warn`` in batches."""
    feats = pd.read_parquet(settings.feature_table, columns=["subscriber_id", "event_timestamp"])
    ids = feats.loc[feats["event_timestamp"] == feats["event_timestamp"].max(), "subscriber_id"].tolist() + [
        UNKNOWN_ID
    ]
    out: list[dict] = []
    size = settings.serving.max_batch
    with httpx.Client(base_url=url, timeout=120) as client:
        for i in range(0, len(ids), size):
            resp = client.post("/warn", json={"subscriber_ids": ids[i : i + size], "lang": lang})
            resp.raise_for_status()
            out += resp.json()
    scored = sorted(
        (w for w in out if w["error"] is None),
        key=lambda w: (-(w["expected_loss"] or 0.0), -w["churn_probability"], w["subscriber_id"]),
    )
    return scored, [w for w in out if w["error"] is not None]


def print_warnings(scored: list[dict], errors: list[dict], top: int = 5) -> None:
    console = Console(width=160)
    if scored:
        m = scored[0]["model"]
        title = f"Top {top} of {len(scored)} churn warnings by expected loss - model {m['name']} v{m['version']} (@{m['alias']}, {m['kind']})"
    else:
        title = "no warnings"
    table = Table(title=title, show_lines=True)
    table.add_column("subscriber")
    table.add_column("P(churn 30d)\nrisk", justify="right")
    table.add_column("value / month\nexp. loss\nVIP tier", justify="right")
    table.add_column("top reasons (SHAP log-odds)")
    table.add_column("suggested action")
    for w in scored[:top]:
        reasons = "\n".join(f"{r['sentence']}  [{r['code']}, {r['contribution']:+.2f}]" for r in w["reasons"])
        stakes = (
            "-"
            if w["value_at_stake"] is None
            else f"{w['value_at_stake']:.0f} CNY\n{w['expected_loss']:.1f} CNY\n{w['vip_tier']}"
        )
        table.add_row(
            w["subscriber_id"],
            f"{w['churn_probability']:.3f}\n{w['risk_tier']}",
            stakes,
            reasons,
            w["action"]["text"],
        )
    console.print(table)
    for w in errors:
        console.print(f"[yellow]{w['subscriber_id']}: {w['error']}[/yellow]")
